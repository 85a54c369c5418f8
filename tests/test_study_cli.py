"End-to-end tests of the `unip-nb` command and the papermill run templates (what a notebook cannot hold)."
import base64, io, json, os, re, shutil, subprocess, sys
from pathlib import Path
import numpy as np, papermill as pm
import pytest
from unip_nb.config import get_preset
from unip_nb.report import load_records
from unip_nb.study import execute_run, read_record

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def unip_nb(*args, **env):
    "Run the console script with extra environment variables; return the completed process."
    return subprocess.run([str(BIN/"unip-nb"), *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, **env})

@pytest.fixture(scope="session")
def study_dirs(tmp_path_factory):
    "Data, cache and reports folders shared by the tests, as environment overrides of settings.ini."
    root = tmp_path_factory.mktemp("study")
    return {f"UNIP_NB_{k.upper()}": str(root/k) for k in ("data_root", "cache_dir", "reports_dir")}

@pytest.fixture(scope="session")
def smoke_study(study_dirs):
    "The whole smoke study, run once through the command line."
    p = unip_nb("study", "--preset", "smoke", "--jobs", "2", **study_dirs)
    return p, Path(study_dirs["UNIP_NB_REPORTS_DIR"])/"smoke"

def test_smoke_study_runs_every_ablation(smoke_study):
    p, out = smoke_study
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    records = load_records(out)
    names = {r["config"]["ablation"]["name"] for r in records.runs.values()}
    assert {"unip", "no_nmi_last_layer", "no_had_feature", "no_pretrain", "infmix_no_gray", "infmix_no_infpre",
            "infmix_no_in1k", "infmix_no_coco", "teacher"} <= names
    assert any(n.startswith("infmix_without_") for n in names) and not records.failed
    for rec in records.runs.values():
        assert set(rec) >= {"config", "seed", "commit", "versions", "wall_time_s", "stage_times_s", "metrics"}
        for mode in ("ft", "lp"):
            assert set(rec["metrics"][mode]) == {"soda", "mfnet", "scutseg", "avg"}
            assert all(0 <= v <= 1 for v in rec["metrics"][mode].values())
    unip = records.first("unip")["metrics"]
    assert unip["target"] == ["attention", unip["hybrid_layer"]]
    assert records.first("no_nmi_last_layer")["metrics"]["target"] == ["attention", get_preset("smoke").teacher_arch["depth"]]
    assert records.first("no_pretrain")["metrics"]["target"] is None
    assert records.first("infmix_no_coco")["metrics"]["infmix"]["coco"] == 0

# Average mIoU (FT, LP) of the smoke study's seed 0, read from its records (commits 34b125d and 677b47c,
# 2-core AMD EPYC, the same to the last digit): a change of behaviour moves them, so a crash is not the only
# thing caught; the tolerance (0.1 point) leaves room for another CPU's float rounding.
SMOKE_AVG_MIOU = {"unip": (0.072732, 0.068712), "no_pretrain": (0.080181, 0.069816), "teacher": (0.069707, 0.115686),
                  "no_nmi_last_layer": (0.071674, 0.068424)}

def test_smoke_metrics_are_pinned(smoke_study):
    _, out = smoke_study
    records = load_records(out)
    got = {a: tuple(records.first(a)["metrics"][m]["avg"] for m in ("ft", "lp")) for a in SMOKE_AVG_MIOU}
    assert got == {a: pytest.approx(v, abs=1e-3) for a, v in SMOKE_AVG_MIOU.items()}

def test_summary_html_reads_every_record(smoke_study):
    _, out = smoke_study
    html = (out/"index.html").read_text()
    assert "Paired differences against full UNIP" in html and "data:image/png;base64" in html
    assert 'href="no_pretrain-s0.html"' in html and (out/"no_pretrain-s0.html").exists()
    ft = load_records(out).first("unip")["metrics"]["ft"]["avg"]
    assert f"{100 * ft:.1f}" in html, "the table shows the recorded number"

def page_figures(page: Path) -> list:
    "The figures embedded in an HTML report page, decoded."
    from PIL import Image
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    return [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB") for b in found]

def coloured_share(image) -> float:
    "Share of the pixels of an RGB image that are clearly coloured (not white, gray or black)."
    hsv = np.asarray(image.convert("HSV"), dtype=np.float32)
    return float(((hsv[..., 1] > 60) & (hsv[..., 2] > 60)).mean())

def test_run_page_shows_what_the_models_do(smoke_study):
    "Each run page draws its predictions, attention maps and NMI curves from the arrays its run kept."
    _, out = smoke_study
    for run, figures in (("unip-s0", 8), ("no_pretrain-s0", 7), ("teacher-s0", 7)):   # no distillation: no loss curve
        page = out/f"{run}.html"
        text = page.read_text()
        assert "What the models do" in text and "kept no" not in text and "are gone" not in text
        shown = page_figures(page)
        assert len(shown) == figures, (run, len(shown))
        assert all(min(f.size) > 100 and np.asarray(f).std() > 10 for f in shown), "a blank figure"
    unip = load_records(out).first("unip")["metrics"]
    assert len(unip["student_nmi"]) == get_preset("smoke").student_arch["depth"]
    assert load_records(out).first("teacher")["metrics"]["student_nmi"] is None

def test_summary_screenshot(smoke_study, tmp_path):
    "The summary renders in headless Chromium with its figures (the screenshot is kept as the test's output)."
    if shutil.which("chromium") is None: pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    _, out = smoke_study
    figures = page_figures(out/"index.html")
    assert len(figures) >= 6 and all(min(f.size) > 100 and np.asarray(f).std() > 10 for f in figures)
    shot = tmp_path/"index.png"
    p = subprocess.run([sys.executable, str(REPO/"benchmarks/report_screenshot.py"), str(out/"index.html"), "--out", str(shot)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    from PIL import Image
    image = Image.open(shot).convert("RGB")
    assert image.size == (1300, 3200) and coloured_share(image) > 0.02, "the page rendered without its figures"

def test_rerun_reuses_complete_records(smoke_study, study_dirs):
    _, out = smoke_study
    before = (out/"unip-s0"/"record.json").stat().st_mtime_ns
    p = unip_nb("study", "--preset", "smoke", "--ablations", "unip", **study_dirs)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out/"unip-s0"/"record.json").stat().st_mtime_ns == before

def test_template_parameters_from_papermill(smoke_study, study_dirs, tmp_path, monkeypatch):
    "Any parameter of the ablation template can be set from papermill directly: here an unregistered teacher layer."
    for k, v in study_dirs.items(): monkeypatch.setenv(k, v)
    record = Path(study_dirs["UNIP_NB_REPORTS_DIR"])/"papermill"/"record.json"
    pm.execute_notebook(str(REPO/"nbs/runs/ablation.ipynb"), str(tmp_path/"out.ipynb"), cwd=str(REPO/"nbs/runs"), progress_bar=False,
                        parameters=dict(ablation="unip", preset="smoke", seed=0, teacher_layer=2, record_path=str(record)))
    rec = read_record(record)
    assert rec["config"]["teacher_layer"] == 2 and rec["metrics"]["target"] == ["attention", 2]

def test_preset_overrides_from_the_command_line(smoke_study, study_dirs):
    "A preset field changed with --set: the run lands in its own study folder, its record holds the overrides."
    iters = [["soda", 2, 1], ["mfnet", 2, 1], ["scutseg", 2, 1]]
    p = unip_nb("run", "--ablation", "no_pretrain", "--preset", "smoke", "--set", f"seg.iters={json.dumps(iters)}", **study_dirs)
    assert p.returncode == 0, p.stderr[-3000:]
    folder, = [d for d in Path(study_dirs["UNIP_NB_REPORTS_DIR"]).glob("smoke-*")]
    rec = read_record(folder/"no_pretrain-s0"/"record.json")
    assert rec["config"]["overrides"] == {"seg.iters": iters} and rec["config"]["preset"]["seg"]["iters"] == iters
    assert "overrides" not in read_record(smoke_study[1]/"no_pretrain-s0"/"record.json")["config"]

PLAN = """
rows:
  - {name: seg_longer, description: fine-tune and probe for 8 iterations, group: "C: recipe",
     overrides: {seg.iters: [[soda, 8, 2], [mfnet, 8, 2], [scutseg, 8, 2]]},
     ablated_part: segmentation length, action: REPLACE, replacement: 8 iterations, metrics: [mIoU]}
  - {name: last_no_gray, description: the last layer distilled on colour InfMix, group: "C: recipe",
     target: last, infmix: no_gray, action: REPLACE}
  - {name: random_init, description: a random-init student, group: "A: remove NMI-HAD", target: none, action: REMOVE}
"""

def test_plan_file_study(smoke_study, study_dirs, tmp_path):
    "A study whose three rows come from a plan file: each runs, the registry's unip joins as reference, the summary renders."
    plan = tmp_path/"recipe.yaml"
    plan.write_text(PLAN)
    listing = unip_nb("ablations", "--preset", "smoke", "--plan", str(plan), **study_dirs)
    assert listing.returncode == 0 and [l.split()[0] for l in listing.stdout.splitlines()] == [
        "unip", "seg_longer", "last_no_gray", "random_init"], listing.stdout + listing.stderr[-2000:]
    p = unip_nb("study", "--preset", "smoke", "--plan", str(plan), "--jobs", "2", **study_dirs)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = Path(study_dirs["UNIP_NB_REPORTS_DIR"])/"smoke-recipe"
    records = load_records(out)
    assert set(records.runs) == {"unip-s0", "seg_longer-s0", "last_no_gray-s0", "random_init-s0"} and not records.failed
    longer = records.first("seg_longer")["config"]
    assert longer["ablation"]["plan"] == {"ablated_part": "segmentation length", "action": "REPLACE",
                                          "replacement": "8 iterations", "metrics": ["mIoU"]}
    assert longer["preset"]["seg"]["iters"] == [["soda", 8, 2], ["mfnet", 8, 2], ["scutseg", 8, 2]]
    assert records.first("last_no_gray")["metrics"]["infmix"]["gray"] is False
    html = (out/"index.html").read_text()
    assert 'href="seg_longer-s0.html"' in html and "Paired differences against full UNIP" in html

def test_nmi_template_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIP_NB_REPORTS_DIR", str(tmp_path))
    record = tmp_path/"record.json"
    pm.execute_notebook(str(REPO/"nbs/runs/nmi.ipynb"), str(tmp_path/"out.ipynb"), cwd=str(REPO/"nbs/runs"), progress_bar=False,
                        parameters=dict(preset="smoke", seed=3, arch="vit_small_patch8_224", s=0.0, record_path=str(record)))
    rec = read_record(record)
    assert rec["config"]["arch"] == "vit_small_patch8_224" and rec["seed"] == 3
    means = rec["metrics"]["layer_nmi"]
    assert len(means) == 12 and rec["metrics"]["selected_layer"] == int(min(means, key=means.get)), "s = 0 picks the lowest-NMI layer"

def test_record_outside_the_reports_folder_is_refused(tmp_path, study_dirs, monkeypatch):
    for k, v in study_dirs.items(): monkeypatch.setenv(k, v)
    with pytest.raises(pm.PapermillExecutionError, match="is outside the reports folder"):
        pm.execute_notebook(str(REPO/"nbs/runs/ablation.ipynb"), str(tmp_path/"out.ipynb"), cwd=str(REPO/"nbs/runs"),
                            progress_bar=False, parameters=dict(preset="smoke", record_path=str(tmp_path/"r.json")))

def test_failed_run_keeps_its_notebook_and_is_marked_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIP_NB_REPORTS_DIR", str(tmp_path.parent))
    res = execute_run(REPO/"nbs/runs/nmi.ipynb", tmp_path, dict(preset="smoke", arch="resnet18"))
    assert res["status"] == "failed" and "resnet18 is not a timm VisionTransformer" in res["error"]
    assert (tmp_path/"run.ipynb").exists() and (tmp_path.parent/f"{tmp_path.name}.html").exists()
    assert json.loads((tmp_path/"record.json").read_text())["status"] == "failed"
    with pytest.raises(ValueError, match="status 'failed'"): read_record(tmp_path/"record.json")

def test_paper_preset_refuses_without_real_data():
    p = unip_nb("study", "--preset", "paper", UNIP_NB_TEACHER_CHECKPOINT="", UNIP_NB_IMAGENET="")
    assert p.returncode == 2
    assert "teacher_checkpoint is empty" in p.stderr and "imagenet is empty" in p.stderr

@pytest.mark.parametrize("args,env,message", [
    (["study", "--preset", "huge"], {}, "argument --preset: invalid choice: 'huge'"),
    (["study", "--preset", "smoke", "--ablations", "no_nmi"], {}, "unknown ablation 'no_nmi'"),
    (["study"], {"UNIP_NB_PRESET": "tiny"}, "preset = 'tiny' is not one of"),
    (["study"], {"UNIP_NB_SETTINGS": "/nonexistent/settings.ini"}, "/nonexistent/settings.ini does not exist"),
    (["study", "--preset", "smoke"], {"UNIP_NB_CACHE_DIR": str(REPO/"settings.ini")}, "is a file (set by $UNIP_NB_CACHE_DIR)"),
    (["run", "--ablation", "unip", "--preset", "smoke", "--teacher-layer", "9"], {}, "teacher_layer 9 is outside the teacher"),
    (["run", "--ablation", "unip", "--preset", "smoke", "--set", "distill.epoch=3"], {}, "unknown preset field 'distill.epoch'"),
    (["study", "--preset", "smoke", "--set", "seg.lr=fast"], {}, "preset field 'seg.lr' takes float, got 'fast' (str)"),
    (["study", "--preset", "smoke", "--set", "distill.epochs"], {}, "write FIELD=VALUE"),
])
def test_bad_input_is_named(args, env, message, study_dirs):
    p = unip_nb(*args, **{**study_dirs, **env})
    assert p.returncode == 2 and message in p.stderr, p.stderr
