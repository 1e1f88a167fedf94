"""Attention backends side by side: the reference formula, PyTorch SDPA and the Triton kernel.

    python benchmarks/attention.py                      # CPU: reference vs SDPA (fp32), kernel
                                                        #      checked in the interpreter
    python benchmarks/attention.py --device cuda --dtype bf16 [--quick]

Sweep: a fixed number of tokens per batch (B·N = 16384 on a GPU, 4096 on the CPU) split into
sequences of N = 128 … 8192 (CPU: 128 … 1024), heads × head_dim = 768 as in BERT-base (D = 64 →
12 heads, D = 128 → 6 heads), with and without padding, forward and forward+backward. With
padding, sequence 0 is full and the others have random lengths uniform in [N/4, N] (seeded),
passed as a boolean key-padding mask.

Columns:
    median ms and spread: median of the timed repetitions and their interquartile range. GPU:
        CUDA events around each call after warm-up (compilation stays out), no L2 flush (q, k, v
        and o together exceed the 60 MB L2 at these sizes). CPU: perf_counter.
    TFLOP/s: forward 4·B·H·N²·D, backward 2.5× that, counted over the padded N × N (what the
        reference and SDPA compute; the kernel skips key blocks of padding, so with padding its
        figure is "equivalent" throughput). No causal runs here.
    GB/s: minimum traffic. Forward reads q, k, v and writes o: 4·B·H·N·D elements. Backward
        reads q, k, v, o, dO and writes dq, dk, dv: 8·B·H·N·D more.
    peak MB: torch.cuda.max_memory_allocated during one call, minus what was allocated before.
        On the CPU there is no per-call peak (ru_maxrss only ever grows): n/a.
    max err: largest |difference| of the output (forward rows) or of dq, dk, dv (fwd+bwd rows)
        against the formula in fp32 on upcast inputs (fp64 when the inputs are fp32).
    SDPA kernel: which implementation torch picked, read from the profiler's op names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from minitf.model.attention import reference_attention  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODEL_WIDTH = 768  # heads × head_dim, BERT-base
GOALS = {("fwd", True): 1.2, ("fwd", False): 0.9, ("fwd+bwd", True): 0.8,
         ("fwd+bwd", False): 0.8}  # Triton vs SDPA speed, H200 bf16 D=64 N≤4096


@dataclass
class Row:
    head_dim: int
    n: int
    batch: int
    heads: int
    padded: bool
    mode: str  # "fwd" or "fwd+bwd"
    backend: str
    median_ms: float
    q1_ms: float
    q3_ms: float
    tflops: float
    gbps: float
    peak_mb: float | None
    max_err: float
    sdpa_kernel: str = ""


# ----------------------------------------------------------------------------------------------
# the backends, all called the same way
# ----------------------------------------------------------------------------------------------
def sdpa(q, k, v, mask):
    """Plain SDPA with a boolean (B, 1, 1, N) mask; no NaN clean-up (lengths here are ≥ 1)."""
    attn_mask = None if mask is None else mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def reference(q, k, v, mask):
    return reference_attention(q, k, v, key_padding_mask=mask)


def triton_kernel(q, k, v, mask):
    from minitf.kernels import fused_attention

    return fused_attention(q, k, v, key_padding_mask=mask)


def sdpa_kernel_name(q, k, v, mask) -> str:
    """Which SDPA implementation runs for these inputs, from the profiler's aten op names."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sdpa(q, k, v, mask)
    names = {e.name for e in prof.events()}
    for key, label in (("cudnn_attention", "cudnn"), ("flash_attention_for_cpu", "flash (cpu)"),
                       ("flash_attention", "flash"), ("efficient_attention", "mem-efficient"),
                       ("attention_math", "math")):
        if any(key in name for name in names):
            return label
    return "?"


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
def make_inputs(batch, heads, n, head_dim, dtype, device, padded, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen).to(device, dtype)
               for _ in range(3))
    do = torch.randn(batch, heads, n, head_dim, generator=gen).to(device, dtype)
    mask = None
    if padded:
        lengths = torch.randint(n // 4, n + 1, (batch,), generator=gen)
        lengths[0] = n
        mask = (torch.arange(n)[None, :] < lengths[:, None]).to(device)
    return q, k, v, do, mask


def run_once(fn, q, k, v, do, mask, mode):
    """One forward (no autograd) or one forward+backward; returns the outputs compared."""
    if mode == "fwd":
        with torch.no_grad():
            return (fn(q, k, v, mask),)
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves, mask)
    return torch.autograd.grad(out, leaves, do)


def timed(fn, reps, warmup, device):
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1, q3 = min(times), max(times)
    return statistics.median(times), q1, q3


def peak_mb(fn, device) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def max_error(got, q, k, v, do, mask, mode):
    ref_dtype = torch.float64 if q.dtype == torch.float32 else torch.float32
    up = [t.to(ref_dtype) for t in (q, k, v, do)]
    want = run_once(reference, *up, mask, mode)
    return max((g.to(ref_dtype) - w).abs().max().item() for g, w in zip(got, want, strict=True))


def measure(backends, head_dim, n, tokens, dtype, device, padded, mode, reps, warmup):
    heads = MODEL_WIDTH // head_dim
    batch = max(1, tokens // n)
    q, k, v, do, mask = make_inputs(batch, heads, n, head_dim, dtype, device, padded)
    flops = 4 * batch * heads * n * n * head_dim * (1 if mode == "fwd" else 3.5)
    elems = batch * heads * n * head_dim * (4 if mode == "fwd" else 12)
    bytes_moved = elems * q.element_size()
    rows = []
    for name, fn in backends.items():
        def call(fn=fn):
            return run_once(fn, q, k, v, do, mask, mode)
        med, q1, q3 = timed(call, reps, warmup, device)
        rows.append(Row(head_dim, n, batch, heads, padded, mode, name, med, q1, q3,
                        flops / med / 1e9, bytes_moved / med / 1e6, peak_mb(call, device),
                        max_error(call(), q, k, v, do, mask, mode),
                        sdpa_kernel_name(q, k, v, mask) if name == "sdpa" else ""))
        print(f"  D={head_dim:<3} N={n:<5} B={batch:<4} pad={int(padded)} {mode:<7} "
              f"{name:<9} {med:9.3f} ms  err {rows[-1].max_err:.2e} {rows[-1].sdpa_kernel}",
              flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def interpreter_check(dtypes):
    """Correctness of the kernel under Triton's CPU interpreter on small shapes (no timing)."""
    from minitf.kernels import fused_attention

    lines = []
    for dtype in dtypes:
        for padded in (False, True):
            q, k, v, do, mask = make_inputs(2, 4, 200, 64, dtype, "cpu", padded, seed=1)
            errs = [max_error(run_once(lambda q, k, v, m: fused_attention(q, k, v, m), q, k, v,
                                       do, mask, mode), q, k, v, do, mask, mode)
                    for mode in ("fwd", "fwd+bwd")]
            lines.append(f"| {str(dtype).split('.')[-1]} | (2, 4, 200, 64) | "
                         f"{'random lengths' if padded else 'none'} | {errs[0]:.2e} | "
                         f"{errs[1]:.2e} |")
            print("  interpreter", lines[-1], flush=True)
    return lines


# ----------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------
def hardware(device) -> tuple[str, str]:
    """(description, short name for file names)."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
        short = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        return name, short
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}", "cpu"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        parts.append("triton not installed")
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}")
    return ", ".join(parts)


def markdown(rows, args, hw, interp_lines, elapsed) -> str:
    sdpa_ms = {(r.head_dim, r.n, r.padded, r.mode): r.median_ms for r in rows
               if r.backend == "sdpa"}
    out = [
        f"# Attention benchmark — {hw} — {args.dtype}",
        "",
        f"- date: {dt.date.today().isoformat()}; hardware: {hw}; {versions()}",
        f"- command: `{' '.join(['python benchmarks/attention.py', *sys.argv[1:]])}` "
        f"({elapsed / 60:.1f} min)",
        f"- tokens per batch B·N = {args.tokens}; heads × head_dim = {MODEL_WIDTH}; "
        f"reps {args.reps} after {args.warmup} warm-up; spread = interquartile range "
        "(min–max below 4 reps)",
        "- definitions of every column: the docstring of benchmarks/attention.py; "
        "vs SDPA = SDPA's median / this row's median (> 1 means faster than SDPA)",
    ]
    if args.device == "cpu":
        out.append("- the Triton kernel is not timed on the CPU: the interpreter runs it block "
                   "by block in numpy, so its speed means nothing (correctness check below)")
    out += [
        "",
        "| D | N | B | padding | pass | backend | median ms | spread ms | TFLOP/s | GB/s "
        "| peak MB | max err | vs SDPA | SDPA kernel |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = sdpa_ms.get((r.head_dim, r.n, r.padded, r.mode))
        speed = f"{ratio / r.median_ms:.2f}×" if ratio and r.backend != "sdpa" else ""
        out.append(
            f"| {r.head_dim} | {r.n} | {r.batch} | {'random' if r.padded else 'none'} | "
            f"{r.mode} | {r.backend} | {r.median_ms:.3f} | {r.q1_ms:.3f}–{r.q3_ms:.3f} | "
            f"{r.tflops:.2f} | {r.gbps:.1f} | "
            f"{'n/a' if r.peak_mb is None else format(r.peak_mb, '.0f')} | {r.max_err:.1e} | "
            f"{speed} | {r.sdpa_kernel} |")
    if any(r.backend == "triton" for r in rows):
        out += ["", "## Triton vs SDPA on the goal shapes (D = 64, N ≤ 4096)", "",
                "| pass | padding | goal | slowest ratio | over N |", "|---|---|---|---|---|"]
        for (mode, padded), goal in GOALS.items():
            ratios = [(sdpa_ms[(64, r.n, padded, mode)] / r.median_ms, r.n) for r in rows
                      if r.backend == "triton" and r.head_dim == 64 and r.n <= 4096
                      and r.padded == padded and r.mode == mode
                      and (64, r.n, padded, mode) in sdpa_ms]
            if ratios:
                worst = min(ratios)
                ns = ", ".join(str(n) for _, n in sorted(ratios, key=lambda x: x[1]))
                out.append(f"| {mode} | {'random' if padded else 'none'} | ≥ {goal}× | "
                           f"{worst[0]:.2f}× at N={worst[1]} | {ns} |")
    if interp_lines:
        out += ["", "## Triton kernel under the CPU interpreter (correctness only, not timed)",
                "", "Max abs error against the formula in fp32 (fp64 for fp32 inputs); "
                "fwd+bwd = max over dq, dk, dv.", "",
                "| dtype | (B, H, N, D) | padding | fwd err | fwd+bwd err |",
                "|---|---|---|---|---|", *interp_lines]
    return "\n".join(out) + "\n"


def plot(rows, path, title) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return False
    head_dims = sorted({r.head_dim for r in rows})
    modes = ["fwd", "fwd+bwd"]
    fig, axes = plt.subplots(len(head_dims), 2, figsize=(11, 4 * len(head_dims)), squeeze=False)
    colors = {"reference": "tab:gray", "sdpa": "tab:blue", "triton": "tab:red"}
    for i, head_dim in enumerate(head_dims):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            for backend in colors:
                for padded, style in ((False, "-"), (True, "--")):
                    pts = sorted((r.n, r.median_ms) for r in rows if r.backend == backend
                                 and r.head_dim == head_dim and r.mode == mode
                                 and r.padded == padded)
                    if pts:
                        ax.plot(*zip(*pts, strict=True), style, marker="o", color=colors[backend],
                                label=f"{backend}{' (padded)' if padded else ''}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length N (B·N fixed)")
            ax.set_ylabel("median ms")
            ax.set_title(f"D={head_dim}, {mode}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------
def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--quick", action="store_true",
                        help="fewer shapes and repetitions (GPU: D=64, N ≤ 4096)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"),
                        help="directory for the .md and .png (default benchmarks/results)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA GPU")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    dtype = DTYPES[args.dtype]

    if args.device == "cuda":
        args.tokens = 16384
        ns = [128, 256, 512, 1024, 2048, 4096, 8192]
        head_dims = [64, 128]
        args.reps, args.warmup = (10, 3) if args.quick else (30, 5)
        if args.quick:
            ns, head_dims = [256, 1024, 2048, 4096], [64]
        backends = {"reference": reference, "sdpa": sdpa, "triton": triton_kernel}
    else:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before minitf.kernels is first imported
        args.tokens = 4096
        ns = [128, 256, 512] if args.quick else [128, 256, 512, 1024]
        head_dims = [64] if args.quick else [64, 128]
        args.reps, args.warmup = (3, 1) if args.quick else (5, 1)
        backends = {"reference": reference, "sdpa": sdpa}

    hw, short = hardware(args.device)
    print(f"{hw}; {versions()}; dtype {args.dtype}", flush=True)
    # `timeout` sends SIGTERM: stop measuring, but still write what was measured.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    t0 = time.time()
    rows, interp_lines, interrupted = [], [], False
    try:
        for head_dim in head_dims:
            for n in ns:
                for padded in (False, True):
                    for mode in ("fwd", "fwd+bwd"):
                        rows += measure(backends, head_dim, n, args.tokens, dtype, args.device,
                                        padded, mode, args.reps, args.warmup)
        if args.device == "cpu":
            interp_lines = interpreter_check([torch.float32, torch.bfloat16])
    except KeyboardInterrupt:
        interrupted = True
        print(f"interrupted after {len(rows)} rows; writing those", flush=True)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"attention-{dt.date.today().isoformat()}-{short}-{args.dtype}"
    if args.quick:
        stem += "-quick"
    text = markdown(rows, args, hw, interp_lines, time.time() - t0)
    if interrupted:
        text += "\n**Interrupted (time limit): the sweep is incomplete.**\n"
    png = out_dir / f"{stem}.png"
    if plot(rows, png, f"attention, {hw}, {args.dtype}, B·N={args.tokens}"):
        text += f"\n![median ms vs N]({png.name})\n"
    (out_dir / f"{stem}.md").write_text(text)
    print(f"wrote {out_dir / stem}.md", flush=True)
    if math.isnan(sum(r.max_err for r in rows)):
        sys.exit("NaN in some backend's output")


if __name__ == "__main__":
    main()
