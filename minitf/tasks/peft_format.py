"""LoRA adapters in Hugging Face PEFT's format: adapter_config.json + adapter_model.safetensors.

What PEFT writes for a LoRA on a BertForSequenceClassification (task_type SEQ_CLS; on a
BertForTokenClassification: TOKEN_CLS, and modules_to_save the classifier alone):

    adapter_config.json          peft_type "LORA", r, lora_alpha, lora_dropout, target_modules
                                 (+ layers_to_transform), modules_to_save, ...
    adapter_model.safetensors    base_model.model.<module>.lora_A.weight   (r, in)
                                 base_model.model.<module>.lora_B.weight   (out, r)
                                 base_model.model.<name> for modules_to_save (classifier, pooler)

`save_peft_adapter` writes that, so `peft.PeftModel.from_pretrained(transformers_model, dir)`
loads it; `load_peft_adapter` reads it (PEFT's own or ours) into a minitf classifier. Which
modules a config targets follows PEFT's rules (a list of names matches a module whose name is
the entry or ends with "." + entry; a string is a pattern for the whole name, read by
minitf/tasks/peft_targets.py, never by `re`; layers_to_transform keeps the listed layers).
Sizes and numbers are checked before anything is allocated: r against the adapted linears and
against the tensors' shapes, alpha and the tensors finite. Options that change the
computation in ways minitf does not implement (DoRA, rsLoRA, bias training, per-module rank
patterns, ...) are refused with a MinitfError naming the option, rather than silently giving
other logits.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from minitf.errors import MinitfError
from minitf.io import atomic_directory
from minitf.model.bert import BertForSequenceClassification, BertForTokenClassification
from minitf.model.config import BertConfig
from minitf.model.freeze import FreezePlan
from minitf.model.lora import (
    TARGETS,
    TRAINED_IN_FULL,
    LoRASpec,
    add_lora,
    lora_spec,
    merge_lora,
    spec_of,
)
from minitf.model.weights import model_files, save_safetensors
from minitf.tasks.peft_targets import compile_targets, contains_module, matches

ADAPTER_DIR = "adapter"  # fine-tuning's best/adapter and last/adapter
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
MODULES_TO_SAVE = ["classifier", "pooler"]
# Options read here; every other option of a config must keep its do-nothing default.
USED = {"peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform",
        "layers_pattern", "modules_to_save", "exclude_modules"}
# Options that do not change what a trained adapter computes (bookkeeping, initialisation).
HARMLESS = {"task_type", "base_model_name_or_path", "revision", "inference_mode", "peft_version",
            "auto_mapping", "megatron_core", "qalora_group_size", "loftq_config", "eva_config",
            "lora_ga_config", "ensure_weight_tying"}
DEFAULTS_OK = (None, False, {}, [], "none", "")


def save_peft_adapter(model: BertForSequenceClassification, directory: str | Path,
                      base_model: str | None = None) -> None:
    """Write the model's adapters (+ pooler and classifier) in PEFT's format, atomically."""
    spec = spec_of(model)
    tensors = {f"{PREFIX}{name}": t.detach().contiguous().cpu()
               for name, t in model.state_dict().items()
               if ".lora_" in name or name.startswith(TRAINED_IN_FULL)}
    token = isinstance(model, BertForTokenClassification)  # no pooler: the classifier alone
    config = {"peft_type": "LORA", "task_type": "TOKEN_CLS" if token else "SEQ_CLS",
              "r": spec.r, "lora_alpha": spec.alpha, "lora_dropout": spec.dropout,
              "bias": "none", "modules_to_save": ["classifier"] if token else MODULES_TO_SAVE,
              "fan_in_fan_out": False, "use_dora": False,
              "use_rslora": False, "init_lora_weights": True, "inference_mode": True,
              "base_model_name_or_path": base_model, **target_fields(model, spec)}
    with atomic_directory(directory) as tmp:
        save_safetensors(tensors, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def target_fields(model: BertForSequenceClassification, spec: LoRASpec) -> dict[str, Any]:
    """target_modules as PEFT users write them (short names + layers_to_transform) when that
    selects exactly spec.modules under PEFT's rules; else the full module names."""
    paths = sorted({n.split(".", 4)[4] for n in spec.modules})
    layers = sorted({int(n.split(".")[3]) for n in spec.modules})
    short = {"target_modules": [p.split(".")[-1] if p.startswith("attention.self.") else p
                                for p in paths],
             "layers_to_transform": None if len(layers) == len(model.bert.encoder.layer)
             else layers, "modules_to_save": MODULES_TO_SAVE}
    if set(matched_modules(model, short)) == set(spec.modules):
        return {k: short[k] for k in ("target_modules", "layers_to_transform")}
    return {"target_modules": sorted(spec.modules), "layers_to_transform": None}


def matched_modules(model: BertForSequenceClassification, config: dict[str, Any]) -> list[str]:
    """The names of the model's modules that the config selects, by PEFT's rules: targets, then
    minus exclude_modules and modules_to_save, then (for a list of targets) layers_to_transform
    keeps the modules whose first numbered name part (`layer.4.`) is listed."""
    targets, layers = config.get("target_modules"), config.get("layers_to_transform")
    layers = [layers] if isinstance(layers, int) else layers or None
    found = []
    for name, _ in model.named_modules():
        if not name or not selects(targets, name) or selects(config.get("exclude_modules"), name):
            continue
        if any(contains_module(name, m) for m in config.get("modules_to_save") or []):
            continue
        index = re.match(r".*?\.[^.]*\.(\d+)\.", name)
        if isinstance(targets, list) and layers and not (index and int(index[1]) in layers):
            continue
        found.append(name)
    return found


def selects(pattern: str | list[str] | None, name: str) -> bool:
    if isinstance(pattern, str):  # checked by read_peft_config; never a regular expression
        return matches(compile_targets(pattern, "target_modules"), name)
    return any(name == t or name.endswith("." + t) for t in pattern or [])


def read_peft_config(directory: str | Path) -> dict[str, Any]:
    """adapter_config.json, checked: a LoRA whose options minitf computes exactly."""
    file = Path(directory) / CONFIG_FILE
    if not file.is_file():
        raise MinitfError(f"{directory}: no {CONFIG_FILE}; an adapter directory holds the "
                          f"{CONFIG_FILE} and {WEIGHTS_FILE} that PEFT's save_pretrained writes")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting
        raise MinitfError(f"{file}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(config, dict):
        raise MinitfError(f"{file}: expected a JSON object")
    if config.get("peft_type") != "LORA":
        raise MinitfError(f"{file}: peft_type {config.get('peft_type')!r} is not supported; "
                          "minitf loads LoRA adapters only")
    unsupported = [f"{k}={v!r}" for k, v in config.items()
                   if k not in USED | HARMLESS and v not in DEFAULTS_OK
                   and not (k == "init_lora_weights" and v in (True, "gaussian"))]
    if unsupported:
        raise MinitfError(f"{file}: unsupported PEFT option(s) {', '.join(unsupported)}; minitf "
                          "computes plain LoRA (W x + alpha/r · B A x) only")
    if config.get("layers_pattern") not in (None, "layer", ["layer"]):
        raise MinitfError(f"{file}: unsupported PEFT option layers_pattern="
                          f"{config['layers_pattern']!r}; BERT's layers are 'layer'")
    check_fields(config, file)
    return config


MAX_RANK = 1 << 16  # more than any hidden size; the real bound (the linears' sizes) is at load


def check_fields(config: dict[str, Any], file: Path) -> None:
    """The types and ranges of the fields minitf reads (a wrong one is refused here, not met
    later as a TypeError or a huge allocation)."""
    r = config.get("r")
    if type(r) is not int or not 1 <= r <= MAX_RANK:
        raise MinitfError(f"{file}: r must be a positive integer (8 is usual; at most the "
                          f"adapted layers' size), got {str(r)[:50]}")
    alpha, dropout = config.get("lora_alpha", 8), config.get("lora_dropout", 0.0)
    if type(alpha) not in (int, float) or not math.isfinite(alpha):
        raise MinitfError(f"{file}: lora_alpha must be a finite number, got {str(alpha)[:50]}")
    if type(dropout) not in (int, float) or not 0 <= dropout < 1:
        raise MinitfError(f"{file}: lora_dropout must be a number in [0, 1), got "
                          f"{str(dropout)[:50]}")
    for key in ("target_modules", "exclude_modules"):
        value = config.get(key)
        if isinstance(value, str):
            compile_targets(value, f"{file}: {key}")  # refused unless the safe syntax
        elif not (value is None and key == "exclude_modules") and not is_names(value):
            raise MinitfError(f"{file}: {key} must be a list of module names or a pattern "
                              f"string, got {str(value)[:80]}")
    if not (config.get("modules_to_save") is None or is_names(config["modules_to_save"])):
        raise MinitfError(f"{file}: modules_to_save must be a list of module names, got "
                          f"{str(config['modules_to_save'])[:80]}")
    layers = config.get("layers_to_transform")
    if not (layers is None or type(layers) is int or isinstance(layers, list)
            and all(type(i) is int for i in layers)):
        raise MinitfError(f"{file}: layers_to_transform must be a layer number or a list of "
                          f"them, got {str(layers)[:80]}")


def is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_peft_adapter(model: BertForSequenceClassification, directory: str | Path
                      ) -> tuple[LoRASpec, FreezePlan]:
    """Add the directory's LoRA adapters to `model` (in place) with their trained weights, and
    the pooler / classifier it saved. Returns the spec and the freeze plan (as add_lora)."""
    directory = Path(directory)
    config = read_peft_config(directory)
    modules = tuple(matched_modules(model, config))
    if not modules:
        raise MinitfError(f"{directory / CONFIG_FILE}: target_modules "
                          f"{config.get('target_modules')!r} (layers_to_transform "
                          f"{config.get('layers_to_transform')!r}) match no module of this "
                          f"model; BERT's are {', '.join(TARGETS.values())}")
    spec = LoRASpec(config["r"], float(config.get("lora_alpha", 8)),
                    float(config.get("lora_dropout", 0.0)), modules)
    tensors = read_adapter_tensors(directory / WEIGHTS_FILE)
    check_rank(model, spec, tensors, directory)  # before add_lora allocates (r, in) + (out, r)
    plan = add_lora(model, spec)
    expected = {n for n in model.state_dict() if ".lora_" in n or n.startswith(TRAINED_IN_FULL)}
    missing = sorted(n for n in expected if ".lora_" in n and n not in tensors)
    unexpected = sorted(n for n in tensors if n not in expected)
    misshaped = [f"{n} {tuple(t.shape)}" for n, t in tensors.items()
                 if n in expected and t.shape != model.get_parameter(n).shape]
    if missing or unexpected or misshaped:
        raise MinitfError(f"{directory / WEIGHTS_FILE} does not fit this model and "
                          f"{CONFIG_FILE}: missing {missing[:4]}, unexpected {unexpected[:4]}, "
                          f"wrong shape {misshaped[:4]} (is the adapter for another base model?)")
    with torch.no_grad():
        for name, tensor in tensors.items():
            model.get_parameter(name).copy_(tensor)
    return spec, plan


def check_rank(model: BertForSequenceClassification, spec: LoRASpec,
               tensors: dict[str, torch.Tensor], directory: Path) -> None:
    """r fits the adapted linears (at most min(in, out)) and the file's lora_A / lora_B."""
    for name in spec.modules:
        base = model.get_submodule(name)  # not a Linear: add_lora refuses it, naming it
        limit = min(base.in_features, base.out_features) if isinstance(base, torch.nn.Linear) \
            else spec.r
        if spec.r > limit:
            raise MinitfError(f"{directory / CONFIG_FILE}: r {spec.r} is larger than {name} "
                              f"({limit} features); a LoRA rank is at most the layer's size")
    for name, tensor in tensors.items():
        dim = 0 if name.endswith("lora_A.weight") else 1 if name.endswith("lora_B.weight") \
            else None
        if dim is not None and (tensor.ndim != 2 or tensor.shape[dim] != spec.r):
            raise MinitfError(f"{directory / WEIGHTS_FILE}: tensor {name} has shape "
                              f"{tuple(tensor.shape)}, but {CONFIG_FILE} says r {spec.r}")


def read_adapter_tensors(file: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, by minitf's names (PEFT's base_model.model. prefix removed)."""
    if not file.is_file():
        raise MinitfError(f"{file.parent}: no {WEIGHTS_FILE} next to {CONFIG_FILE}")
    try:
        tensors = load_file(file)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise MinitfError(f"{file}: cannot read safetensors ({exc})") from None
    bad = [k for k in tensors if not k.startswith(PREFIX)]
    if bad:
        raise MinitfError(f"{file}: tensor {bad[0]!r} lacks PEFT's {PREFIX!r} prefix")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MinitfError(f"{file}: tensor {name} holds NaN or infinite values; the "
                              "adapter was saved from a diverged run")
    return {k.removeprefix(PREFIX): t for k, t in tensors.items()}


# ---------------------------------------------------------------------------------------------
# For the recipes and the command line
# ---------------------------------------------------------------------------------------------


def setup_lora(model: BertForSequenceClassification, r: int, alpha: float | None = None,
               dropout: float = 0.0, targets: str | None = None, layers: str | None = None,
               adapter: str | Path | None = None) -> FreezePlan:
    """Fine-tuning with adapters: new ones (--lora R, --lora-alpha, ...), or those of a PEFT
    adapter directory to continue from (--adapter DIR; also what --resume reloads)."""
    if adapter is not None:
        return load_peft_adapter(model, adapter)[1]
    if r > model.config.hidden_size:  # before LoRALinear allocates (r, in) and (out, r)
        raise MinitfError(f"--lora {r}: the rank is at most the model's hidden size "
                          f"({model.config.hidden_size}); 8 is usual")
    spec = lora_spec(model.config.num_hidden_layers, r, alpha, dropout, targets, layers)
    return add_lora(model, spec)


def merged_model_files(model: BertForSequenceClassification, tokenizer: Any = None,
                       base_model: str | None = None) -> Callable[[Path], None]:
    """Task.save for a model with adapters: a plain Hugging Face directory with the adapters
    merged into the weights (+ tokenizer files), and the adapters in PEFT's format in
    ADAPTER_DIR beside them. The model being trained keeps its adapters."""
    def write(directory: Path) -> None:
        model_files(merge_lora(copy.deepcopy(model)), tokenizer)(directory)
        save_peft_adapter(model, Path(directory) / ADAPTER_DIR, base_model)
    return write


def load_adapted_classifier(base: str | Path, adapter: str | Path, attn_backend: str = "auto"
                            ) -> BertForSequenceClassification:
    """A base BERT + a PEFT LoRA adapter, merged, for inference (--model BASE --adapter DIR).

    The classifier comes from the adapter (PEFT's modules_to_save) or else from BASE; label
    names from the checkpoint the adapter sits in (best/adapter → best/config.json), if any.
    """
    from minitf.paths import resolve_model_dir
    adapter = Path(adapter)
    read_peft_config(adapter)
    head = read_adapter_tensors(adapter / WEIGHTS_FILE).get("classifier.weight")
    if head is not None and (head.ndim != 2 or head.shape[0] < 1):
        raise MinitfError(f"{adapter / WEIGHTS_FILE}: classifier.weight has shape "
                          f"{tuple(head.shape)}; expected (labels, hidden size)")
    model = BertForSequenceClassification.from_pretrained(
        resolve_model_dir(base), num_labels=None if head is None else head.shape[0],
        attn_backend=attn_backend, allow_missing_head=head is not None)
    load_peft_adapter(model, adapter)
    parent = adapter.resolve().parent
    if (parent / "config.json").is_file():
        config = BertConfig.from_pretrained(parent)
        if config.id2label and len(config.id2label) == model.config.num_labels:
            model.config.id2label = config.id2label
    if not model.config.id2label:  # a base model without label names: PEFT's defaults
        model.config.id2label = {i: f"LABEL_{i}" for i in range(model.config.num_labels)}
    return merge_lora(model).eval()
