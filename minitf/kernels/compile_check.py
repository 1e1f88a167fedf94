"""Compile every kernel variant for an NVIDIA GPU on a machine without one (nothing is launched).

    python -m minitf.kernels.compile_check                 # sm_90 (H100/H200), 16-bit dtypes
    python -m minitf.kernels.compile_check --arch 80 --dtypes bf16 fp16 fp32

The interpreter checks the arithmetic; this checks what only the compiler sees: that each
(dtype, head dim, mask, causal) variant lowers to PTX and cubin with the block sizes of
minitf/kernels/config.py (tl.dot shapes, layouts, shared memory), and what ptxas reports for
registers and spills, and whether the dots became tensor-core instructions (wgmma on sm_90, mma.sync
on sm_80) or plain FMAs. It fakes Triton's active driver so `kernel[grid](...)` compiles
(warmup) instead of launching. Triton ships ptxas, so no CUDA toolkit is needed.
About 3 s per kernel on 2 CPU cores (fp32 variants take longer).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("unset TRITON_INTERPRET: this compiles the real kernels")

import torch  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


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


def _ptxas_summary(ptx: str, arch: int) -> str:
    from triton.backends.nvidia.compiler import get_ptxas  # the ptxas Triton itself uses

    ptxas = get_ptxas(arch).path
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    sm = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    result = subprocess.run([ptxas, "-v", f"-arch={sm}", f.name, "-o", os.devnull],
                            capture_output=True, text=True)
    os.unlink(f.name)
    lines = [line.split("info    :")[-1].strip() for line in result.stderr.splitlines()
             if "registers" in line or "spill" in line]
    return " | ".join(lines[-2:]) if lines else result.stderr.strip()[-300:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 or 90")
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"], choices=list(DTYPES))
    parser.add_argument("--head-dims", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--seq-len", type=int, default=256,
                        help="1 checks Triton's specialisation of integer arguments equal to 1")
    args = parser.parse_args()

    driver.set_active(_CompileOnlyDriver(args.arch))
    compiled = []

    def compile_instead_of_launch(self, grid):
        def launch(*a, **kw):
            compiled.append((self.fn.__name__, self.run(*a, grid=grid, warmup=True, **kw)))
        return launch

    JITFunction.__getitem__ = compile_instead_of_launch

    import minitf.kernels.flash_attention as fa

    fa._check_inputs = lambda *a, **kw: None  # CPU tensors stand in for CUDA ones here
    for name in args.dtypes:
        for head_dim in args.head_dims:
            for has_mask in (False, True):
                for causal in (False, True):
                    q, k, v = (torch.zeros(2, 2, args.seq_len, head_dim, dtype=DTYPES[name],
                                           requires_grad=True) for _ in range(3))
                    mask = torch.ones(2, args.seq_len, dtype=torch.bool) if has_mask else None
                    compiled.clear()
                    out = fa.fused_attention(q, k, v, key_padding_mask=mask, causal=causal)
                    out.backward(torch.ones_like(out))
                    for kernel_name, kernel in compiled:
                        meta = kernel.metadata
                        ptx = kernel.asm["ptx"]
                        mma = "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "fma"
                        ptxas = _ptxas_summary(ptx, args.arch)
                        print(f"{name} D={head_dim:<3} mask={int(has_mask)} causal={int(causal)} "
                              f"{kernel_name:<21} warps={meta.num_warps} stages={meta.num_stages} "
                              f"smem={meta.shared:>6} dots={mma}  {ptxas}", flush=True)


if __name__ == "__main__":
    main()
