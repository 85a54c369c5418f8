"""What pre-training is worth on the embedded world: the `unip`, `no_pretrain` and `teacher` rows (those the
default preset may be tuned on), for a preset with some of its recipe changed.

    python benchmarks/pretrain_gap.py [--preset default] [--seeds 0] [--rows unip no_pretrain teacher]
        [--seg '{"lr": 3e-3, "iters": [["soda", 200, 20], ["mfnet", 136, 14], ["scutseg", 228, 23]]}']
        [--distill '{"epochs": 3, "blr": 6e-3}'] [--teacher '{"epochs": 40}']
        [--sizes '{"seg_train": 60}']
        [--work DIR] [--threads 1] [--json out.json]

Each override is JSON merged into the preset's `seg` (SegRecipe), `distill` and `teacher_pretrain`
(PretrainRecipe) or `embedded` (EmbeddedSizes). The data, the teacher and the students are cached in `--work`
(default: `<tmp>/pretrain-gap`), keyed as the study keys them, so a second call with another fine-tuning recipe
reuses them. Prints one line per run: average and per-set fine-tuning and linear-probing mIoU, and the distillation
and segmentation times. Runs in this process (no notebook), one run at a time; start two with `--threads 1` to use
two cores.
"""
import argparse, json, tempfile, time
from dataclasses import asdict, replace
from pathlib import Path
import torch
from unip_nb.ablations import (ablation_registry, choose_hybrid_layer, distilled_student, infmix_spec, run_config,
                               segmentation_scores, study_roots, teacher_id, teacher_layer_nmi)
from unip_nb.attention import vit_through
from unip_nb.config import Settings, get_preset
from unip_nb.distill import resolve_target
from unip_nb.files import stable_hash
from unip_nb.infmix import infpre_subsets
from unip_nb.teacher import teacher_for

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
    for k in ("sizes", "distill", "seg", "teacher"): ap.add_argument(f"--{k}", default="{}", help="JSON overrides")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())/"pretrain-gap")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = changed_preset(a.preset, *(json.loads(getattr(a, k)) for k in ("sizes", "distill", "seg", "teacher")))
    folders = {k: a.work/k for k in ("data", "cache", "reports")}
    st = Settings(file=Path(__file__), data_root=folders["data"], cache_dir=folders["cache"],
                  reports_dir=folders["reports"], preset=p.name)
    t = time.perf_counter()
    roots = study_roots(p, st)
    teacher = teacher_for(p, st, progress=False)
    hybrid, _ = choose_hybrid_layer(p, teacher_layer_nmi(teacher, roots["in1k"], p))
    print(f"data and teacher {time.perf_counter() - t:.0f} s; hybrid layer {hybrid}", flush=True)
    registry, tid, runs = ablation_registry(infpre_subsets(roots["infpre"])), teacher_id(p, st), []
    for seed in a.seeds:
        for row in a.rows:
            ab, t = registry[row], time.perf_counter()
            target = resolve_target(ab.target, len(teacher.blocks), hybrid)
            if ab.backbone == "teacher": backbone = teacher
            else:
                source = vit_through(teacher, target[1]) if target else teacher
                mix = infmix_spec(roots, ab.infmix)
                backbone, _ = distilled_student(source, target, mix, p, seed, st.cache_dir, tid)
            t_distill = time.perf_counter() - t
            work = st.cache_dir/"gap"/stable_hash(dict(run_config(ab, p, seed), teacher=tid))
            scores, _ = segmentation_scores(backbone, roots, p, seed, work)
            t_seg = time.perf_counter() - t - t_distill
            runs.append(dict(row=row, seed=seed, **scores, distill_s=t_distill, seg_s=t_seg))
            ft, lp = scores["ft"], scores["lp"]
            sets = " ".join(f"{k} {100 * ft[k]:.1f}/{100 * lp[k]:.1f}" for k in ft if k != "avg")
            print(f"seed {seed} {row:12s} FT {100 * ft['avg']:.1f} LP {100 * lp['avg']:.1f} "
                  f"({sets}; distil {t_distill:.0f} s, segment {t_seg:.0f} s)", flush=True)
    if a.json:
        a.json.write_text(json.dumps(dict(preset=asdict(p), hybrid_layer=hybrid, runs=runs), indent=1, default=str))

if __name__ == "__main__": main()
