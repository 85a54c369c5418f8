"""Kill `unip-nb study` at every stage (SIGTERM and SIGKILL, through the fault-injection points of `unip_nb.files`), run the
same command again, and check that it finishes, recomputes nothing that had finished, and gives the uninterrupted metrics."""
import json, os, signal, subprocess, sys
from pathlib import Path
import pytest
from unip_nb.config import get_preset
from unip_nb.files import FAILPOINT_ENV
from unip_nb.study import read_record
from unip_nb.synthetic import sizes_key
from unip_nb.teacher import teacher_key

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = get_preset("smoke")
COMPARED = ("ft", "lp", "teacher_nmi", "distill_losses", "target", "hybrid_layer")

def study(root: Path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    "`unip-nb study` of full UNIP, seed 0, on the smoke preset, in folders under `root`, with an optional fault."
    env = {**os.environ, **{f"UNIP_NB_{k.upper()}": str(root/k) for k in ("data_root", "cache_dir", "reports_dir")}}
    env.pop(FAILPOINT_ENV, None)
    if failpoint: env[FAILPOINT_ENV] = failpoint
    return subprocess.run([str(BIN/"unip-nb"), "study", "--preset", "smoke", "--ablations", "unip", "--seeds", "0"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)

def record(root: Path) -> Path: return root/"reports_dir"/"smoke"/"unip-s0"/"record.json"

def stamp(path: Path) -> int: return path.stat().st_mtime_ns

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    "The metrics of the study run once without interruption."
    root = tmp_path_factory.mktemp("uninterrupted")
    p = study(root)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return read_record(record(root))["metrics"]

def killed(root: Path, point: str, sig: str) -> subprocess.CompletedProcess:
    "The study killed with `sig` at fault-injection point `point`."
    p = study(root, f"{point}={sig}")
    expected = -signal.SIGKILL if sig == "SIGKILL" else 128 + signal.SIGTERM
    assert p.returncode == expected, f"exit {p.returncode}, not {expected}:\n" + p.stdout[-2000:] + p.stderr[-3000:]
    if sig == "SIGTERM": assert "stopped by SIGTERM" in p.stderr
    return p

def resumed(root: Path, uninterrupted: dict) -> tuple[dict, subprocess.CompletedProcess]:
    "Run the same command again: it must finish with the uninterrupted metrics."
    p = study(root)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    metrics = read_record(record(root))["metrics"]
    for key in COMPARED: assert metrics[key] == uninterrupted[key], key
    assert (root/"reports_dir"/"smoke"/"unip-s0.html").exists() and (root/"reports_dir"/"smoke"/"index.html").exists()
    return metrics, p

def cache(root: Path, stage: str) -> Path: return root/"cache_dir"/stage

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_during_data_generation(tmp_path, uninterrupted, sig):
    killed(tmp_path, "data:coco", sig)
    data = tmp_path/"data_root"/"embedded"/sizes_key(SMOKE.embedded, SMOKE.data_seed)
    assert (data/"coco"/".complete").exists() and not (data/"soda").exists()
    coco = stamp(data/"coco"/".complete")
    _, p = resumed(tmp_path, uninterrupted)
    assert stamp(data/"coco"/".complete") == coco, "the finished pool was not generated again"
    assert "stale lock" in p.stderr, "the lock of the killed generation is detected"

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_during_teacher_pretraining(tmp_path, uninterrupted, sig):
    killed(tmp_path, "teacher:epoch1", sig)
    key = teacher_key(SMOKE)
    assert sorted(p.name for p in cache(tmp_path, "teacher").iterdir()) == [f"{key}.lock", f"{key}.partial.pt"]
    resumed(tmp_path, uninterrupted)
    teacher = json.loads((cache(tmp_path, "teacher")/f"{key}.json").read_text())
    assert teacher["resumed_from_epoch"] == 1, "pre-training went on from the checkpoint of epoch 1"
    assert sorted(p.name for p in cache(tmp_path, "teacher").iterdir()) == [f"{key}.json", f"{key}.pt"]

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_during_distillation(tmp_path, uninterrupted, sig):
    killed(tmp_path, "distill:epoch1", sig)
    assert not record(tmp_path).exists()
    teacher = stamp(cache(tmp_path, "teacher")/f"{teacher_key(SMOKE)}.pt")
    assert [p.suffixes for p in cache(tmp_path, "student").glob("*.pt")] == [[".partial", ".pt"]]
    metrics, _ = resumed(tmp_path, uninterrupted)
    assert metrics["resumed"]["distill"] == 1
    assert stamp(cache(tmp_path, "teacher")/f"{teacher_key(SMOKE)}.pt") == teacher, "the finished teacher was not trained again"

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_during_fine_tuning(tmp_path, uninterrupted, sig):
    killed(tmp_path, "ft_mfnet:epoch1", sig)
    assert not record(tmp_path).exists()
    student = next(p for p in cache(tmp_path, "student").glob("*.pt"))
    before = stamp(student)
    metrics, _ = resumed(tmp_path, uninterrupted)
    assert metrics["resumed"] == {"ft_soda": "reused", "lp_soda": "reused", "ft_mfnet": 1}
    assert stamp(student) == before and metrics["student_cached"], "the finished student was not distilled again"

@pytest.mark.parametrize("point,sig", [("write:unip-s0.html", "SIGKILL"), ("write:index.html", "SIGTERM")])
def test_killed_during_report_rendering(tmp_path, uninterrupted, point, sig):
    killed(tmp_path, point, sig)
    html = tmp_path/"reports_dir"/"smoke"/point.removeprefix("write:")
    assert not html.exists() and list(html.parent.glob(f".{html.name}.*.tmp")), "killed mid-write: only the temporary file is there"
    done = stamp(record(tmp_path))
    assert read_record(record(tmp_path))["status"] == "complete"
    resumed(tmp_path, uninterrupted)
    assert stamp(record(tmp_path)) == done, "the finished run was not run again"

@pytest.mark.parametrize("point", ["write:*.partial.pt", "write:record.json"])
def test_disk_full_leaves_nothing_complete(tmp_path, uninterrupted, point):
    "A full disk while the teacher's first checkpoint or the run record is written: a clear error, nothing marked complete."
    p = study(tmp_path, f"{point}=ENOSPC")
    assert p.returncode == 1 and "No space left on device" in p.stderr, p.stderr[-3000:]  # a failure while running
    folder = "cache_dir" if "partial" in point else "reports_dir"
    assert f"this is under {folder} = {tmp_path/folder} (set by $UNIP_NB_{folder.upper()})" in p.stderr, p.stderr[-3000:]
    assert not list(cache(tmp_path, "teacher").glob("*.pt")) if "partial" in point else not record(tmp_path).exists()
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file is left"
    resumed(tmp_path, uninterrupted)
