"""Compile every kernel variant × every autotune config for an NVIDIA GPU, with no GPU here.

    python -m minitf.kernels.compile_check                 # sm_90 (H100/H200), 16-bit dtypes
    python -m minitf.kernels.compile_check --arch 80 --dtypes bf16 fp16 fp32

The interpreter checks the arithmetic; this checks what only the compiler sees: that each
(dtype, head dim, layout, causal) variant lowers to PTX and cubin with *every* config of the
autotune lists in minitf/kernels/config.py (tl.dot shapes, layouts, shared memory), what ptxas
reports for registers and spills, and whether the dots became tensor-core instructions (wgmma
on sm_90, mma.sync on sm_80) or plain FMAs. Layouts: "none" (no mask), "lens" (right padding:
per-row key counts), "holes" (a general mask, loaded per key) and "varlen" (packed tokens).
It fakes Triton's active driver so `kernel[grid](...)` compiles (warmup) instead of launching.
Triton ships ptxas, so no CUDA toolkit is needed. Exits non-zero if any config spills.

Head dims 16 and 32 share the D ≤ 64 lists, whose registers grow with D: the default checks
D = 64 and 128; pass --head-dims 16 32 64 128 for all. About 3 s per kernel on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("unset TRITON_INTERPRET: this compiles the real kernels")

import torch  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LAYOUTS = ("none", "lens", "holes", "varlen")


class _CompileOnlyDriver:
    """Just enough of a CUDA driver for JITFunction.run(warmup=True) to compile."""

    def __init__(self, arch: int):
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")


def ptxas_report(ptx: str, arch: int) -> tuple[int, int, str]:
    """(registers, spill bytes stored + loaded, ptxas's own line) for one kernel's PTX."""
    from triton.backends.nvidia.compiler import get_ptxas  # the ptxas Triton itself uses

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    sm = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    result = subprocess.run([get_ptxas(arch).path, "-v", f"-arch={sm}", f.name, "-o", os.devnull],
                            capture_output=True, text=True)
    os.unlink(f.name)
    text = result.stderr
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", text)]
    spills = [int(a) + int(b) for a, b in
              re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)]
    if not regs:
        raise RuntimeError(f"ptxas failed: {text.strip()[-400:]}")
    return max(regs), max(spills, default=0), text


def _layout(name: str, batch: int, seq: int):
    from minitf.kernels.flash_attention import Layout

    lengths = torch.full((batch,), seq, dtype=torch.int32)
    if name == "lens":
        return Layout(kv_len=lengths)
    if name == "holes":
        return Layout(kv_len=lengths, keep=torch.ones(batch, seq, dtype=torch.int8))
    if name == "varlen":
        cu = torch.arange(0, (batch + 1) * seq, seq, dtype=torch.int32)
        return Layout(cu_q=cu, cu_k=cu, max_q=seq, max_k=seq)
    return Layout()


def compile_variant(dtype, head_dim, layout_name, causal, seq):
    """Compile the forward and backward of one variant with every config; yields
    (kernel name, config, compiled kernel)."""
    from minitf.kernels import flash_attention as fa
    from minitf.kernels import flash_attention_bwd as bwd
    from minitf.kernels.config import configs_for

    batch, heads = 2, 2
    layout = _layout(layout_name, batch, seq)
    shape = (batch * seq, heads, head_dim) if layout.varlen else (batch, heads, seq, head_dim)
    q, k, v, do = (torch.zeros(shape, dtype=dtype) for _ in range(4))
    for cfg in configs_for("fwd", head_dim, dtype):
        fa.attention_forward(q, k, v, layout, causal, 0.125, config=cfg)
        yield "fwd", cfg
    out, lse = q, layout.new_stats(q, torch.float32)[0]
    dkdv, dq = configs_for("dkdv", head_dim, dtype), configs_for("dq", head_dim, dtype)
    for pair in itertools.zip_longest(dkdv, dq):
        pair = (pair[0] or dkdv[-1], pair[1] or dq[-1])
        bwd.attention_backward(do, q, k, v, out, lse, layout, causal, 0.125, configs=pair)
        yield "bwd", pair


_COMPILED: list = []


def _compile_instead_of_launch(self, grid):
    def launch(*a, **kw):
        _COMPILED.append((self.fn.__name__, self.run(*a, grid=grid, warmup=True, **kw)))
    return launch


def check_variant(job: tuple) -> list[tuple]:
    """Compile one (dtype, head dim, layout, causal) variant with every config; one record
    (line, kernel name, registers, spill bytes, shared memory) per distinct kernel."""
    arch, name, head_dim, layout, causal, seq = job
    records, seen = [], set()
    for step, cfg in compile_variant(DTYPES[name], head_dim, layout, bool(causal), seq):
        labels = {"_attn_fwd": cfg} if step == "fwd" else {
            "_attn_bwd_dkdv": cfg[0], "_attn_bwd_dq": cfg[1], "_attn_bwd_preprocess": "64"}
        for kernel_name, kernel in _COMPILED:
            if (kernel_name, kernel.hash) in seen:  # the preprocess kernel, once per config
                continue
            seen.add((kernel_name, kernel.hash))
            ptx = kernel.asm["ptx"]
            mma = "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "fma"
            regs, spill, _ = ptxas_report(ptx, arch)
            line = (f"sm_{arch} {name} D={head_dim:<3} {layout:<6} causal={causal} "
                    f"{kernel_name:<21} {str(labels[kernel_name]):<13} "
                    f"smem={kernel.metadata.shared:>6} dots={mma:<5} regs={regs:<3} spill={spill}")
            records.append((line, kernel_name, regs, spill, kernel.metadata.shared))
        _COMPILED.clear()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 or 90")
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"], choices=list(DTYPES))
    parser.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--causal", nargs="+", type=int, default=[0, 1], choices=[0, 1])
    parser.add_argument("--seq-len", type=int, default=256,
                        help="1 checks Triton's specialisation of integer arguments equal to 1")
    parser.add_argument("--jobs", type=int, default=1, help="compile variants in parallel")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    args = parser.parse_args()

    driver.set_active(_CompileOnlyDriver(args.arch))
    JITFunction.__getitem__ = _compile_instead_of_launch
    jobs = [(args.arch, name, d, layout, causal, args.seq_len) for name, d, layout, causal in
            itertools.product(args.dtypes, args.head_dims, args.layouts, args.causal)]
    if args.jobs > 1:
        import multiprocessing

        results = multiprocessing.get_context("fork").Pool(args.jobs).imap(check_variant, jobs)
    else:
        results = map(check_variant, jobs)
    summary, spilled, count = {}, [], 0
    for records in results:
        for line, kernel_name, regs, spill, smem in records:
            count += 1
            if not args.quiet or spill:
                print(line, flush=True)
            stats = summary.setdefault(kernel_name, [999, 0, 0, 0])
            stats[0], stats[1] = min(stats[0], regs), max(stats[1], regs)
            stats[2], stats[3] = max(stats[2], spill), max(stats[3], smem)
            if spill:
                spilled.append(line)
    print(f"\nsummary sm_{args.arch}: kernel, registers min-max, max spill bytes, max smem bytes")
    for kernel_name, (lo, hi, spill, smem) in sorted(summary.items()):
        print(f"  {kernel_name:<21} regs {lo}-{hi}  spill {spill}  smem {smem}")
    if spilled:
        print(f"FAIL: {len(spilled)} kernels spill registers")
        sys.exit(1)
    print(f"OK: {count} kernels, no spills")

if __name__ == "__main__":
    main()
