"""Export a minitf encoder or classifier to ONNX, for ONNX Runtime and other ONNX engines.

    export_onnx("my-model/", "model.onnx")        # writes model.onnx atomically

The graph, traced from minitf's own forward (no second implementation of the model):

- inputs:  input_ids, attention_mask, token_type_ids — int64, shape (batch, sequence);
- outputs: encoders → last_hidden_state (batch, sequence, hidden) and pooler_output
  (batch, hidden); classifiers → logits (batch, num_labels); all fp32;
- batch and sequence are dynamic axes: any batch size, any length up to
  max_position_embeddings, padded or not.

Exporter: torch.onnx.export with the TorchScript tracer (dynamo=False), opset OPSET (17: the
first with a LayerNormalization op, so each LayerNorm is one node). The model is traced with
a padded example, so the graph keeps the padding path (masked attention, feed-forward on the
real tokens only); unpadded inputs go through it unchanged. Tracing leaves state in the traced
module (see /work/shared/notes: outputs of the same object change afterwards), so a deep copy
is traced and the caller's model is untouched.

ONNX Runtime: nothing minitf-specific is needed. Sessions apply ORT's default graph
optimisations (ORT_ENABLE_ALL: constant folding, redundant-node elimination, the LayerNorm,
GELU and MatMul+Add fusions of the CPU provider); the exported file itself is unoptimised and
portable. int8 for ONNX Runtime: onnxruntime.quantization.quantize_dynamic on the exported file
(measured in benchmarks/results/encoder-*.md).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.io import atomic_file
from minitf.model.bert import (
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FORMATS = ("onnx",)
OPSETS = range(14, 21)  # 14: the first with the Trilu/Softmax forms used; 20: the newest tested


class _OnnxEncoder(nn.Module):
    """BertModel with tuple outputs (ONNX graphs have positional outputs, not dataclasses)."""

    def __init__(self, model: BertModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids, attention_mask, token_type_ids)
        return out.last_hidden_state, out.pooler_output


class _OnnxClassifier(nn.Module):
    def __init__(self, model: BertForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids, attention_mask, token_type_ids).logits


def load_for_export(directory: str | Path) -> BertModel | BertForSequenceClassification:
    """A model directory → a classifier if its config names labels, else an encoder."""
    from minitf.model.config import BertConfig
    from minitf.paths import resolve_model_dir

    path = resolve_model_dir(directory)
    config = BertConfig.from_pretrained(path)
    if "BertForTokenClassification" in _architectures(path):  # a label per position
        return BertForTokenClassification.from_pretrained(path, attn_backend="reference")
    if config.id2label:
        return BertForSequenceClassification.from_pretrained(path, attn_backend="reference")
    return BertModel.from_pretrained(path, attn_backend="reference")


def _architectures(path: Path) -> list[str]:
    import json
    try:
        names = json.loads((path / "config.json").read_text(encoding="utf-8")).get(
            "architectures")
    except (OSError, ValueError, AttributeError):
        return []
    return names if isinstance(names, list) else []


def output_names(model: nn.Module) -> tuple[str, ...]:
    if isinstance(model, (BertForSequenceClassification, BertForTokenClassification)):
        return ("logits",)
    if isinstance(model, BertModel):
        return ("last_hidden_state", "pooler_output")
    raise MinitfError(f"cannot export a {type(model).__name__}: minitf exports BertModel, "
                      "BertForSequenceClassification and BertForTokenClassification")


def export_onnx(model: BertModel | BertForSequenceClassification | str | Path,
                output: str | Path, opset: int = OPSET, overwrite: bool = False) -> Path:
    """Write `model` (a module, or a model directory) to the ONNX file `output`; returns it.

    The file appears only when complete (minitf.io.atomic_file: written next to it under a
    temporary name, then renamed), so a failed export never leaves a half-written file
    behind. An existing `output` is replaced only with `overwrite=True`.
    """
    if isinstance(model, (str, Path)):
        model = load_for_export(model)
    names = output_names(model)
    if opset not in OPSETS:
        raise MinitfError(f"--opset {opset}: choose an ONNX opset from {OPSETS.start} to "
                          f"{OPSETS.stop - 1} (default {OPSET})")
    output = Path(output)
    if output.is_dir():
        raise MinitfError(f"--output {output} is a directory; give a file name such as "
                          f"{output / 'model.onnx'}")
    if not output.parent.is_dir():
        raise MinitfError(f"--output {output}: the directory {output.parent} does not exist")
    if output.exists() and not overwrite:
        raise MinitfError(f"--output {output} already exists; pass --overwrite to replace it, "
                          "or choose another file name")
    if next(model.parameters()).dtype != torch.float32:
        raise MinitfError("export needs an fp32 model (load it without dtype=, or .float() it)")

    # A deep copy (tracing leaves state behind), in eval mode, on the CPU, reference attention:
    # plain matmul/softmax ops that every ONNX runtime has.
    traced = copy.deepcopy(model).float().cpu().eval()
    traced.set_attn_backend("reference") if isinstance(traced, BertModel) else \
        traced.bert.set_attn_backend("reference")
    wrapper = _OnnxClassifier(traced) if len(names) == 1 else _OnnxEncoder(traced)
    example = example_inputs(traced.config.vocab_size)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    per_position = ("last_hidden_state",) + (
        ("logits",) if isinstance(traced, BertForTokenClassification) else ())
    axes.update({name: ({0: "batch", 1: "sequence"} if name in per_position
                        else {0: "batch"}) for name in names})

    with atomic_file(output, overwrite) as tmp, warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about the input checks' Python ints and the padding test: both
        # are value checks, not shapes, and the graph keeps the general (padded) path.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, str(tmp), input_names=list(INPUTS),
                          output_names=list(names), dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return output


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sequences of different lengths (so the traced graph is the padded one)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab_size, (2, 7), generator=generator)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return ids, mask, torch.zeros_like(ids)
