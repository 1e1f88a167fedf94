"""Limits, launch configs (the autotune lists) and dtype choices shared by all kernels.

Launch configs. Each kernel has an autotune list per head-dim group (D ≤ 64, D = 128) and
input class (16-bit, fp32): block sizes × pipeline stages × warps. On a GPU, Triton's autotuner
times every config of the list the first time it meets a new key and keeps the fastest; the
key is what changes the best choice: the sequence-length bucket (next power of two of the
longest sequence, so a 300- and a 500-token batch share a choice), causal or not, the masking
mode (none / per-row lengths / general mask / varlen) and, added by Triton itself, the dtypes.
The lists hold only configs that compile for sm_90 *and* sm_80 with Triton 3.6 without
register spills: `python -m minitf.kernels.compile_check [--arch 80]` compiles each one and
fails on a spill. Under the interpreter nothing is timed (Triton's autotuner needs a driver):
one fixed small config runs, whose 64 × 32 blocks make small test shapes cross block edges.

None of the kernels accumulates with atomics, so re-running a config while tuning is harmless
(no `reset_to_zero`). MINITF_AUTOTUNE=0 in the environment skips the timing on a GPU and runs
the first config of each list (the GPU tests use it: they check values, not speed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)  # powers of two (tl.arange), ≥ 16 (tl.dot), ≤ 128 (registers)
GPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2_E = 1.4426950408889634  # log2(e): exp(x) = exp2(x · log2 e)
MAX_GRID_Y = 65535  # CUDA limit on grid axis 1, where the (batch, head) index lives
TUNE_KEY = ["n_bucket", "CAUSAL", "VARLEN", "HAS_LENS", "HAS_HOLES"]


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

    def triton(self) -> triton.Config:
        return triton.Config({"BLOCK_M": self.block_m, "BLOCK_N": self.block_n},
                             num_warps=self.num_warps, num_stages=self.num_stages)

    def __str__(self) -> str:
        return f"{self.block_m}x{self.block_n}/w{self.num_warps}/s{self.num_stages}"


C = LaunchConfig
# (kernel, head-dim group, input class) → configs. "small" = D ≤ 64, "d128" = D = 128.
# Forward: BLOCK_M query rows amortise each K/V tile; D = 128 needs smaller key tiles (shared
# memory) or 8 warps (registers). dK/dV keeps its keys and streams queries; dQ the reverse.
# FlashAttention-2 uses 4 warps at D = 64; the Triton tutorial 8 warps at 128 × 64 / D = 128.
# Left out because ptxas spilled on sm_80 (Triton 3.6, compile_check, causal or general mask):
# forward 128×64/w8/s2 at D = 128 (56 B) and 64×64/w4/s4 at D ≤ 64 (16 B); dK/dV with 128 keys
# at D = 128 (32×128/w8: 136 B, 16×128/w8: 16–56 B), 32×64/w4 at D = 128 (12–252 B),
# 64×128/w8/s2 (64–136 B) and 32×64/w4/s3 (8 B) at D ≤ 64.
CONFIGS: dict[tuple[str, str, str], tuple[LaunchConfig, ...]] = {
    ("fwd", "small", "16bit"): (C(128, 64, 4, 3), C(128, 64, 8, 3), C(128, 128, 8, 3),
                                C(64, 64, 4, 3), C(128, 32, 4, 4)),
    ("fwd", "d128", "16bit"): (C(128, 64, 8, 3), C(128, 32, 8, 3), C(64, 64, 8, 3),
                               C(64, 64, 4, 3)),
    ("dkdv", "small", "16bit"): (C(32, 128, 8, 3), C(32, 64, 4, 2), C(32, 64, 8, 3),
                                 C(16, 128, 8, 3)),
    ("dkdv", "d128", "16bit"): (C(32, 64, 8, 2), C(16, 64, 8, 2), C(32, 64, 8, 3)),
    ("dq", "small", "16bit"): (C(128, 32, 8, 3), C(64, 32, 4, 3), C(128, 64, 8, 2)),
    ("dq", "d128", "16bit"): (C(128, 32, 8, 2), C(64, 32, 4, 2), C(64, 64, 8, 2)),
    # fp32 is the exact correctness path (no TF32, no tensor cores): one modest config each.
    ("fwd", "small", "fp32"): (C(64, 32, 8, 2),),
    ("fwd", "d128", "fp32"): (C(64, 32, 8, 2),),
    ("dkdv", "small", "fp32"): (C(32, 32, 8, 2),),
    ("dkdv", "d128", "fp32"): (C(32, 32, 8, 2),),
    ("dq", "small", "fp32"): (C(64, 32, 8, 2),),
    ("dq", "d128", "fp32"): (C(32, 32, 8, 2),),
}
INTERPRETER_CONFIGS = {"fwd": C(64, 32, 4, 1), "dkdv": C(32, 64, 4, 1), "dq": C(64, 32, 4, 1)}


def configs_for(kernel: str, head_dim: int, dtype: torch.dtype) -> tuple[LaunchConfig, ...]:
    """The autotune list of `kernel` ("fwd", "dkdv" or "dq") for this head dim and dtype."""
    group = "small" if head_dim <= 64 else "d128"
    kind = "16bit" if dtype in (torch.float16, torch.bfloat16) else "fp32"
    return CONFIGS[(kernel, group, kind)]


class TunedKernel:
    """A @triton.jit kernel and how to launch it: autotuned on a GPU, one fixed config in the
    interpreter, or any config given explicitly (compile_check compiles each of the list)."""

    def __init__(self, name: str, fn: triton.JITFunction):
        self.name, self.fn = name, fn
        self._tuners: dict[tuple[LaunchConfig, ...], triton.runtime.Autotuner] = {}
        self.last_config: str | None = None  # what the latest launch ran, for benchmark tables

    def launch(self, grid: Callable[[dict], tuple[int, ...]], args: Sequence, meta: dict,
               head_dim: int, dtype: torch.dtype, config: LaunchConfig | None = None) -> None:
        if config is None and interpreting():
            config = INTERPRETER_CONFIGS[self.name]
        elif config is None and os.environ.get("MINITF_AUTOTUNE") == "0":
            config = configs_for(self.name, head_dim, dtype)[0]  # no timing: quick GPU tests
        if config is not None:
            self.fn[grid(config.triton().kwargs)](
                *args, **meta, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                num_warps=config.num_warps, num_stages=config.num_stages)
            self.last_config = str(config)
            return
        configs = configs_for(self.name, head_dim, dtype)
        tuner = self._tuners.get(configs)
        if tuner is None:
            tuner = triton.autotune([c.triton() for c in configs], key=TUNE_KEY,
                                    do_bench=_quick_bench)(self.fn)
            self._tuners[configs] = tuner
        tuner[grid](*args, **meta)
        best = tuner.best_config
        self.last_config = (f"{best.kwargs['BLOCK_M']}x{best.kwargs['BLOCK_N']}"
                            f"/w{best.num_warps}/s{best.num_stages}")


def _quick_bench(kernel_call: Callable, quantiles: Sequence[float]) -> list[float]:
    """Time one config while tuning: 5 ms warm-up, 25 ms of repeats (Triton's default 25 + 100 ms
    per config, times up to 5 configs, 3 kernels and every new key, is seconds per shape)."""
    from triton.testing import do_bench

    return do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)


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


def length_bucket(n: int) -> int:
    """The autotune key's sequence length: the next power of two, at least 64."""
    return max(64, triton.next_power_of_2(int(n)))
