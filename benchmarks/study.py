"""Wall time of whole studies (`unip-nb study`) and of each stage, from scratch in fresh temporary folders.

    python benchmarks/study.py [--presets smoke default] [--jobs 2] [--json out.json] [--keep]

For each preset, runs `unip-nb study --preset P --jobs J` with UNIP_NB_DATA_ROOT, UNIP_NB_CACHE_DIR and
UNIP_NB_REPORTS_DIR pointing to new empty folders (so the data is generated, the teacher pre-trained and every student
distilled anew), and times it. Then it reads every run record `reports/<preset>/<run>/record.json` (`stage_times_s`,
`wall_time_s`) and the teacher's record `cache/teacher/*.json` (`wall_s`) and prints the total wall time, the phases of
the study (from file times: data generated, teacher pre-trained, runs, summary), and per stage the sum and mean over the
runs that timed it, with its share of all stage time. `smoke` takes 1-2 min on 2 cores, `default` about 28 min (three seeds).
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time
from importlib.metadata import version
from pathlib import Path
from unip_nb.config import PRESETS

REPO = Path(__file__).resolve().parents[1]
STAGE_ORDER = ("data", "teacher", "teacher_nmi", "distill", "views", "ft_soda", "lp_soda", "ft_mfnet", "lp_mfnet", "ft_scutseg", "lp_scutseg")

def unip_nb_command() -> Path:
    "The `unip-nb` console script next to this Python (the project's venv)."
    exe = Path(sys.executable).parent/"unip-nb"
    if not exe.exists(): sys.exit(f"error: no unip-nb console script at {exe}: run with the project's .venv/bin/python")
    return exe

def run_study(preset: str, jobs: int, root: Path) -> dict:
    "Run the study of `preset` in the fresh folders under `root`; its wall time, exit status and the tail of its output."
    dirs = {k: root/k for k in ("data", "cache", "reports")}
    for d in dirs.values(): d.mkdir(parents=True)
    env = dict(os.environ, UNIP_NB_DATA_ROOT=str(dirs["data"]), UNIP_NB_CACHE_DIR=str(dirs["cache"]), UNIP_NB_REPORTS_DIR=str(dirs["reports"]))
    start_wall, t = time.time(), time.perf_counter()
    p = subprocess.run([str(unip_nb_command()), "study", "--preset", preset, "--jobs", str(jobs)], cwd=REPO, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    return dict(dirs=dirs, start=start_wall, wall_s=wall, returncode=p.returncode, output_tail=(p.stdout + p.stderr)[-3000:])

def collect(preset: str, study: dict, jobs: int) -> dict:
    "Run records, teacher record and phase times of a finished study."
    dirs, start = study["dirs"], study["start"]
    records = {}
    for f in sorted((dirs["reports"]/preset).glob("*/record.json")):
        rec = json.loads(f.read_text())
        records[f.parent.name] = rec
    teachers = [dict(json.loads(f.read_text()), file=f.name) for f in sorted((dirs["cache"]/"teacher").glob("*.json"))]
    stages = {}
    for rec in records.values():
        for name, secs in (rec.get("stage_times_s") or {}).items(): stages.setdefault(name, []).append(secs)
    order = [s for s in STAGE_ORDER if s in stages] + sorted(set(stages) - set(STAGE_ORDER))
    stage_table = {s: dict(sum_s=sum(stages[s]), mean_s=sum(stages[s]) / len(stages[s]), runs=len(stages[s])) for s in order}
    # phases, from when each product appeared on disk (seconds after the study started)
    def since(paths): return max((p.stat().st_mtime - start for p in paths), default=None)
    data_ready = since(dirs["data"].rglob(".complete"))
    teacher_ready = since((dirs["cache"]/"teacher").glob("*.pt"))
    runs_done = since((dirs["reports"]/preset).glob("*/record.json"))
    summary_done = since([dirs["reports"]/preset/"index.html"] if (dirs["reports"]/preset/"index.html").exists() else [])
    phases = dict(data=data_ready, teacher=None if None in (teacher_ready, data_ready) else teacher_ready - data_ready,
                  runs=None if None in (runs_done, teacher_ready) else runs_done - teacher_ready,
                  summary=None if None in (summary_done, runs_done) else summary_done - runs_done)
    complete = [n for n, r in records.items() if r.get("status") == "complete"]
    run_wall_sum = sum(r.get("wall_time_s", 0) for r in records.values())
    outside = None if phases["runs"] is None or not records else (phases["runs"] * jobs - run_wall_sum) / len(records)
    return dict(preset=preset, wall_s=study["wall_s"], returncode=study["returncode"], runs=len(records), complete=len(complete),
                failed={n: r.get("error") for n, r in records.items() if r.get("status") != "complete"},
                run_wall_sum_s=run_wall_sum, outside_records_per_run_s=outside,
                run_wall_max_s=max((r.get("wall_time_s", 0) for r in records.values()), default=0),
                teacher_pretrain_s=sum(t.get("wall_s", 0) for t in teachers), teachers=[t["file"] for t in teachers],
                phases_s=phases, stages=stage_table)

def fmt(x, w=9, d=1): return f"{'-':>{w}s}" if x is None else f"{x:{w}.{d}f}"

def cpu_model() -> str:
    "The CPU's model name (Linux), else what `platform` knows."
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

W = 30  # width of a preset's column

def show(results: dict) -> None:
    "Print the presets side by side: totals and phases, then per stage the sum and mean over runs, the runs, and the share of stage time."
    names = list(results)
    print(f"\n{'':28s}" + "".join(f"{n:>{W}s}" for n in names))
    rows = [("total wall time (s)", lambda r: fmt(r["wall_s"], W)), ("teacher pre-training (s)", lambda r: fmt(r["teacher_pretrain_s"], W)),
            ("runs complete / recorded", lambda r: f"{r['complete']}/{r['runs']}".rjust(W)),
            ("sum of run wall times (s)", lambda r: fmt(r["run_wall_sum_s"], W)), ("longest run (s)", lambda r: fmt(r["run_wall_max_s"], W))]
    rows += [(f"phase: {k} (s)", lambda r, k=k: fmt(r["phases_s"][k], W)) for k in ("data", "teacher", "runs", "summary")]
    rows += [("outside records, per run (s)", lambda r: fmt(r["outside_records_per_run_s"], W))]
    for label, cell in rows: print(f"{label:28s}" + "".join(cell(r) for r in results.values()))
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    print(f"\n{'stage':28s}" + "".join(f"{'sum s':>9s}{'mean s':>9s}{'runs':>5s}{'share':>7s}" for _ in names))
    for s in stages:
        row = ""
        for r in results.values():
            st, total = r["stages"].get(s), sum(v["sum_s"] for v in r["stages"].values()) or 1
            row += f"{'-':>{W}s}" if st is None else f"{fmt(st['sum_s'])}{fmt(st['mean_s'], 9, 2)}{st['runs']:5d}{100 * st['sum_s'] / total:6.1f}%"
        print(f"{s:28s}{row}")
    print("\nphases from file times: data = until the generated data was complete, teacher = until the teacher checkpoint was written, "
          "runs = until the last run record, summary = until the summary report.\noutside records, per run = (runs phase x jobs - "
          "sum of the runs' recorded wall times) / runs: an upper estimate of each run's notebook cost outside its record (kernel start, "
          "imports, plots, HTML rendering, and idle job slots at the end)")
    if len(names) > 1:
        a, b = results[names[0]], results[names[-1]]
        print(f"{names[-1]} / {names[0]} total wall time: {b['wall_s'] / a['wall_s']:.1f}x")

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["smoke"], choices=list(PRESETS), help="presets to time (default: smoke; default takes ~28 min on 2 cores)")
    ap.add_argument("--jobs", type=int, default=2, help="runs executed at once (unip-nb study --jobs)")
    ap.add_argument("--json", default=None, help="save the figures to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (data, cache, reports) and print where they are")
    a = ap.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {version('torch')}; "
          f"unip-nb study --jobs {a.jobs} (torch threads per run: {max(1, (os.cpu_count() or 1) // a.jobs)})")
    results, failed = {}, False
    for preset in a.presets:
        root = Path(tempfile.mkdtemp(prefix=f"unip-study-{preset}-"))
        try:
            print(f"{preset}: running unip-nb study in {root} ...", flush=True)
            study = run_study(preset, a.jobs, root)
            results[preset] = collect(preset, study, a.jobs)
            if study["returncode"] != 0:
                failed = True
                print(f"{preset}: unip-nb study exited with {study['returncode']}; failed runs: {results[preset]['failed']}\n{study['output_tail']}")
        finally:
            if a.keep: print(f"{preset}: kept {root}")
            else: shutil.rmtree(root, ignore_errors=True)
    show(results)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(machine=dict(cpu=cpu_model(), cores=os.cpu_count(), torch=version('torch')),
                                                jobs=a.jobs, results=results), indent=2, default=str))
        print(f"saved {a.json}")
    sys.exit(1 if failed else 0)
