"""`attention_nmi` over a whole batch vs a Python loop over images and heads (each map in numpy), same maps.

    python benchmarks/nmi.py [--preset default paper] [--batch B --heads H --tokens T]

The maps have the sizes `layerwise_nmi` gets from the teacher of each preset: a batch of the preset's NMI analysis
(`nmi_batch` images), every head, patch tokens only. `--batch`, `--heads` and `--tokens` set other sizes instead.
Prints per size both timings and their ratio (goal: the batched call is at least 10x faster); the batched call with
the maps in one piece (`chunk` = all entries), to show what its chunks gain; and the floor of any exact batched call on
probabilities: one `torch.log` of every entry (H(K|Q) needs them all), chunk by chunk into one buffer, so loop / log is
the most that batching can gain over this loop with torch's log.
"""
import argparse, math, time
import numpy as np, torch
from unip_nb.attention import create_vit
from unip_nb.config import PRESETS
from unip_nb.nmi import NMI_CHUNK, attention_nmi, map_chunks

def nmi_per_map(a: np.ndarray) -> float:
    "NMI of one attention map with uniform p(q), written for a single [Q, K] array."
    pk = a.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(a * np.log(a / pk)) / a.shape[0]
        hk = -np.nansum(pk * np.log(pk))
    return mi / math.sqrt(math.log(a.shape[0]) * hk)

def best_of(f, repeats: int = 10) -> float:
    "Fastest of `repeats` wall times of `f()`, in seconds."
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)

def preset_sizes(name: str) -> tuple[int, int, int]:
    "(images, heads, patch tokens) of one batch of the preset's teacher NMI analysis (the ViT built on the meta device)."
    p = PRESETS[name]
    with torch.device("meta"): vit = create_vit(p.teacher_arch, p.img_size)
    return p.nmi_batch, vit.blocks[0].attn.num_heads, vit.patch_embed.num_patches

def time_sizes(batch: int, heads: int, tokens: int) -> dict:
    "Loop, batched (in chunks and in one piece) and chunked `torch.log` times (s) on seeded random maps, once loop and batch agree."
    torch.manual_seed(0)
    attn = torch.randn(batch, heads, tokens, tokens).mul(2).softmax(-1)
    maps = attn.numpy()
    loop = lambda: [[nmi_per_map(maps[b, h]) for h in range(heads)] for b in range(batch)]
    np.testing.assert_allclose(np.array(loop()), attention_nmi(attn).numpy(), rtol=1e-4)
    chunks = map_chunks(attn)
    buf = torch.empty_like(chunks[0])
    return dict(loop=best_of(loop), batched=best_of(lambda: attention_nmi(attn)),
                unchunked=best_of(lambda: attention_nmi(attn, chunk=attn.numel())),
                log=best_of(lambda: [torch.log(c, out=buf[:len(c)]) for c in chunks]))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", choices=list(PRESETS), default=["default", "paper"], help="take the maps' sizes from these presets")
    ap.add_argument("--batch", type=int); ap.add_argument("--heads", type=int); ap.add_argument("--tokens", type=int)
    a = ap.parse_args()
    custom = (a.batch, a.heads, a.tokens)
    if any(v is not None for v in custom) and None in custom: ap.error("give all of --batch, --heads and --tokens, or none")
    sizes = {"custom": custom} if a.batch is not None else {p: preset_sizes(p) for p in a.preset}
    print(f"torch threads {torch.get_num_threads()}; attention_nmi takes {NMI_CHUNK} entries a chunk; best of 10, ms")
    print(f"{'maps':<28} {'loop':>8} {'batched':>8} {'unchunked':>10} {'log':>7} {'speed-up':>9} {'at most':>8}")
    for name, (b, h, t) in sizes.items():
        ms = {k: 1e3 * v for k, v in time_sizes(b, h, t).items()}
        print(f"{f'{name} [{b}, {h}, {t}, {t}]':<28} {ms['loop']:8.2f} {ms['batched']:8.2f} {ms['unchunked']:10.2f} {ms['log']:7.2f}"
              f" {ms['loop'] / ms['batched']:8.1f}x {ms['loop'] / ms['log']:7.1f}x")
    print("speed-up: loop / batched (goal >= 10x); at most: loop / log, the most any exact batched call with torch's log can reach")
