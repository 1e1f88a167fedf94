"""Numeric precision: what the CPU can do fast, what `--precision` means, and the one function
that puts a model into that precision.

    model, precision = apply_precision(model, "auto", device="cpu", training=False)
    with precision.autocast():
        out = model(**batch)

The choices, for `encode`, `predict`, `evaluate`, `finetune` and `pretrain` alike:

- "fp32": exact; the parity tests against transformers (≤ 1e-5) hold.
- "bf16": inference casts the weights to bfloat16 (the whole forward then runs in bf16, with
  fp32 accumulation inside the matmuls); training keeps fp32 master weights and runs the
  forward under `torch.autocast(dtype=bfloat16)` (bf16 weights cannot take small updates).
- "fp16": GPUs only (training with a gradient scaler, see minitf/recipes/finetune.py).
- "int8": inference only, CPU only: a copy of the model with every nn.Linear replaced by an
  Int8Linear (int8 weights, one scale per output row; activations quantised per call at run
  time; fbgemm kernels). Embeddings, LayerNorms, softmax and attention stay in fp32.
- "auto", decided from this CPU's flags (`cpu_capability()`) and measurements
  (benchmarks/results/encoder-2026-12-01-cpu.md, precision-2026-12-01-cpu.md, and the
  project's AMX Xeon numbers in issue 13):
    * inference on a CPU with fast bf16 (AMX-BF16 or AVX512-BF16): bf16 weights. On the AMX
      Xeon a bf16 model encodes 2.2-2.5× faster than fp32 (transformers' bf16 model 809 vs
      329 seq/s; minitf under autocast 732); the embedding cosine vs fp32 stays ≥ 0.9999
      (measured here too: bf16 rounding is the same on any CPU). Of the two bf16 forms, weights
      cast and fp32 weights under autocast, neither was reliably faster on this AVX2 machine
      (encoder 0.42× vs 0.42× transformers fp32; classifier 0.47× vs 0.82× fp32) and both
      keep cosine ≥ 0.9999 and every SST-2 prediction; on the AMX Xeon transformers' cast
      model was 10% faster than minitf under autocast. --precision bf16 casts the weights
      (half the memory, no per-call weight casts); re-measure on an AMX machine.
    * inference on any other CPU (this project's AMD EPYC: AVX2, no bf16/VNNI): fp32. bf16 is
      emulated there and 2-3× slower than fp32; int8 is 2-3.4× faster but costs accuracy
      (embedding cosine vs fp32 down to 0.933, median 0.973; SST-2 held-out accuracy 81.0% vs
      82.5%, 3% of predictions flipped), so it is never automatic: ask for --precision int8.
    * training on CPU: fp32. bf16 autocast (on request) is the fast path on AMX machines, but
      its fine-tuning accuracy has not been measured on this project's hardware yet.
    * training on CUDA: bf16 where supported, else fp16 (with a gradient scaler); inference on
      CUDA: fp32 (unmeasured here; the fused kernel serves fp16/bf16 on request).

`torch.backends.cpu.get_cpu_capability()` reports the widest vector ISA torch dispatches to
("AVX2", "AVX512"), not bf16/AMX support, so the /proc/cpuinfo flags are read as well.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from minitf.errors import MinitfError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
INFERENCE_PRECISIONS = PRECISIONS
TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# /proc/cpuinfo flags that matter for reduced precision on x86.
FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni",
         "avx512f", "avx2", "f16c")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------
# What the CPU can do
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuCapability:
    torch_capability: str        # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...
    flags: frozenset[str]        # the FLAGS present in /proc/cpuinfo
    model_name: str              # /proc/cpuinfo "model name"

    @property
    def fast_bf16(self) -> bool:
        """bf16 matmuls in hardware (AMX tiles or AVX512 bf16 dot products)."""
        return bool(self.flags & {"amx_bf16", "avx512_bf16"})

    @property
    def fast_int8(self) -> bool:
        """int8 dot-product instructions (VNNI or AMX-INT8); without them fbgemm still runs
        int8 on AVX2, at lower speed-up."""
        return bool(self.flags & {"amx_int8", "avx512_vnni", "avx_vnni"})

    def describe(self) -> str:
        flags = " ".join(f for f in FLAGS if f in self.flags) or "none of interest"
        return (f"{self.model_name}; torch capability {self.torch_capability}; flags: {flags}; "
                f"fast bf16: {'yes' if self.fast_bf16 else 'no'}")


@functools.lru_cache(maxsize=1)
def cpu_capability() -> CpuCapability:
    """This machine's CPU (cached: it does not change while the process runs)."""
    return parse_cpuinfo(_read_cpuinfo(), torch.backends.cpu.get_cpu_capability())


def parse_cpuinfo(text: str, torch_capability: str) -> CpuCapability:
    """CpuCapability from the text of /proc/cpuinfo (the first processor's entry)."""
    flags: set[str] = set()
    name = "unknown CPU"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuCapability(torch_capability, frozenset(flags & set(FLAGS)), name)


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: only torch's capability is known
        return ""


# ---------------------------------------------------------------------------------------------
# What --precision means
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """A resolved precision: the name, and the autocast (if any) to run the forward under."""

    name: str                            # "fp32", "bf16", "fp16" or "int8"
    device_type: str                     # "cpu" or "cuda"
    autocast_dtype: torch.dtype | None   # None: no autocast (fp32, int8, bf16 weights)

    def autocast(self) -> AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def pick_device(name: str) -> torch.device:
    """"auto": the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MinitfError(f"--device {name}: no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MinitfError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N"
                          ) from None


def resolve_precision(precision: str, device: torch.device | str = "cpu",
                      training: bool = False, cpu: CpuCapability | None = None) -> str:
    """`--precision` → the concrete choice on this device ("auto" decided as documented above).

    Raises MinitfError for a combination that cannot run (int8 training, int8 on GPU, fp16 on
    CPU, bf16 on a GPU without it).
    """
    device_type = torch.device(device).type
    if precision not in PRECISIONS:
        raise MinitfError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device_type == "cuda" and training:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device_type == "cpu" and not training and (cpu or cpu_capability()).fast_bf16:
            return "bf16"
        return "fp32"
    if precision == "int8" and training:
        raise MinitfError("--precision int8 is for inference only (quantised layers have no "
                          "gradients); train in fp32 or bf16 and quantise the result")
    if precision == "int8" and device_type != "cpu":
        raise MinitfError("--precision int8 runs on CPU only (dynamic quantisation); on a GPU "
                          "use bf16 or fp16")
    if precision == "fp16" and device_type == "cpu":
        raise MinitfError("--precision fp16 needs a GPU; on CPU use fp32, bf16 or int8")
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise MinitfError("--precision bf16: this GPU has no bf16 support; use fp16 or fp32")
    return precision


def apply_precision(model: nn.Module, precision: str = "fp32", device: torch.device | str = "cpu",
                    training: bool = False) -> tuple[nn.Module, Precision]:
    """Put `model` into `precision` for inference or training; returns (model, Precision).

    Run the model's forward under `Precision.autocast()`. Use the returned model: int8 returns
    a quantised copy (the original is untouched); bf16/fp16 inference casts `model` itself to
    that dtype, in place; training and fp32 leave the model's weights as they are.
    """
    device_type = torch.device(device).type
    name = resolve_precision(precision, device, training)
    if training or name == "fp32":
        dtype = DTYPES[name] if name != "fp32" else None
        if training and _floating_dtype(model) != torch.float32:
            raise MinitfError(f"training needs fp32 weights (the model's are "
                              f"{_floating_dtype(model)}); load it with dtype=torch.float32")
        if not training and _floating_dtype(model) != torch.float32:
            model = model.float()  # fp32 asked for a model loaded in bf16/fp16
        return model, Precision(name, device_type, dtype)
    if name == "int8":
        return quantize_int8(model), Precision(name, device_type, None)
    return model.to(DTYPES[name]), Precision(name, device_type, None)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every nn.Linear replaced by an Int8Linear."""
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm"):
        raise MinitfError(f"--precision int8 needs torch's x86/fbgemm quantisation engine; "
                          f"this torch uses {engine!r} (supported here: "
                          f"{torch.backends.quantized.supported_engines})")
    model = copy.deepcopy(model).float().eval()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
    return model


class Int8Linear(nn.Module):
    """y = x Wᵀ + b with W in int8 and x quantised to uint8 at run time (fbgemm kernels).

    Weights get one scale per output row, not one per matrix as quantize_dynamic's default
    (BERT's rows differ in range by 10× and more). Activations: one scale per call, from the
    batch's min and max, with all 8 bits on CPUs with int8 dot-product instructions (VNNI,
    AMX-INT8) and 7 bits elsewhere: on AVX2 the kernel multiplies u8·s8 pairs into int16
    (vpmaddubsw), which saturates with full-range inputs (measured: errors of 48% of an output's
    range, tests/test_precision.py), so the activations' range is halved there.
    """

    def __init__(self, linear: nn.Linear, reduce_range: bool | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reduce_range = (not cpu_capability().fast_int8 if reduce_range is None
                             else reduce_range)
        w = linear.weight.detach().float()                                  # (out, in)
        scale = (w.abs().amax(dim=1).clamp(min=1e-12) / 127).double()       # (out,)
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch marks quantised tensors as deprecated
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            bias = None if linear.bias is None else linear.bias.detach().float()
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        out = torch.ops.quantized.linear_dynamic(x.float().reshape(-1, shape[-1]), self._packed,
                                                 self.reduce_range)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bits = 7 if self.reduce_range else 8
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 "
                f"weights per row, {bits}-bit activations")


def _floating_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32  # a quantised model: its remaining parameters are fp32 or none

