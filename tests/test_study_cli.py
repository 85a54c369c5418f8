"End-to-end tests of the `unip-nb` command and the papermill run template (what a notebook cannot hold)."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from unip_nb.config import get_preset
from unip_nb.study import execute_run, read_record

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def unip_nb(*args, **env):
    "Run the console script with extra environment variables; return the completed process."
    return subprocess.run([str(BIN/"unip-nb"), *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, **env})

def test_smoke_study_writes_record_and_html(tmp_path):
    p = unip_nb("study", "--preset", "smoke", UNIP_NB_REPORTS_DIR=str(tmp_path))
    assert p.returncode == 0, p.stderr
    run = tmp_path/"smoke"/"nmi-s0"
    rec = read_record(run/"record.json")
    assert rec["seed"] == 0 and rec["config"]["preset"] == "smoke"
    assert set(rec) >= {"commit", "versions", "wall_time_s", "stage_times_s"}
    depth = get_preset("smoke").teacher_arch["depth"]
    assert len(rec["metrics"]["layer_nmi"]) == depth
    assert 1 <= rec["metrics"]["selected_layer"] <= depth
    assert all(0 <= v <= 1 for v in rec["metrics"]["layer_nmi"].values())
    html = (run/"run.html").read_text()
    assert "selected layer" in html and "data:image/png;base64" in html

def test_papermill_parameters_override_the_preset(tmp_path):
    "Any parameter of the template can be set from papermill directly."
    import papermill as pm
    out, record = tmp_path/"out.ipynb", tmp_path/"record.json"
    pm.execute_notebook(str(REPO/"nbs/runs/nmi.ipynb"), str(out), cwd=str(REPO/"nbs/runs"), progress_bar=False,
                        parameters=dict(preset="smoke", seed=3, arch="vit_small_patch8_224", s=0.0, record_path=str(record)))
    rec = read_record(record)
    assert rec["config"]["arch"] == "vit_small_patch8_224" and rec["seed"] == 3
    means = rec["metrics"]["layer_nmi"]
    assert rec["metrics"]["selected_layer"] == int(min(means, key=means.get)), "s = 0 picks the lowest-NMI layer"

def test_failed_run_keeps_its_notebook_and_is_marked_failed(tmp_path):
    res = execute_run(REPO/"nbs/runs/nmi.ipynb", tmp_path, dict(preset="smoke", arch="resnet18"))
    assert res["status"] == "failed" and "resnet18 is not a timm VisionTransformer" in res["error"]
    assert (tmp_path/"run.ipynb").exists() and (tmp_path/"run.html").exists()
    assert json.loads((tmp_path/"record.json").read_text())["status"] == "failed"
    with pytest.raises(ValueError, match="status 'failed'"): read_record(tmp_path/"record.json")

def test_paper_preset_refuses_without_real_data():
    p = unip_nb("study", "--preset", "paper", UNIP_NB_TEACHER_CHECKPOINT="", UNIP_NB_IMAGENET="")
    assert p.returncode == 2
    assert "teacher_checkpoint is empty" in p.stderr and "imagenet is empty" in p.stderr

@pytest.mark.parametrize("args,env,message", [
    (["study", "--preset", "huge"], {}, "unknown preset 'huge'"),
    (["study"], {"UNIP_NB_PRESET": "tiny"}, "preset = 'tiny' is not one of"),
    (["study"], {"UNIP_NB_SETTINGS": "/nonexistent/settings.ini"}, "/nonexistent/settings.ini does not exist"),
])
def test_bad_input_is_named(args, env, message):
    p = unip_nb(*args, **env)
    assert p.returncode == 2 and message in p.stderr, p.stderr
