"Two gloo processes on the CPU under torchrun against one process: same losses on both ranks, same checkpoint and test-set counts as one process."
import json, os, subprocess, sys
from pathlib import Path
import torch

WORKER = Path(__file__).resolve().parent/"ddp_worker.py"
BIN = Path(sys.executable).parent

def run(cmd: list, out: Path) -> dict:
    "Run the worker with `cmd` writing into `out`; its checkpoint and each rank's report."
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run([*cmd, str(WORKER), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    ranks = {int(f.stem.split("-")[1]): json.loads(f.read_text()) for f in out.glob("losses-*.json")}
    return dict(ranks=ranks, checkpoint=torch.load(out/"student.partial.pt", weights_only=False), files=sorted(f.name for f in out.iterdir()))

def test_ddp_matches_one_process(tmp_path):
    ddp = run([str(BIN/"torchrun"), "--standalone", "--nproc_per_node", "2"], tmp_path/"ddp")
    one = run([sys.executable], tmp_path/"one")
    assert sorted(ddp["ranks"]) == [0, 1] and ddp["ranks"][0]["world"] == 2
    assert (ddp["ranks"][0]["batch_per_rank"], one["ranks"][0]["batch_per_rank"]) == (2, 4), "effective batch = per-rank batch x accum x world"
    assert ddp["ranks"][0]["losses"] == ddp["ranks"][1]["losses"], "both ranks record the same (averaged) losses"
    torch.testing.assert_close(ddp["ranks"][0]["losses"], one["ranks"][0]["losses"], rtol=1e-4, atol=1e-6)
    assert ddp["files"] == ["losses-0.json", "losses-1.json", "student.partial.pt"], "rank 0 alone wrote the checkpoint, atomically"
    assert len(ddp["checkpoint"]["rng"]) == 2 and ddp["checkpoint"]["epoch"] == one["checkpoint"]["epoch"] == 1
    a, b = ddp["checkpoint"]["model"], one["checkpoint"]["model"]
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    confs = [r["conf"] for r in (ddp["ranks"][0], ddp["ranks"][1], one["ranks"][0])]
    assert confs[0] == confs[1] == confs[2], "the ranks' shares of the test set add up to the single process's counts"
    assert [ddp["ranks"][r]["scored"] for r in (0, 1)] == [3, 2] and one["ranks"][0]["scored"] == 5, "each rank scores its share"
    assert sum(map(sum, confs[0])) == 5 * 12 * 16, "every test pixel counted once: no image repeated or dropped"
    assert [ddp["ranks"][r]["from_rank0"] for r in (0, 1)] == [0, 0], "rank 1 gets rank 0's value"

def test_torchrun_runs_an_ablation_the_study_reuses(tmp_path):
    "`unip-nb run` under torchrun (2 gloo processes) trains every stage with DDP; `unip-nb study` then reuses its record."
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({f"UNIP_NB_{k.upper()}": str(tmp_path/k) for k in ("data_root", "cache_dir", "reports_dir")})
    cmd = [str(BIN/"torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN/"unip-nb"), "run", "--ablation", "unip", "--preset", "smoke"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    record = tmp_path/"reports_dir"/"smoke"/"unip-s0"/"record.json"
    rec = json.loads(record.read_text())
    assert rec["status"] == "complete" and rec["world_size"] == 2
    assert all(0 <= v <= 1 for m in ("ft", "lp") for v in rec["metrics"][m].values())
    assert len(rec["metrics"]["distill_losses"]) == 2 and "1 processes" not in p.stdout and "2 processes" in p.stdout
    before = record.stat().st_mtime_ns
    p = subprocess.run([str(BIN/"unip-nb"), "study", "--preset", "smoke", "--ablations", "unip", "--seeds", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert record.stat().st_mtime_ns == before and (tmp_path/"reports_dir"/"smoke"/"index.html").exists()
