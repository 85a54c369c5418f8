"Same seed, same CPU: the smoke pipeline gives the same metrics to the last digit, from nothing cached; another seed does not."
from dataclasses import replace
from unip_nb.ablations import Run, ablation_registry, run_ablation
from unip_nb.config import get_preset, load_settings
from unip_nb.synthetic import INFPRE_SENSORS

def fresh_run(tmp_path, name, seed):
    "Run one smoke ablation with empty data, cache and report folders of its own."
    settings = replace(load_settings(), data_root=tmp_path/name/"data", cache_dir=tmp_path/name/"cache", reports_dir=tmp_path/name/"reports")
    return run_ablation(Run(ablation_registry(list(INFPRE_SENSORS))["unip"], get_preset("smoke"), seed), settings)

def test_same_seed_same_metrics_different_seed_different(tmp_path):
    a, b, c = fresh_run(tmp_path, "a", 0), fresh_run(tmp_path, "b", 0), fresh_run(tmp_path, "c", 1)
    assert not a["student_cached"] and not b["student_cached"], "both runs distilled their own student"
    for key in ("ft", "lp", "teacher_nmi", "distill_losses"): assert a[key] == b[key], key
    assert a["ft"] != c["ft"] and a["distill_losses"] != c["distill_losses"]
