"""Loading and saving BERT weights in the Hugging Face directory layout.

A model directory holds `config.json`, `model.safetensors` (or shards listed in
`model.safetensors.index.json`) and the tokenizer files. Because minitf's module names mirror
the checkpoint's, loading is: read every tensor, normalise a few historical spellings, then
check the names and shapes against the model and copy. Anything missing, unexpected or of the
wrong shape is reported by name, all at once, in one error.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from minitf.errors import MinitfError
from minitf.io import atomic_directory, write_bytes
from minitf.model.config import BertConfig

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Buffers some checkpoints carry that are not parameters of the model.
IGNORED = ("embeddings.position_ids",)
# Task heads (masked-LM, next-sentence, classifier): each model keeps its own, drops the others.
HEADS = ("cls.", "classifier.")


def read_checkpoint(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the directory's safetensors file(s), by their checkpoint names."""
    tensors: dict[str, torch.Tensor] = {}
    for file in checkpoint_files(directory):
        tensors.update(_read_safetensors(file))
    return tensors


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors file, or the shards its index lists (all checked to exist)."""
    single, index = directory / WEIGHTS_FILE, directory / INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
            raise MinitfError(f"{index}: not a valid safetensors index ({str(exc)[:200]}); it "
                              "needs a 'weight_map' of tensor name → shard file") from None
        for shard in shards:
            # A shard is a file next to the index: no paths, so no reading outside `directory`.
            if not isinstance(shard, str) or shard in ("", ".", "..") or Path(shard).name != shard:
                raise MinitfError(f"{index} lists shard {str(shard)[:80]!r}, not a file name in "
                                  f"{directory}; the weight_map names files next to the index")
            if not _is_file(directory / shard):
                raise MinitfError(f"{index} lists shard {shard[:80]!r}, which is missing from "
                                  f"{directory}; copy the complete checkpoint")
        return [directory / shard for shard in shards]
    if any((directory / name).is_file() for name in PICKLE_FILES):
        raise MinitfError(
            f"{directory} holds a pickle checkpoint (pytorch_model.bin), which minitf refuses to "
            "load by default because unpickling can run arbitrary code. Convert it once, if you "
            f"trust its source: python weights/convert_bin.py {directory}")
    raise MinitfError(f"{directory}: no {WEIGHTS_FILE} (nor {INDEX_FILE}); is this a model "
                      "directory? See weights/README.md for how to install real weights")


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as exc:
        raise MinitfError(f"{file}: cannot read safetensors ({exc}). The file is truncated or "
                          "not a safetensors file; copy it again from the original") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def refuse_oversized(config: BertConfig, tensors: dict[str, torch.Tensor], directory: Path
                     ) -> None:
    """Refuse a config.json describing an encoder with more parameters than the checkpoint has
    values, before allocating it: a corrupted size such as vocab_size = 16777216 must not cost
    gigabytes of memory to find out. (Pooler and heads are not counted: they may be new.)"""
    h, i = config.hidden_size, config.intermediate_size
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size
                  + 2) * h
    needed = embeddings + config.num_hidden_layers * (4 * h * h + 2 * h * i + 9 * h + i)
    available = sum(t.numel() for t in tensors.values())
    if needed > available:
        raise MinitfError(f"{directory / 'config.json'} describes an encoder of {needed:,} "
                          f"parameters, but the checkpoint holds only {available:,} values; "
                          "config.json does not belong to these weights (or is corrupted)")


def normalise_names(tensors: dict[str, torch.Tensor], model: nn.Module
                    ) -> dict[str, torch.Tensor]:
    """Map checkpoint spellings onto the module names of `model`.

    - `bert.` prefix: present in task checkpoints (BertFor...), absent in BertModel ones;
      the encoder's names are taken without it, then given the model's checkpoint_prefix.
    - heads: the model's own (head_prefix) is kept; other tasks' heads are dropped.
    - `gamma`/`beta`: TF-era LayerNorm names for weight/bias.
    - `cls.predictions.decoder.bias`: an older name of cls.predictions.bias; the decoder's
      weight is the word-embedding matrix (tied), so a stored copy is not read.
    """
    own = model.head_prefix
    out = {}
    for name, tensor in tensors.items():
        name = name.removeprefix("bert.")
        if name.endswith("LayerNorm.gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith("LayerNorm.beta"):
            name = name[: -len("beta")] + "bias"
        if name == "cls.predictions.decoder.bias":
            name = "cls.predictions.bias"
        if name in IGNORED or name == "cls.predictions.decoder.weight":
            continue
        if own and name.startswith(own):
            out.setdefault(name, tensor)
        elif not name.startswith(HEADS):
            out[model.checkpoint_prefix + name] = tensor
    return out


def copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path,
              allow_missing: tuple[str, ...] = ()) -> list[str]:
    """Check names and shapes, then copy; returns the allowed missing names (left as
    initialised). One error lists every problem at once."""
    expected = {n: t for n, t in model.state_dict().items() if n not in model.tied_weights}
    missing = [n for n in expected if n not in tensors]
    fresh = [n for n in missing if n.startswith(allow_missing)]
    missing = [n for n in missing if n not in fresh]
    unexpected = [n for n in tensors if n not in expected]
    misshaped = [f"{n}: checkpoint {tuple(t.shape)} vs model {tuple(expected[n].shape)}"
                 for n, t in tensors.items() if n in expected and t.shape != expected[n].shape]
    not_float = [f"{n}: {t.dtype}" for n, t in tensors.items()
                 if n in expected and not t.is_floating_point()]
    if missing or unexpected or misshaped or not_float:
        lines = [f"{source}: the checkpoint does not match the model described by config.json"]
        for title, names in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", misshaped), ("not floating point", not_float)):
            if names:
                lines.append(f"  {title} ({len(names)}): " + ", ".join(names[:8])
                             + (", ..." if len(names) > 8 else ""))
        head = model.head_prefix
        if head and any(n.startswith(head) for n in missing):
            lines.append(f"  (this checkpoint has no {head}* head: pass allow_missing_head=True "
                         "to start a new one)")
        if any(n.startswith("classifier.") for n in misshaped):
            lines.append("  (the classifier was trained for another number of labels)")
        raise MinitfError("\n".join(lines))
    not_finite = [n for n, t in tensors.items()  # a diverged run's weights give nan logits
                  if t.is_floating_point() and not torch.isfinite(t).all()]
    if not_finite:
        raise MinitfError(f"{source}: NaN or infinite values in {len(not_finite)} tensor(s): "
                          f"{', '.join(not_finite[:8])}; these weights come from a diverged run "
                          "(or are corrupted), and would give nan outputs")
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)
    return fresh


def load_pretrained(cls: type[nn.Module], path: str | Path, attn_backend: str = "auto",
                    dtype: torch.dtype | str | None = None, num_labels: int | None = None,
                    allow_missing_head: bool = False) -> nn.Module:
    """Build `cls` from a directory's config.json and fill it from its safetensors.

    A missing pooler (masked-LM checkpoints have none) is initialised afresh, with a warning;
    so is a missing head when allow_missing_head=True (silently: it was asked for).
    """
    from minitf.paths import resolve_model_dir

    directory = resolve_model_dir(path)
    config = BertConfig.from_pretrained(directory)
    if cls.head_prefix == "classifier." and num_labels not in (None, config.num_labels):
        if config.id2label and not allow_missing_head:
            raise MinitfError(f"{directory}: this classifier has {config.num_labels} labels "
                              f"({', '.join(config.id2label.values())}), not {num_labels}")
        config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    checkpoint = read_checkpoint(directory)
    refuse_oversized(config, checkpoint, directory)
    model = cls(config, attn_backend=attn_backend)
    target = resolve_dtype(dtype, config, checkpoint, directory)
    tensors = normalise_names(checkpoint, model)
    pooler = model.checkpoint_prefix + "pooler."
    if not any(n.startswith(pooler) for n in model.state_dict()):  # BertForMaskedLM
        tensors = {n: t for n, t in tensors.items() if not n.startswith(pooler)}
    # A part may be missing as a whole (then it starts fresh), never half of it.
    allowed = tuple(part for part, may in ((pooler, True), (cls.head_prefix, allow_missing_head))
                    if may and part and not any(n.startswith(part) for n in tensors))
    fresh = copy_into(model, tensors, directory, allow_missing=allowed)
    if any(n.startswith(pooler) for n in fresh):  # a fresh head was asked for; this was not
        warnings.warn(f"{directory}: the checkpoint has no pooler weights (a masked-LM "
                      f"checkpoint?); {pooler}dense.* newly initialised, so pooler_output is "
                      "random until trained", stacklevel=3)
    return model.to(target).eval()


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def resolve_dtype(dtype: torch.dtype | str | None, config: BertConfig,
                  tensors: dict[str, torch.Tensor], source: Path) -> torch.dtype:
    """The dtype to load in. None (or "auto") keeps the checkpoint's, as transformers 5 does:
    config.json's dtype when given, else the first floating-point tensor's."""
    if dtype is None or dtype == "auto":
        name = config.dtype
        if name is None:
            floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
            return floats[0] if floats and floats[0] in DTYPES.values() else torch.float32
        if name not in DTYPES:
            raise MinitfError(f"{source}/config.json: dtype {name!r} is not supported; "
                              "minitf loads float32, bfloat16 or float16")
        return DTYPES[name]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.lower().removeprefix("torch.")]
    raise MinitfError(f"dtype {dtype!r} is not supported; use None (the checkpoint's), "
                      "torch.float32 / bfloat16 / float16 or 'fp32' / 'bf16' / 'fp16'")


def save_pretrained(model: nn.Module, directory: str | Path) -> None:
    """config.json + model.safetensors that both minitf and transformers load, in the model's
    dtype (recorded as config.json's "dtype", as transformers 5 writes it).

    Tied weights (the masked-LM decoder) are not written twice, as transformers does not.
    Written atomically: into a temporary sibling directory, then renamed into place, so a
    crash never leaves a half-written checkpoint where a good one was.
    """
    architecture = getattr(model, "architecture", None) or type(model).__name__
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()
             if name not in model.tied_weights}
    model.config.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    with atomic_directory(directory) as tmp:
        save_safetensors(state, tmp / WEIGHTS_FILE)
        model.config.save(tmp, architecture=architecture)


def model_files(model: nn.Module, tokenizer: Any = None) -> Callable[[Path], None]:
    """A writer of `model`'s Hugging Face directory (weights, config.json, tokenizer files)
    into a given directory: what Task.save is for a minitf model."""
    def write(directory: Path) -> None:
        model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
    return write


def save_safetensors(tensors: dict[str, torch.Tensor], file: str | Path) -> None:
    """`tensors` as a safetensors file, written by minitf.io (so with the user's umask:
    safetensors' own save_file creates its files mode 0600)."""
    write_bytes(file, save(tensors, metadata={"format": "pt"}))
