"""Freezing the bottom of a classifier, and the classifier forward pass that exploits it.

Policies (`--freeze`, or `freeze(model, policy)` from Python):

    none           everything trains (full fine-tuning)
    embeddings     the embedding tables and their LayerNorm are frozen
    layers:N       embeddings + the bottom N encoder layers are frozen
    all-but-head   embeddings + every encoder layer; the pooler and classifier train

Every policy freezes a *prefix* of the network: `plan.frozen_layers` = N says the embeddings
and encoder layers 0..N-1 are fixed. Frozen parameters have requires_grad=False, so they get no
gradients and the optimizer (built from trainable parameters only) keeps no state for them.
The prefix also runs in eval mode (no dropout) under no_grad, which makes it a pure function of
the tokens — so its outputs can be computed once and cached (PrefixCache): later epochs run
only the trainable layers, and produce the same numbers as recomputing the prefix.

The forward pass here (`classifier_logits`) is the model's own, split at the frozen boundary:
BertEncoder runs any range of layers (start/stop), and, as in
BertForSequenceClassification.forward, the last layer at the [CLS] position only (cls_only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.model import BertForSequenceClassification
from minitf.train.data import Encoded, batch_plan

POLICIES = "none | embeddings | layers:N | all-but-head"


@dataclass(frozen=True)
class FreezePlan:
    policy: str
    frozen_layers: int | None  # None: nothing frozen; N: embeddings + encoder layers 0..N-1

    @property
    def frozen(self) -> bool:
        return self.frozen_layers is not None


def parse_policy(policy: str, num_layers: int) -> FreezePlan:
    """The FreezePlan of a policy string for a model with `num_layers` encoder layers."""
    text = (policy or "none").strip().lower()
    if text == "none":
        return FreezePlan("none", None)
    if text == "embeddings":
        return FreezePlan(text, 0)
    if text == "all-but-head":
        return FreezePlan(text, num_layers)
    if text.startswith("layers:") and text[7:].isdigit():
        n = int(text[7:])
        if n > num_layers:
            raise MinitfError(f"--freeze {policy}: the model has only {num_layers} encoder "
                              f"layers; use layers:0..{num_layers}")
        return FreezePlan(text, n)
    raise MinitfError(f"unknown freezing policy {policy!r}; choose one of {POLICIES}")


def frozen_modules(model: BertForSequenceClassification, plan: FreezePlan) -> list[nn.Module]:
    if plan.frozen_layers is None:
        return []
    return [model.bert.embeddings, *model.bert.encoder.layer[:plan.frozen_layers]]


def freeze(model: BertForSequenceClassification, policy: str | FreezePlan) -> FreezePlan:
    """Freeze the policy's prefix in place (requires_grad=False) and return its plan."""
    plan = policy if isinstance(policy, FreezePlan) else parse_policy(
        policy, model.config.num_hidden_layers)
    for p in model.parameters():
        p.requires_grad_(True)
    for module in frozen_modules(model, plan):
        for p in module.parameters():
            p.requires_grad_(False)
    return plan


def train_mode(model: BertForSequenceClassification, plan: FreezePlan) -> None:
    """model.train(), except the frozen prefix, which runs without dropout."""
    model.train()
    for module in frozen_modules(model, plan):
        module.eval()


# ---------------------------------------------------------------------------------------------
# The forward pass, split at the frozen boundary
# ---------------------------------------------------------------------------------------------


def prefix_hidden(model: BertForSequenceClassification, batch: dict[str, torch.Tensor],
                  num_layers: int) -> torch.Tensor:
    """Embeddings, then encoder layers 0..num_layers-1: hidden states (B, N, C)."""
    bert = model.bert
    hidden = bert.embed(batch["input_ids"], batch["token_type_ids"])
    return bert.encoder(hidden, batch["attention_mask"], stop=num_layers)[0]


def head_logits(model: BertForSequenceClassification, hidden: torch.Tensor,
                attention_mask: torch.Tensor, first_layer: int) -> torch.Tensor:
    """Encoder layers first_layer.. on `hidden` (B, N, C), the last one at [CLS] only, then
    pooler and classifier → logits. With first_layer == num_layers nothing runs and `hidden`
    may hold the [CLS] position only (B, 1, C)."""
    hidden, _ = model.bert.encoder(hidden, attention_mask, start=first_layer, cls_only=True)
    return model.head(hidden)                                 # (B, num_labels)


def classifier_logits(model: BertForSequenceClassification, batch: dict[str, torch.Tensor],
                      plan: FreezePlan, cache: PrefixCache | None = None,
                      indices: Sequence[int] | None = None) -> torch.Tensor:
    """Logits for a batch, as BertForSequenceClassification computes them.

    The frozen prefix comes from `cache` (rows `indices`) when given, else is computed here
    without gradients; with nothing frozen, gradients flow all the way to the embeddings.
    """
    if plan.frozen_layers is None:
        hidden = model.bert.embed(batch["input_ids"], batch["token_type_ids"])
        return head_logits(model, hidden, batch["attention_mask"], 0)
    if cache is not None:
        hidden, attention_mask = cache.collate(indices, device=batch["labels"].device)
    else:
        with torch.no_grad():
            hidden = prefix_hidden(model, batch, plan.frozen_layers)
        attention_mask = batch["attention_mask"]
    return head_logits(model, hidden, attention_mask, plan.frozen_layers)


# ---------------------------------------------------------------------------------------------
# The cache of the frozen prefix's outputs
# ---------------------------------------------------------------------------------------------


class PrefixCache:
    """Hidden states after the frozen prefix for every example of `data`, kept unpadded.

    Computed once, in eval mode, in length-sorted batches (a fixed order, so the cache — and a
    resumed run that rebuilds it — does not depend on the epoch's batches). Memory: 4 bytes ×
    hidden_size per token, or per example when every layer is frozen (only [CLS] is needed).
    """

    def __init__(self, model: BertForSequenceClassification, data: Encoded, num_layers: int,
                 batch_size: int = 64, device: torch.device | str = "cpu",
                 storage: torch.device | str = "cpu"):
        self.cls_only = num_layers == model.config.num_hidden_layers
        lengths = torch.ones(len(data), dtype=torch.int64) if self.cls_only else data.lengths
        self.lengths = lengths
        self.offsets = torch.zeros(len(data) + 1, dtype=torch.int64)
        self.offsets[1:] = torch.cumsum(lengths, 0)
        self.hidden = torch.empty(int(self.offsets[-1]), model.config.hidden_size,
                                  device=storage)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for indices in batch_plan(data.lengths, batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in data.collate(indices).items()}
                h = prefix_hidden(model, batch, num_layers).to(storage)
                for row, i in enumerate(indices):
                    start, n = int(self.offsets[i]), int(lengths[i])
                    self.hidden[start:start + n] = h[row, :n]
        model.train(was_training)

    @property
    def nbytes(self) -> int:
        return self.hidden.numel() * self.hidden.element_size()

    def collate(self, indices: Sequence[int], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded hidden states (B, N, C) and attention mask (B, N) of the chosen examples."""
        n = int(self.lengths[list(indices)].max())
        hidden = torch.zeros(len(indices), n, self.hidden.shape[1], device=self.hidden.device)
        mask = torch.zeros(len(indices), n, dtype=torch.int64)
        for row, i in enumerate(indices):
            start, k = int(self.offsets[i]), int(self.lengths[i])
            hidden[row, :k] = self.hidden[start:start + k]
            mask[row, :k] = 1
        return hidden.to(device), mask.to(device)
