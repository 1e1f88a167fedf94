"""Limits, block sizes and dtype choices shared by the forward and backward kernels.

Block sizes are fixed per head dim, after the hand-picked configs of the Triton FA-2 tutorial
(no autotuning: one config is simpler to reason about, works in the interpreter, and there is
no autotune reset to get wrong). They have not been timed on a GPU yet (benchmarks/gpu_check.sh
is the place to start). What is known without one: every variant compiles for sm_90 with these
configs (`python -m minitf.kernels.compile_check`), and 8 warps keep the 16-bit kernels free of
register spills where 4 warps spilled (ptxas -v on the generated PTX).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)  # powers of two (tl.arange), ≥ 16 (tl.dot), ≤ 128 (registers)
GPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2_E = 1.4426950408889634  # log2(e): exp(x) = exp2(x · log2 e)
MAX_GRID_Y = 65535  # CUDA limit on grid axis 1, where the (batch, head) index lives


@triton.jit
def _probe():
    pass


def interpreting() -> bool:
    """True when Triton's CPU interpreter runs our kernels (TRITON_INTERPRET=1 at import).

    Under the interpreter `@triton.jit` returns an InterpretedFunction instead of a JITFunction;
    checking the type needs no GPU driver, so it is safe on any machine.
    """
    return type(_probe).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int  # query rows per program (forward, dQ) or per loop step (dK/dV)
    block_n: int  # keys per loop step (forward, dQ) or per program (dK/dV)
    num_warps: int
    num_stages: int  # software-pipelining depth of the loads in the key loop (GPU only)


def forward_config(head_dim: int, dtype: torch.dtype, interpreting: bool) -> LaunchConfig:
    """BLOCK_M=128 rows amortise each K/V tile over many queries; D=128 halves BLOCK_N so the
    pipelined K and V tiles still fit shared memory; fp32 tiles are twice as large, hence
    BLOCK_M=64. The interpreter's cost grows with loop steps, not tile size, but small tiles
    make small test shapes cross block edges, so it uses 64 × 32.
    """
    if interpreting:
        return LaunchConfig(64, 32, 4, 1)
    if dtype in (torch.float32, torch.float64):
        return LaunchConfig(64, 32, 8, 2)
    if head_dim <= 64:
        return LaunchConfig(128, 64, 8, 3)
    return LaunchConfig(128, 32, 8, 3)


def backward_configs(head_dim: int, dtype: torch.dtype, interpreting: bool
                     ) -> tuple[LaunchConfig, LaunchConfig]:
    """(dK/dV config, dQ config). Each kernel keeps the side it accumulates large (128 keys for
    dK/dV, 128 queries for dQ) and streams the other side in steps of 32, as in the tutorial.
    """
    if interpreting:
        return LaunchConfig(32, 64, 4, 1), LaunchConfig(64, 32, 4, 1)
    if dtype in (torch.float32, torch.float64):
        return LaunchConfig(32, 32, 8, 2), LaunchConfig(64, 32, 8, 2)
    if head_dim <= 64:
        return LaunchConfig(32, 128, 8, 3), LaunchConfig(128, 32, 8, 3)
    return LaunchConfig(32, 128, 8, 2), LaunchConfig(128, 32, 8, 2)


_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
              torch.float32: tl.float32, torch.float64: tl.float64}


def dot_and_acc_dtypes(dtype: torch.dtype, interpreting: bool) -> tuple[tl.dtype, tl.dtype]:
    """(operand type for tl.dot, accumulator type) for an input dtype.

    On the GPU 16-bit operands go to the tensor cores as they are, accumulating in fp32. The
    interpreter multiplies the raw bits of bf16 (triton issue #11584), so there every dot
    runs in fp32 — slower, and slightly *more* accurate than the GPU.
    """
    acc = tl.float64 if dtype == torch.float64 else tl.float32
    if interpreting and dtype in (torch.float16, torch.bfloat16):
        return tl.float32, acc
    return _TL_DTYPES[dtype], acc
