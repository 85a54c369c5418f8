"""`attention_nmi` over a whole batch vs a Python loop over images and heads (each map in numpy), same maps.

    python benchmarks/nmi.py [--batch 32 --heads 6 --tokens 197]

Prints both timings and their ratio (goal: the batched call is at least 10x faster), and beside them the floor of any exact
batched call on probabilities: one `torch.log` over the maps (H(K|Q) needs the log of every entry), so loop / log is the most
that batching can gain over this loop with torch's log.
"""
import argparse, math, time
import numpy as np, torch
from unip_nb.nmi import attention_nmi

def nmi_per_map(a: np.ndarray) -> float:
    "NMI of one attention map with uniform p(q), written for a single [Q, K] array."
    pk = a.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(a * np.log(a / pk)) / a.shape[0]
        hk = -np.nansum(pk * np.log(pk))
    return mi / math.sqrt(math.log(a.shape[0]) * hk)

def best_of(f, repeats: int = 3) -> float:
    "Fastest of `repeats` wall times of `f()`, in seconds."
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32); ap.add_argument("--heads", type=int, default=6); ap.add_argument("--tokens", type=int, default=197)
    a = ap.parse_args()
    torch.manual_seed(0)
    attn = torch.randn(a.batch, a.heads, a.tokens, a.tokens).mul(2).softmax(-1)
    maps = attn.numpy()
    loop = lambda: [[nmi_per_map(maps[b, h]) for h in range(a.heads)] for b in range(a.batch)]
    batched = lambda: attention_nmi(attn)
    np.testing.assert_allclose(np.array(loop()), batched().numpy(), rtol=1e-4)
    t_loop, t_batch, t_log = best_of(loop), best_of(batched), best_of(lambda: attn.log())
    print(f"attention maps [{a.batch}, {a.heads}, {a.tokens}, {a.tokens}], torch threads {torch.get_num_threads()}")
    print(f"per-image loop  {1e3 * t_loop:8.1f} ms")
    print(f"attention_nmi   {1e3 * t_batch:8.1f} ms")
    print(f"torch.log alone {1e3 * t_log:8.1f} ms  (one log of every entry: the floor of an exact batched call)")
    print(f"speed-up        {t_loop / t_batch:8.1f}x  (goal >= 10x; at most {t_loop / t_log:.1f}x with torch's log)")
