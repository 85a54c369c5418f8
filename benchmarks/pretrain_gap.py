"""What pre-training is worth on the embedded world: the `unip`, `no_pretrain` and `teacher` rows (those the
default preset may be tuned on), for a preset with some of its recipe changed.

    python benchmarks/pretrain_gap.py [--preset default] [--seeds 0] [--rows unip no_pretrain teacher]
        [--seg '{"lr": 3e-3, "iters": [["soda", 200, 20], ["mfnet", 136, 14], ["scutseg", 228, 23]]}']
        [--distill '{"epochs": 3, "blr": 6e-3}'] [--teacher '{"epochs": 40}']
        [--sizes '{"seg_train": 60}']
        [--work DIR] [--threads 1] [--json out.json]

Each override is JSON merged into the preset's `seg` (SegRecipe), `distill` and `teacher_pretrain`
(PretrainRecipe) or `embedded` (EmbeddedSizes). The data, the teacher and the students are cached in `--work`
(default: `<tmp>/pretrain-gap`), keyed as the study keys them, so a second call with another fine-tuning
recipe reuses them. Each run is `run_ablation`, the study's own, in this process (no notebook), one at a time;
start two with `--threads 1` to use two cores. Prints one line per run: average and per-set fine-tuning and
linear-probing mIoU, and the teacher, distillation and segmentation times.
"""
import argparse, json, tempfile
from dataclasses import asdict, replace
from pathlib import Path
import torch
from unip_nb.ablations import Run, ablation_registry, get_ablation, run_ablation, study_roots
from unip_nb.config import Settings, get_preset
from unip_nb.infmix import infpre_subsets
from unip_nb.study import RunRecorder

def changed_preset(name: str, sizes: dict, distill: dict, seg: dict, teacher: dict):
    "Preset `name` with the JSON overrides merged into its embedded sizes and recipes."
    p = get_preset(name)
    if "iters" in seg: seg = dict(seg, iters=tuple(tuple(x) for x in seg["iters"]))
    return replace(p, embedded=replace(p.embedded, **sizes), distill=replace(p.distill, **distill),
                   seg=replace(p.seg, **seg), teacher_pretrain=replace(p.teacher_pretrain, **teacher))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--rows", nargs="+", default=["unip", "no_pretrain", "teacher"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    for k in ("sizes", "distill", "seg", "teacher"):
        ap.add_argument(f"--{k}", default="{}", help="JSON overrides")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())/"pretrain-gap")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = changed_preset(a.preset, *(json.loads(getattr(a, k)) for k in ("sizes", "distill", "seg", "teacher")))
    folders = {k: a.work/k for k in ("data", "cache", "reports")}
    st = Settings(file=Path(__file__), data_root=folders["data"], cache_dir=folders["cache"],
                  reports_dir=folders["reports"], preset=p.name)
    registry, runs = ablation_registry(infpre_subsets(study_roots(p, st)["infpre"])), []
    for seed in a.seeds:
        for row in a.rows:
            rec = RunRecorder(config={}, seed=seed)
            metrics = run_ablation(Run.of(get_ablation(registry, row), p, seed), st, stage=rec.stage)
            ft, lp, times = metrics["ft"], metrics["lp"], rec.stages
            seg_s = sum(v for k, v in times.items() if k[:3] in ("ft_", "lp_"))
            runs.append(dict(row=row, seed=seed, ft=ft, lp=lp, hybrid_layer=metrics["hybrid_layer"],
                             stage_times_s=times))
            sets = " ".join(f"{k} {100 * ft[k]:.1f}/{100 * lp[k]:.1f}" for k in ft if k != "avg")
            print(f"seed {seed} {row:12s} FT {100 * ft['avg']:.1f} LP {100 * lp['avg']:.1f} ({sets}; "
                  f"teacher {times['teacher']:.0f} s, distil {times.get('distill', 0):.0f} s, "
                  f"segment {seg_s:.0f} s)", flush=True)
    if a.json:
        a.json.write_text(json.dumps(dict(preset=asdict(p), runs=runs), indent=1, default=str))

if __name__ == "__main__": main()
