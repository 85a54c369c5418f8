"""One optimiser step of our HAD distillation vs an eager reference of the official computation: same models, weights and batch.

    python benchmarks/distill_step.py [--device cpu|cuda] [--preset smoke|default|paper] [--batch 64] [--amp bf16] [--json out.json]
    python benchmarks/distill_step.py --teacher vit_large_patch16_224 --student vit_small_patch16_224 --img-size 224 --layer 18 --batch 32

OURS is what the library trains: the frozen teacher, cut after block `layer` as `run_ablation` holds it (`vit_through`:
the later blocks are not kept), runs blocks 1..layer-1 and only the q·kᵀ logits of block `layer` (`attention_logits`,
under no_grad); the student (`unip_student`, `DistilledStudent`) runs blocks 1..depth-1 with timm's fused attention
(scaled_dot_product_attention) and its `LowMemoryMlp`s (the GELU recomputed in backward, not kept), and only the q·kᵀ
logits of its last block; then `had_loss`, backward and an AdamW step over `param_groups` at `official_lr`, as
`distill_learner` builds them. Under `--amp bf16` ours autocasts
the student and the loss only, as the library's `amp` does (`TeacherTarget` computes the target before fastai's
`MixedPrecision` enters autocast); the reference autocasts the teacher too, as the official code does.

REFERENCE (`reference_step` below) is the eager baseline: every block of teacher and student with explicit softmax
attention (timm's `fused_attn=False` path) and timm's own `Mlp`, the whole teacher held and its full forward through all its blocks and its final norm (under
no_grad), the student's last block in full (attention output and MLP too), the logits taken from the explicit
computation, then the same loss, backward and AdamW step. (The official code itself stops the teacher after block
`layer` and uses SDPA in the blocks whose attention it does not distil; `--reference official` times that variant.)

Before timing, the script checks that both compute the same HAD loss and gradients on the same batch (fp32) and exits
with an error when they differ. The two steps are then timed in turn, step by step, the order alternating each round (so
that other load on the machine falls on both alike): images/s is the batch over the median of `--steps` step times after
`--warmup` rounds (CUDA synchronised). Step memory is the peak of what a step allocates above what is alive before it
(weights, AdamW state, the batch): on CUDA `max_memory_allocated` minus `memory_allocated` before the step (max over the
timed steps); on CPU the peak of the tensors created during one more step, from torch.profiler's memory timeline (the
process RSS is dominated by ~1 GB of imported libraries). Peak memory is that plus the bytes alive before the step. Our
step's FLOPs are counted with `FlopCounterMode` (forward and backward, SDPA included, the optimiser's element-wise work
not) and set against the measured rate of a large `torch.mm` in the step's matmul dtype.
"""
import argparse, copy, json, os, platform, statistics, sys, time, warnings
from contextlib import nullcontext
warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script deprecation, at import of a dependency
import psutil, timm, torch
import torch.utils.flop_counter as flop_counter
from torch.utils.flop_counter import FlopCounterMode
from timm.layers import Mlp
from unip_nb.attention import attention_logits, create_vit, vit_through
from unip_nb.config import PRESETS
from unip_nb.distill import DistilledStudent, Term, check_pair, had_loss, teacher_targets, terms_loss, unip_student
from unip_nb.training import fit_resumable, official_lr, param_groups, split_batch

GOALS = dict(throughput=1.3, memory=0.8, peak_fraction=0.5)  # ours/reference >=, ours/reference <=, of matmul peak >=

# ---------------------------------------------------------------------------------------------------------------- setup
def parse_arch(s):
    "A timm model name, or a JSON dict of `VisionTransformer` arguments."
    return json.loads(s) if s.strip().startswith("{") else s

def default_layer(p) -> int:
    "The preset's fixed hybrid layer, or 3/4 of the teacher's depth where the NMI rule picks it."
    return p.hybrid_layer if p.hybrid_layer != "nmi" else 3 * p.teacher_arch["depth"] // 4

def resolve(a) -> argparse.Namespace:
    "Fill sizes left unset from the preset (CPU: default, CUDA: paper)."
    p = PRESETS[a.preset or ("paper" if a.device == "cuda" else "default")]
    a.preset = p.name
    a.teacher = parse_arch(a.teacher) if a.teacher else p.teacher_arch
    a.student = parse_arch(a.student) if a.student else p.student_arch
    a.img_size, a.layer = a.img_size or p.img_size, a.layer or default_layer(p)
    a.batch = a.batch or min(split_batch(p.distill), 64)
    a.recipe = p.distill
    return a

def build(a):
    "Teacher (frozen, eval), student (train, its last block with the teacher's heads) and a random batch, all fixed by `--seed`."
    torch.manual_seed(a.seed)
    teacher = create_vit(a.teacher, a.img_size).to(a.device).eval().requires_grad_(False)
    student = unip_student(a.student, a.img_size, last_heads=teacher.blocks[0].attn.num_heads).to(a.device).train()
    try: check_pair(teacher, student)
    except ValueError as e: sys.exit(f"error: {e}")
    x = torch.randn(a.batch, 3, a.img_size, a.img_size, generator=torch.Generator().manual_seed(a.seed)).to(a.device)
    return teacher, student, x

def optimizer(student, recipe):
    "AdamW over the library's parameter groups at the official learning rate, as `distill_learner` builds it."
    return torch.optim.AdamW(param_groups(student, recipe.weight_decay), lr=official_lr(recipe.blr, recipe.batch_size), betas=recipe.betas)

def autocast(a):
    return torch.autocast(a.device, dtype=torch.bfloat16) if a.amp == "bf16" else nullcontext()

# ----------------------------------------------------------------------------------------------------------- the steps
def hybrid_term(student, layer) -> tuple:
    "The resolved target of HAD from teacher `layer` into the student's last block."
    return (Term("attention", layer, len(student.blocks)),)

def ours_step(teacher, student, x, layer, opt, amp):
    "The library's step: truncated teacher logits under no_grad, `DistilledStudent` logits, `terms_loss`, backward, AdamW."
    terms = hybrid_term(student, layer)
    with torch.no_grad(): targets = teacher_targets(teacher, x, terms)  # outside autocast, as `TeacherTarget` runs before `MixedPrecision`
    with amp: loss = terms_loss(terms, DistilledStudent(student, terms, teacher.embed_dim)(x), *targets)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return loss.detach()

def eager_block(blk, h):
    "timm `Block.forward` with explicit softmax attention (the `fused_attn=False` path), also returning its scaled q·kᵀ."
    a, x = blk.attn, blk.norm1(h)
    assert getattr(a, "gate", None) is None, "gated attention is not written out here"
    B, N, _ = x.shape
    q, k, v = a.qkv(x).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = a.q_norm(q), a.k_norm(k)
    logits = (q * a.scale) @ k.transpose(-2, -1)
    o = (a.attn_drop(logits.softmax(-1)) @ v).transpose(1, 2).reshape(B, N, a.attn_dim)
    h = h + blk.drop_path1(blk.ls1(a.proj_drop(a.proj(a.norm(o)))))
    return h + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(h)))), logits

def eager_logits(vit, x, layer, full=True):
    "Run `vit` block by block (blocks with `fused_attn=False`) and return the logits of block `layer`; `full`: all blocks and the final norm."
    h = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
    for i, blk in enumerate(vit.blocks, start=1):
        if i == layer: h, logits = eager_block(blk, h)
        elif i < layer or full: h = blk(h)
    if full: vit.norm(h)
    return logits

def reference_step(teacher, student, x, layer, opt, amp, full_teacher=True):
    "The eager baseline: teacher (all blocks) and student (all blocks, last in full) with explicit attention, same loss and AdamW."
    with amp:
        with torch.no_grad(): target = eager_logits(teacher, x, layer, full=full_teacher)
        loss = had_loss(eager_logits(student, x, len(student.blocks)), target)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return loss.detach()

def as_reference(teacher, student, kind):
    "Set the blocks as the reference computes them: timm's `Mlp`, attention all explicit (`eager`) or explicit only where distilled (`official`)."
    for m in (teacher, student):
        for blk in m.blocks: blk.attn.fused_attn, blk.mlp.__class__ = kind == "official", Mlp
    return teacher, student

def step_fn(a, variant):
    "A step closure `(teacher, student, x, opt) -> loss` of `variant`, with the models set up for it."
    amp = autocast(a)
    if variant == "ours": return lambda t, s, x, o: ours_step(t, s, x, a.layer, o, amp)
    full = a.reference == "eager"
    return lambda t, s, x, o: reference_step(t, s, x, a.layer, o, amp, full_teacher=full)

# --------------------------------------------------------------------------------------------------------- correctness
def check_same_math(a):
    "HAD loss and gradients of one fp32 step of ours and the reference on the same batch, or exit with an error."
    teacher, student, x = build(a)
    rt, rs = as_reference(copy.deepcopy(teacher), copy.deepcopy(student), a.reference)
    teacher = vit_through(teacher, a.layer)
    with torch.no_grad():  # the written-out block is timm's own eager block
        blk = copy.deepcopy(rt.blocks[0]); blk.attn.fused_attn = False
        h = torch.randn(2, *rt.pos_embed.shape[1:], device=a.device)
        torch.testing.assert_close(eager_block(blk, h)[0], blk(h), rtol=1e-5, atol=1e-5)
    results = []
    for t, s in ((teacher, student), (rt, rs)):
        torch.manual_seed(a.seed)  # the same stochastic-depth draws in both
        with torch.no_grad(): target = attention_logits(t, x, a.layer) if s is student else eager_logits(t, x, a.layer, a.reference == "eager")
        loss = had_loss(attention_logits(s, x, len(s.blocks)) if s is student else eager_logits(s, x, len(s.blocks)), target)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in s.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = results
    loss_rel = abs(l0 - l1) / abs(l1)
    grad_rel = max(((g0[n] - g1[n]).norm() / g1[n].norm().clamp_min(1e-12)).item() for n in g1)
    missing = set(g1) ^ set(g0)
    print(f"same math: HAD loss ours {l0:.8f} reference {l1:.8f} (rel diff {loss_rel:.1e}); worst gradient rel diff {grad_rel:.1e}")
    if missing: sys.exit(f"error: ours and the reference train different parameters: {sorted(missing)}")
    if loss_rel > 1e-5: sys.exit(f"error: the HAD loss of ours and the reference differ by {loss_rel:.1e} (relative), more than 1e-5")
    if grad_rel > 1e-3: sys.exit(f"error: the gradients of ours and the reference differ by {grad_rel:.1e} (relative norm), more than 1e-3")
    return dict(loss_ours=l0, loss_reference=l1, loss_rel_diff=loss_rel, grad_rel_diff=grad_rel)

# --------------------------------------------------------------------------------------------------------------- FLOPs
_aten = torch.ops.aten
CPU_SDPA_FLOPS = {  # FlopCounterMode has no formula for the CPU flash-attention kernels
    _aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, out_shape=None, **__: flop_counter.sdpa_flop_count(q, k, v),
    _aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *_, out_shape=None, **__: flop_counter.sdpa_backward_flop_count(g, q, k, v)}

def step_flops(a, variant) -> int:
    "FLOPs of one step (forward and backward; the optimiser's element-wise work is not counted)."
    teacher, student, x = build(a)
    teacher, student = as_reference(teacher, student, a.reference) if variant != "ours" else (vit_through(teacher, a.layer), student)
    opt = optimizer(student, a.recipe)
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as fc: step_fn(a, variant)(teacher, student, x, opt)
    return fc.get_total_flops()

def matmul_peak(device, dtype, repeats=8) -> float:
    "FLOP/s of the fastest of `repeats` square `torch.mm` (2048 on CPU, 8192 on CUDA) at torch's current thread count."
    n = 8192 if device == "cuda" else 2048
    m1, m2 = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 2):
        sync(device); t = time.perf_counter(); torch.mm(m1, m2); sync(device)
        if i >= 2: best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best

# ------------------------------------------------------------------------------------------------------------- timing
def sync(device):
    if device == "cuda": torch.cuda.synchronize()

def tensor_bytes(*objs) -> int:
    "Bytes of the distinct tensors in models, optimisers and tensors `objs` (weights, AdamW state, the batch)."
    seen, total = set(), 0
    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen: seen.add(t.data_ptr()); total += t.untyped_storage().nbytes()
    for o in objs:
        if isinstance(o, torch.nn.Module): [add(t) for t in (*o.parameters(), *o.buffers())]
        elif isinstance(o, torch.optim.Optimizer): [add(t) for st in o.state.values() for t in st.values()]
        else: add(o)
    return total

def cpu_step_peak(step, *args) -> int:
    "Peak bytes of tensors created during one step above those alive before it, from the profiler's memory timeline (CPU)."
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof: step(*args)
    cur = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE: cur += size
        elif action == Action.DESTROY: cur -= size
        peak = max(peak, cur)
    return peak

def measure(a) -> dict:
    "Time ours and the reference step by step in turn (the order alternating each round), then measure the memory of a step of each."
    teacher, student, x = build(a)
    initial = copy.deepcopy(student) if a.learner else None  # the Learner starts from the same weights
    cut = vit_through(teacher, a.layer)
    models = dict(ours=(cut, student), reference=as_reference(copy.deepcopy(teacher), copy.deepcopy(student), a.reference))
    opts = {v: optimizer(s, a.recipe) for v, (_, s) in models.items()}
    steps = {v: step_fn(a, v) for v in models}
    times, step_peak = {v: [] for v in models}, dict.fromkeys(models, 0)
    for i in range(a.warmup + a.steps):
        for v in (("ours", "reference") if i % 2 == 0 else ("reference", "ours")):
            sync(a.device)
            if a.device == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
            t = time.perf_counter()
            loss = steps[v](*models[v], x, opts[v])
            sync(a.device)
            if i < a.warmup: continue
            times[v].append(time.perf_counter() - t)
            if a.device == "cuda": step_peak[v] = max(step_peak[v], torch.cuda.max_memory_allocated() - base)
            if not torch.isfinite(loss): raise RuntimeError(f"{v}: the loss is not finite")
    if a.device == "cpu": step_peak = {v: cpu_step_peak(steps[v], *models[v], x, opts[v]) for v in models}
    res = {}
    for v in models:
        alive = tensor_bytes(*models[v], opts[v], x)
        med = statistics.median(times[v])
        res[v] = dict(step_s=med, step_s_all=times[v], images_per_s=a.batch / med, alive_bytes=alive,
                      step_peak_bytes=step_peak[v], peak_bytes=alive + step_peak[v])
    if a.learner: res["learner"] = measure_learner(a, cut, initial, x)
    return res

def measure_learner(a, teacher, student, x) -> dict:
    "Our step through fastai as the library fits: `distill_learner` and `fit_resumable`, the same batch repeated (a warm-up epoch, then a timed one)."
    from dataclasses import replace
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from unip_nb.distill import distill_learner
    class Same(torch.utils.data.Dataset):
        def __init__(self, n): self.n = n
        def __len__(self): return self.n * a.batch
        def __getitem__(self, i): return (x[i % a.batch],)
    def dls(n): return DataLoaders(DataLoader(Same(n), bs=a.batch, drop_last=True), DataLoader([], bs=a.batch), device=a.device)
    module = DistilledStudent(student, hybrid_term(student, a.layer), teacher.embed_dim)
    learn = distill_learner(module, teacher, dls(max(1, a.warmup)), replace(a.recipe, epochs=1, accum=1))
    amp = "bf16" if a.amp == "bf16" else None
    fit_resumable(learn, 1, amp=amp)  # warm-up epoch
    learn.dls = dls(a.steps)
    sync(a.device)
    if a.device == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    fit_resumable(learn, 1, amp=amp)
    sync(a.device); wall = time.perf_counter() - t
    step_peak = torch.cuda.max_memory_allocated() - base if a.device == "cuda" else None
    return dict(step_s=wall / a.steps, step_s_all=[wall / a.steps], images_per_s=a.batch * a.steps / wall, alive_bytes=None,
                step_peak_bytes=step_peak, peak_bytes=None)

# ------------------------------------------------------------------------------------------------------------- output
def machine(device) -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    return dict(cpu=cpu, cores=os.cpu_count(), memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
                gpu=torch.cuda.get_device_name() if device == "cuda" else None, torch=torch.__version__, timm=timm.__version__,
                threads=torch.get_num_threads(), python=platform.python_version())

def mib(b): return f"{'-':>9s}" if b is None else f"{b / 2**20:9.1f}"

def verdict(ok): return "PASS" if ok else "MISS"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", choices=list(PRESETS), default=None, help="sizes (default: default on CPU, paper on CUDA)")
    ap.add_argument("--teacher", default=None, help="timm name or JSON dict of VisionTransformer args (default: the preset's)")
    ap.add_argument("--student", default=None, help="as --teacher; its last block gets the teacher's head count")
    ap.add_argument("--img-size", type=int, default=None); ap.add_argument("--layer", type=int, default=None, help="1-based teacher layer")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default: the preset's, at most 64)")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none",
                    help="bf16 autocast (CUDA): ours as the library's `amp` (student and loss; the teacher target is computed before autocast), "
                         "the reference as the official code (teacher too)")
    ap.add_argument("--reference", choices=["eager", "official"], default="eager",
                    help="eager: all blocks explicit, full teacher; official: as the official code (teacher to block `layer`, SDPA elsewhere)")
    ap.add_argument("--steps", type=int, default=10); ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--learner", action="store_true", help="also time our step through a fastai Learner (distill_learner + fit_resumable)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="save the figures to this JSON file")
    a = resolve(ap.parse_args())
    if a.device == "cuda" and not torch.cuda.is_available(): sys.exit("error: --device cuda but no CUDA GPU is visible")
    if a.amp == "bf16" and a.device != "cuda": sys.exit("error: --amp bf16 is for CUDA")
    if a.threads: torch.set_num_threads(a.threads)

    m = machine(a.device)
    print(f"machine: {m['gpu'] or m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB); torch {m['torch']}, timm {m['timm']}, {m['threads']} threads")
    sizes = dict(teacher=a.teacher, student=a.student, img_size=a.img_size, layer=a.layer, batch=a.batch, amp=a.amp, reference=a.reference)
    print("sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + f" (preset {a.preset}); median of {a.steps} steps after {a.warmup}")
    same = check_same_math(a)
    dtype = torch.bfloat16 if a.amp == "bf16" else torch.float32
    peak = matmul_peak(a.device, dtype)
    res = measure(a)
    flops = {v: step_flops(a, v) for v in ("ours", "reference")}
    peak = max(peak, matmul_peak(a.device, dtype))  # the best of before and after the steps: other load only lowers it
    o, r = res["ours"], res["reference"]
    thr, mem, step_mem = o["images_per_s"] / r["images_per_s"], o["peak_bytes"] / r["peak_bytes"], o["step_peak_bytes"] / r["step_peak_bytes"]
    frac = flops["ours"] / o["step_s"] / peak
    mem_what = ("step MiB: the most a step allocates above what is alive before it (" +
                ("CUDA max_memory_allocated - memory_allocated, max over the timed steps" if a.device == "cuda" else
                 "peak of the tensors created in one step, from torch.profiler's memory timeline") +
                "); peak MiB: step MiB + the tensors alive before the step (weights, AdamW state, batch)")
    print(f"\n{'':22s}{'images/s':>10s}{'step ms':>10s}{'GFLOP/step':>12s}{'TFLOP/s':>9s}{'peak MiB':>10s}{'step MiB':>10s}")
    for v, rr in res.items():
        f = flops.get(v, flops["ours"])
        print(f"{v:22s}{rr['images_per_s']:10.1f}{1e3 * rr['step_s']:10.1f}{f / 1e9:12.2f}{f / rr['step_s'] / 1e12:9.3f}"
              f" {mib(rr['peak_bytes'])} {mib(rr['step_peak_bytes'])}")
    print(f"{'matmul peak':22s}{'':42s}{peak / 1e12:9.3f}   ({dtype}, torch.mm)")
    print(f"\n{mem_what}")
    print(f"throughput ours/reference   {thr:6.2f}x   goal >= {GOALS['throughput']}x  {verdict(thr >= GOALS['throughput'])}")
    print(f"peak memory ours/reference  {mem:6.2f}x   goal <= {GOALS['memory']}x  {verdict(mem <= GOALS['memory'])}")
    print(f"step memory ours/reference  {step_mem:6.2f}x   (what a step allocates; the weights held differ by the teacher's blocks after `layer`)")
    print(f"ours / matmul peak          {100 * frac:6.1f}%   goal >= {100 * GOALS['peak_fraction']:.0f}%  {verdict(frac >= GOALS['peak_fraction'])}")
    if a.json:
        out = dict(machine=m, sizes=sizes, preset=a.preset, steps=a.steps, warmup=a.warmup, same_math=same, results=res, flops=flops,
                   matmul_peak_flops=peak, matmul_dtype=str(dtype), memory_measure=mem_what,
                   ratios=dict(throughput=thr, peak_memory=mem, step_memory=step_mem, peak_fraction=frac), goals=GOALS,
                   met={k: ok for k, ok in (("throughput", thr >= GOALS["throughput"]), ("memory", mem <= GOALS["memory"]),
                                            ("peak_fraction", frac >= GOALS["peak_fraction"]))})
        open(a.json, "w").write(json.dumps(out, indent=2, default=str))
        print(f"saved {a.json}")
