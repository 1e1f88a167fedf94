"""Low-rank adapters (LoRA, Hu et al. 2021): train a few percent of a classifier's weights.

A LoRALinear keeps a pre-trained nn.Linear W (frozen) and adds a trainable low-rank update:

    y = W x + b + (alpha / r) · B A dropout(x)      A: (r, in), B: (out, r), r ≪ in, out

A starts Kaiming-uniform and B at zero, so training starts from exactly the pre-trained model.
`add_lora(model, spec)` wraps the chosen linears of chosen encoder layers and freezes everything
else except the pooler and the classifier, which train in full. Because the untouched layers
below the lowest adapted one are a frozen prefix, the FreezePlan it returns lets
minitf/train/freeze.py cache them exactly as `--freeze layers:N` does. `merge_lora` folds
(alpha / r) · B A into W and gives back plain nn.Linear modules, so save_pretrained writes an
ordinary Hugging Face directory. Adapters are read and written in PEFT's format by
minitf/tasks/peft_format.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification
from minitf.model.freeze import FreezePlan

# --lora-targets names → module paths inside a BertLayer (Hugging Face's names).
TARGETS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention-output": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}
DEFAULT_TARGETS = "query,value"
TRAINED_IN_FULL = ("bert.pooler.", "classifier.")  # besides the adapters


class LoRALinear(nn.Module):
    """nn.Linear `base` plus the trainable low-rank update (alpha / r) · B A."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if type(r) is not int or not 1 <= r <= min(base.in_features, base.out_features):
            raise MinitfError(f"LoRA rank {r}: must be an integer from 1 to the adapted layer's "
                              f"size ({min(base.in_features, base.out_features)}); 8 is usual")
        if not math.isfinite(alpha):  # checked before anything is allocated
            raise MinitfError(f"LoRA alpha {alpha}: must be a finite number")
        self.base_layer = base  # PEFT's name, so state-dict keys line up with PEFT's
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **like)   # (r, in)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **like)  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as nn.Linear, and PEFT
        nn.init.zeros_(self.lora_B.weight)                            # identity change at start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function (in eval mode)."""
        out = nn.Linear(self.base_layer.in_features, self.base_layer.out_features,
                        bias=self.base_layer.bias is not None, device=self.lora_A.weight.device,
                        dtype=self.base_layer.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (out, in)
            out.weight.copy_(self.base_layer.weight + delta)
            if out.bias is not None:
                out.bias.copy_(self.base_layer.bias)
        return out


@dataclass(frozen=True)
class LoRASpec:
    """Which linears get adapters, and their shape: `modules` are full module names of a
    BertForSequenceClassification, e.g. bert.encoder.layer.4.attention.self.query."""
    r: int
    alpha: float
    dropout: float
    modules: tuple[str, ...]


def lora_spec(num_layers: int, r: int, alpha: float | None = None, dropout: float = 0.0,
              targets: str = DEFAULT_TARGETS, layers: str | None = None) -> LoRASpec:
    """The spec of the command-line options: --lora R --lora-alpha --lora-dropout
    --lora-targets (comma-separated TARGETS names, or all-linear) --lora-layers (e.g. 4-5,
    0,2,4 or all)."""
    if not isinstance(r, int) or r < 1:
        raise MinitfError(f"--lora {r}: the rank must be a positive integer (8 is usual)")
    if not 0 <= dropout < 1:
        raise MinitfError(f"--lora-dropout {dropout}: must be in [0, 1)")
    paths = parse_targets(targets)
    chosen = parse_layers(layers, num_layers)
    modules = tuple(f"bert.encoder.layer.{i}.{p}" for i in chosen for p in paths)
    return LoRASpec(r, float(2 * r if alpha is None else alpha), float(dropout), modules)


def parse_targets(text: str) -> tuple[str, ...]:
    names = [t.strip() for t in (text or DEFAULT_TARGETS).split(",") if t.strip()]
    if names == ["all-linear"]:
        return tuple(TARGETS.values())
    unknown = [n for n in names if n not in TARGETS and n not in TARGETS.values()]
    if unknown or not names:
        raise MinitfError(f"--lora-targets {text!r}: unknown target(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(TARGETS)} (comma-separated) or all-linear")
    chosen = {TARGETS.get(n, n) for n in names}
    return tuple(p for p in TARGETS.values() if p in chosen)  # in the layer's order


def parse_layers(text: str | None, num_layers: int) -> tuple[int, ...]:
    """'all' / None → every layer; '4-5' → (4, 5); '0,2,4' → (0, 2, 4)."""
    if text is None or text.strip().lower() in ("", "all"):
        return tuple(range(num_layers))
    chosen: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            chosen.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise MinitfError(f"--lora-layers {text!r}: write layers as 4-5, 0,2,4 or all") from None
    if not chosen or min(chosen) < 0 or max(chosen) >= num_layers:
        raise MinitfError(f"--lora-layers {text!r}: the model has {num_layers} encoder layers, "
                          f"numbered 0-{num_layers - 1}")
    return tuple(sorted(chosen))


def add_lora(model: BertForSequenceClassification, spec: LoRASpec) -> FreezePlan:
    """Wrap spec.modules in LoRALinear (in place) and freeze all but the adapters, the pooler
    and the classifier. Returns the FreezePlan of the untouched bottom block: embeddings +
    layers 0..k-1 when the lowest adapted layer is k > 0, which freeze.py can cache."""
    for name in spec.modules:
        base = lora_target(model, name)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child,
                LoRALinear(base, spec.r, spec.alpha, spec.dropout))
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or name.startswith(TRAINED_IN_FULL))
    lowest = min(int(n.split(".")[3]) for n in spec.modules)
    policy = f"LoRA r {spec.r}, alpha {spec.alpha:g} on {len(spec.modules)} linears" + (
        f"; embeddings + layers 0-{lowest - 1} frozen" if lowest else "")
    return FreezePlan(policy, lowest or None)


def lora_target(model: nn.Module, name: str) -> nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not name.startswith("bert.encoder.layer.") or type(module) is not nn.Linear:
        what = "not a linear layer of an encoder layer" if module is not None else "no such module"
        raise MinitfError(f"LoRA target {name}: {what} in this model; LoRA adapts the linears "
                          f"of encoder layers ({', '.join(TARGETS.values())})")
    return module


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def spec_of(model: nn.Module) -> LoRASpec:
    """The LoRASpec that add_lora was given, read back from the model's LoRALinear modules."""
    found = lora_modules(model)
    if not found:
        raise MinitfError("the model has no LoRA adapters")
    shapes = {(m.r, m.alpha, getattr(m.lora_dropout, "p", 0.0)) for m in found.values()}
    if len(shapes) > 1:
        raise MinitfError(f"the adapters differ in rank / alpha / dropout: {sorted(shapes)}")
    r, alpha, dropout = shapes.pop()
    return LoRASpec(r, alpha, dropout, tuple(found))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, in place: the model is plain nn.Linear again."""
    for name, module in lora_modules(model).items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, module.merged())
    return model
