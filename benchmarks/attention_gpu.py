"""Fused kernel (padded and varlen) against every SDPA backend, pinned: the GPU sweep.

    python benchmarks/attention_gpu.py --out DIR                       # the GPU sweep
    python benchmarks/attention_gpu.py --device cpu --dtypes bf16 --head-dims 16 \\
        --seq-lens 64 --tokens 128 --reps 1 --out /tmp/x               # the same code on a CPU

Each shape: a fixed number of tokens per batch (--tokens, B = tokens / N), heads × head_dim =
--width (768, BERT-base), N = 128 … 8192, unpadded and padded (sequence 0 full, the others
uniform in [N/4, N], seeded). Rows, one per backend and mode (forward, forward+backward):
- sdpa-flash / sdpa-efficient / sdpa-cudnn / sdpa-math: F.scaled_dot_product_attention pinned
  with torch.nn.attention.sdpa_kernel (flash refuses any mask: unpadded shapes only; a backend
  that refuses a shape says so instead of silently falling back); math up to --math-max-n;
- fused-padded: minitf.kernels.fused_attention on (B, H, N, D) with the key-padding mask;
- fused-varlen: minitf.kernels.varlen_attention on the packed (T, H, D) real tokens.
Columns:
- kernel ms: the attention call alone, inputs already in the layout it takes;
  e2e ms: from packed (T, H, D) q, k, v to the packed output, as the encoder needs it (padded
  backends scatter into (B, H, N, D) zeros and gather back; varlen needs nothing);
  medians of --reps repeats, interleaved (each repeat times every backend once), CUDA events;
- three FLOP counts (GFLOP, forward 4·H·D per query-key pair, backward 2.5× that): "padded"
  B·N², "computed" what the backend computes (SDPA: counted as padded; the fused kernels: whole
  query blocks × key blocks up to each row's last key, from the chosen forward config), and
  "ideal" Σ len² (varlen's goal); TFLOP/s on ideal and on computed;
- config: the autotuned forward / dK-dV / dQ configs the fused kernel ran;
- err: max |difference| on the real rows of the output (fwd) or of dq, dk, dv (fwd+bwd) against
  the formula in fp32 on the upcast inputs — every backend's, SDPA's own included.
Writes attention-gpu.md / .json / .png into --out after every shape (a cut-short run keeps what
it measured) and stops by itself after --budget-s seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from minitf.model.attention import reference_attention  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SDPA = ("flash", "efficient", "cudnn", "math")
BACKENDS = tuple(f"sdpa-{b}" for b in SDPA) + ("fused-padded", "fused-varlen")
MODEL_WIDTH = 768


@dataclass
class Shape:
    dtype: str
    head_dim: int
    n: int
    batch: int
    padded: bool
    lengths: list[int] = field(default_factory=list)
    width: int = MODEL_WIDTH  # heads × head_dim

    @property
    def heads(self) -> int:
        return max(1, self.width // self.head_dim)


@dataclass
class Row:
    dtype: str
    head_dim: int
    n: int
    batch: int
    padded: bool
    mode: str
    backend: str
    kernel_ms: float | None = None
    e2e_ms: float | None = None
    gflop_padded: float = 0.0
    gflop_computed: float = 0.0
    gflop_ideal: float = 0.0
    config: str = ""
    err: float | None = None
    note: str = ""


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------
def pair_flops(heads: int, head_dim: int, mode: str) -> float:
    """FLOPs per (query, key) pair: QKᵀ and PV are 2·D each per head; backward is 2.5×."""
    fwd = 4.0 * heads * head_dim
    return fwd * 3.5 if mode == "fwd+bwd" else fwd


def flop_counts(shape: Shape, mode: str, backend: str, block: tuple[int, int] | None
                ) -> tuple[float, float, float]:
    """(padded, computed, ideal) FLOPs. block = the fused kernel's (BLOCK_M, BLOCK_N)."""
    per = pair_flops(shape.heads, shape.head_dim, mode)
    padded = per * shape.batch * shape.n ** 2
    ideal = per * sum(n * n for n in shape.lengths)
    if block is None or not backend.startswith("fused"):
        return padded, padded, ideal
    bm, bn = block

    def up(x: int, b: int) -> int:
        return -(-x // b) * b

    if backend == "fused-varlen":
        pairs = sum(up(n, bm) * up(n, bn) for n in shape.lengths)
    else:  # every query row of the padded layout, keys up to the row's last real one
        pairs = sum(up(shape.n, bm) * min(up(n, bn), up(shape.n, bn)) for n in shape.lengths)
    return padded, per * pairs, ideal


# ---------------------------------------------------------------------------------------------
# Inputs and the backends
# ---------------------------------------------------------------------------------------------
def make_shape(dtype: str, head_dim: int, n: int, tokens: int, padded: bool,
               width: int = MODEL_WIDTH) -> Shape:
    batch = max(1, tokens // n)
    lengths = [n] * batch
    if padded and batch > 1:
        gen = torch.Generator().manual_seed(n)
        lengths = [n] + torch.randint(max(1, n // 4), n + 1, (batch - 1,), generator=gen).tolist()
    return Shape(dtype, head_dim, n, batch, padded, lengths, width)


def make_inputs(shape: Shape, device: str) -> dict:
    """Packed q, k, v (T, H, D), dO, and the padded layout's mask, index and cu_seqlens."""
    dtype, heads = DTYPES[shape.dtype], shape.heads
    lengths = torch.tensor(shape.lengths, device=device)
    mask = torch.arange(shape.n, device=device)[None] < lengths[:, None]  # (B, N)
    total = sum(shape.lengths)
    gen = torch.Generator().manual_seed(0)
    q, k, v, do = (torch.randn(total, heads, shape.head_dim, generator=gen).to(device, dtype)
                   for _ in range(4))
    cu = F.pad(lengths.cumsum(0).to(torch.int32), (1, 0))
    return dict(q=q, k=k, v=v, do=do, mask=mask if shape.padded else None,
                index=mask.reshape(-1).nonzero().squeeze(1), cu=cu, shape=shape)


def to_padded(x: torch.Tensor, inputs: dict) -> torch.Tensor:
    """(T, H, D) → (B, H, N, D), zeros at the padding."""
    shape = inputs["shape"]
    flat = x.new_zeros(shape.batch * shape.n, *x.shape[1:]).index_copy(0, inputs["index"], x)
    return flat.view(shape.batch, shape.n, *x.shape[1:]).transpose(1, 2)


def to_packed(x: torch.Tensor, inputs: dict) -> torch.Tensor:
    """(B, H, N, D) → (T, H, D), the real rows."""
    return x.transpose(1, 2).reshape(-1, *x.shape[1::2]).index_select(0, inputs["index"])


def attention_fn(backend: str, inputs: dict):
    """The backend's call on its own layout: (fn(q, k, v) → out, layout) with layout "padded"
    or "packed"."""
    mask = inputs["mask"]
    if backend == "fused-varlen":
        from minitf.kernels import varlen_attention

        shape = inputs["shape"]
        return (lambda q, k, v: varlen_attention(q, k, v, inputs["cu"], shape.n)), "packed"
    if backend == "fused-padded":
        from minitf.kernels import fused_attention

        return (lambda q, k, v: fused_attention(q, k, v, key_padding_mask=mask)), "padded"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pinned = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
              "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[backend[5:]]
    attn_mask = None if mask is None else mask[:, None, None, :]

    def sdpa(q, k, v):
        with sdpa_kernel([pinned]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return sdpa, "padded"


def call(backend: str, inputs: dict, mode: str, end_to_end: bool, fn, layout: str):
    """One timed unit of work: forward (no grad), or forward + backward from dO."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    if not end_to_end and layout == "padded":
        q, k, v = inputs["padded"]
    if mode == "fwd":
        with torch.no_grad():
            out = fn(*_in_layout((q, k, v), inputs, layout, end_to_end))
            return _out_layout(out, inputs, layout, end_to_end), None
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    out = _out_layout(fn(*_in_layout(leaves, inputs, layout, end_to_end)), inputs, layout,
                      end_to_end)
    do = inputs["do"] if (end_to_end or layout == "packed") else inputs["padded_do"]
    grads = torch.autograd.grad(out, leaves, do)
    return out, grads


def _in_layout(qkv, inputs, layout, end_to_end):
    return [to_padded(t, inputs) for t in qkv] if (end_to_end and layout == "padded") else qkv


def _out_layout(out, inputs, layout, end_to_end):
    return to_packed(out, inputs) if (end_to_end and layout == "padded") else out


# ---------------------------------------------------------------------------------------------
# Measuring one shape
# ---------------------------------------------------------------------------------------------
def time_ms(work, device: str) -> float:
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    work()
    return (time.perf_counter() - begin) * 1e3


def reference_results(inputs: dict, mode: str):
    """The formula in fp32 on the upcast inputs, one sequence at a time (memory H·len², not
    B·H·N²), on the packed real rows: (out, (dq, dk, dv) or None)."""
    q, k, v, do = (inputs[n].float() for n in ("q", "k", "v", "do"))
    outs, grads = torch.empty_like(q), [torch.empty_like(t) for t in (q, k, v)]
    bounds = inputs["cu"].tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        leaves = [t[start:end].transpose(0, 1)[None].requires_grad_(mode == "fwd+bwd")
                  for t in (q, k, v)]
        out = reference_attention(*leaves)[0].transpose(0, 1)
        outs[start:end] = out.detach()
        if mode == "fwd+bwd":
            for g, part in zip(grads, torch.autograd.grad(out, leaves, do[start:end]),
                               strict=True):
                g[start:end] = part[0].transpose(0, 1)
    return outs, (grads if mode == "fwd+bwd" else None)


def max_error(got, ref) -> float:
    out, grads = got
    if grads is None:
        return (out.float() - ref[0]).abs().max().item()
    return max((g.float() - r).abs().max().item() for g, r in zip(grads, ref[1], strict=True))


def fused_configs(backend: str, mode: str) -> tuple[str, tuple[int, int] | None]:
    if not backend.startswith("fused"):
        return "", None
    from minitf.kernels.flash_attention import FORWARD
    from minitf.kernels.flash_attention_bwd import DKDV, DQ

    fwd = FORWARD.last_config or ""
    block = tuple(int(x) for x in fwd.split("/")[0].split("x")) if fwd else None
    text = fwd if mode == "fwd" else f"{fwd} | {DKDV.last_config} | {DQ.last_config}"
    return text, block


def applicable(backend: str, shape: Shape, args) -> str:
    """Empty if the backend runs this shape, else why not."""
    if backend == "sdpa-flash" and shape.padded:
        return "flash takes no mask"
    if backend == "sdpa-math" and shape.n > args.math_max_n:
        return f"math skipped above N={args.math_max_n}"
    if backend.startswith("fused") and args.device == "cpu" and \
            os.environ.get("TRITON_INTERPRET") != "1":
        return "needs CUDA or TRITON_INTERPRET=1"
    return ""


def measure_shape(shape: Shape, mode: str, args) -> list[Row]:
    inputs = make_inputs(shape, args.device)
    if any(b in args.backends for b in BACKENDS if b != "fused-varlen"):
        inputs["padded"] = [to_padded(t, inputs) for t in (inputs["q"], inputs["k"], inputs["v"])]
        inputs["padded_do"] = to_padded(inputs["do"], inputs)
    ref = None
    if args.errors:
        try:
            ref = reference_results(inputs, mode)
        except torch.OutOfMemoryError:
            print("fp32 reference out of memory: no errors for this shape", flush=True)
    rows, units = [], []
    for backend in args.backends:
        row = Row(shape.dtype, shape.head_dim, shape.n, shape.batch, shape.padded, mode, backend)
        rows.append(row)
        row.note = applicable(backend, shape, args)
        if row.note:
            continue
        fn, layout = attention_fn(backend, inputs)
        try:  # warm-up: compiles and autotunes; a backend may refuse the shape here
            got = call(backend, inputs, mode, True, fn, layout)
            call(backend, inputs, mode, False, fn, layout)
        except RuntimeError as exc:
            row.note = f"refused: {str(exc).splitlines()[0][:80]}"
            continue
        row.err = max_error(got, ref) if ref is not None else None
        row.config, block = fused_configs(backend, mode)
        counts = flop_counts(shape, mode, backend, block)
        row.gflop_padded, row.gflop_computed, row.gflop_ideal = (c / 1e9 for c in counts)
        units.append((row, fn, layout))
    times = {(id(r), e2e): [] for r, _, _ in units for e2e in (False, True)}
    for _ in range(args.reps):  # interleaved: each repeat times every backend once
        for row, fn, layout in units:
            for e2e in (False, True):
                work = functools.partial(call, row.backend, inputs, mode, e2e, fn, layout)
                times[(id(row), e2e)].append(time_ms(work, args.device))
    for row, _, _ in units:
        row.kernel_ms = statistics.median(times[(id(row), False)])
        row.e2e_ms = statistics.median(times[(id(row), True)])
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def tflops(gflop: float, ms: float | None) -> str:
    return "—" if not ms or not gflop else f"{gflop / ms:.1f}"  # GFLOP / ms = TFLOP/s


def table_lines(rows: list[Row]) -> list[str]:
    head = ("| dtype | D | N | B | padded | mode | backend | kernel ms | e2e ms | "
            "TFLOP/s ideal (e2e) | TFLOP/s computed (kernel) | GFLOP padded / computed / ideal "
            "| vs best SDPA (e2e) | config (fwd \\| dK/dV \\| dQ) | max err vs fp32 | note |")
    lines = [head, "|" + "---|" * 16]
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault((row.dtype, row.head_dim, row.n, row.padded, row.mode), []).append(row)
    for group in groups.values():
        sdpa = [r.e2e_ms for r in group if r.backend.startswith("sdpa") and r.e2e_ms]
        best = min(sdpa) if sdpa else None
        for r in group:
            speed = f"{best / r.e2e_ms:.2f}×" if best and r.e2e_ms else "—"
            config = r.config.replace("|", "\\|")
            lines.append(
                f"| {r.dtype} | {r.head_dim} | {r.n} | {r.batch} | {'yes' if r.padded else 'no'} "
                f"| {r.mode} | {r.backend} | {_fmt(r.kernel_ms)} | {_fmt(r.e2e_ms)} "
                f"| {tflops(r.gflop_ideal, r.e2e_ms)} | {tflops(r.gflop_computed, r.kernel_ms)} "
                f"| {r.gflop_padded:.3g} / {r.gflop_computed:.3g} / {r.gflop_ideal:.3g} "
                f"| {speed} | {config} | {_fmt(r.err, 2)} | {r.note} |")
    return lines


def write_report(rows: list[Row], args, started: float, complete: bool) -> None:
    from benchmarks.common import header

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notes = [f"{'complete' if complete else 'CUT SHORT (budget or signal)'}: {len(rows)} rows "
             f"in {time.time() - started:.0f} s; device {args.device}; "
             f"tokens per batch {args.tokens}; repeats {args.reps} (interleaved, medians).",
             "Column definitions: see the docstring of benchmarks/attention_gpu.py."]
    text = header("Fused attention vs pinned SDPA backends", notes)
    (out / "attention-gpu.md").write_text(text + "\n\n" + "\n".join(table_lines(rows)) + "\n")
    (out / "attention-gpu.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, out / "attention-gpu.png")


def plot(rows: list[Row], path: Path) -> bool:
    """End-to-end ms against N per backend: one panel per (mode, padded), first dtype and D."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    timed = [r for r in rows if r.e2e_ms]
    if not timed:
        return False
    first = (timed[0].dtype, timed[0].head_dim)
    panels = sorted({(r.mode, r.padded) for r in timed})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (mode, padded) in zip(axes[0], panels, strict=True):
        for backend in BACKENDS:
            pts = sorted((r.n, r.e2e_ms) for r in timed if (r.dtype, r.head_dim) == first
                         and r.mode == mode and r.padded == padded and r.backend == backend)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=backend)
        ax.set(xscale="log", yscale="log", xlabel="N", ylabel="e2e ms",
               title=f"{first[0]} D={first[1]} {mode} {'padded' if padded else 'unpadded'}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["bf16", "fp16"])
    parser.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--seq-lens", nargs="+", type=int,
                        default=[128, 256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--modes", nargs="+", choices=["fwd", "fwd+bwd"],
                        default=["fwd", "fwd+bwd"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--tokens", type=int, default=32768, help="tokens per batch (B·N)")
    parser.add_argument("--width", type=int, default=MODEL_WIDTH, help="heads × head_dim")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--math-max-n", type=int, default=2048)
    parser.add_argument("--no-errors", dest="errors", action="store_false",
                        help="skip the fp32 reference (saves time and memory)")
    parser.add_argument("--budget-s", type=float, default=300, help="stop after this long")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def plan(args) -> list[tuple[Shape, str]]:
    """Shapes in priority order (a run cut short by its budget loses the last): head dim, then
    N, padded before unpadded, then each dtype, forward before forward+backward."""
    return [(make_shape(dtype, d, n, args.tokens, padded, args.width), mode)
            for d in args.head_dims for n in args.seq_lens for padded in (True, False)
            for dtype in args.dtypes for mode in args.modes]


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)  # `timeout` still leaves a table
    started, rows, complete = time.time(), [], False
    try:
        for shape, mode in plan(args):
            if time.time() - started > args.budget_s:
                break
            rows += measure_shape(shape, mode, args)
            write_report(rows, args, started, False)
            print(f"{time.time() - started:6.0f}s {shape.dtype} D={shape.head_dim} N={shape.n} "
                  f"padded={shape.padded} {mode} done", flush=True)
        else:
            complete = True
    except KeyboardInterrupt:
        print("stopped: writing what was measured", flush=True)
    write_report(rows, args, started, complete)
    return rows


if __name__ == "__main__":
    main()
