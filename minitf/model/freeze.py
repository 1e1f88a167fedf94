"""Which parameters train: freezing a prefix of a classifier, and its forward pass from a cache.

Policies (`--freeze`, or `freeze(model, policy)` from Python):

    none           everything trains (full fine-tuning)
    embeddings     the embedding tables and their LayerNorm are frozen
    layers:N       embeddings + the bottom N encoder layers are frozen
    all-but-head   embeddings + every encoder layer; the pooler and classifier train

Every policy freezes a *prefix* of the network: `plan.frozen_layers` = N says the embeddings
and encoder layers 0..N-1 are fixed. Frozen parameters have requires_grad=False, so they get no
gradients and the optimizer (built from trainable parameters only) keeps no state for them.
The prefix also runs in eval mode (no dropout) under no_grad, which makes it a pure function of
the tokens — so its outputs can be computed once and cached (minitf.train.freeze.PrefixCache):
later epochs run only the trainable layers, and produce the same numbers as recomputing the
prefix. `classifier_logits` is the model's own forward, started at the frozen boundary
(BertForSequenceClassification.forward(hidden=..., first_layer=N)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification

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
# The forward pass, started at the frozen boundary
# ---------------------------------------------------------------------------------------------


class CachedPrefix(Protocol):
    """Where the frozen prefix's outputs come from when they are cached (PrefixCache)."""

    def collate(self, indices: Sequence[int], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]: ...


def classifier_logits(model: BertForSequenceClassification, batch: dict[str, torch.Tensor],
                      plan: FreezePlan, cache: CachedPrefix | None = None,
                      indices: Sequence[int] | None = None) -> torch.Tensor:
    """Logits for a batch: the model's forward, the frozen prefix taken from `cache` (rows
    `indices`) when given, else computed here without gradients; with nothing frozen,
    gradients flow all the way to the embeddings."""
    if plan.frozen_layers is None:
        return model(batch["input_ids"], batch["attention_mask"],
                     batch.get("token_type_ids")).logits
    if cache is not None:
        hidden, attention_mask = cache.collate(indices, device=batch["attention_mask"].device)
    else:
        with torch.no_grad():
            hidden = model.hidden_states(batch["input_ids"], batch["attention_mask"],
                                         batch.get("token_type_ids"), plan.frozen_layers)
        attention_mask = batch["attention_mask"]
    # input_ids ride along: a prompt classifier (minitf/tasks/prompt.py) finds its [MASK] there.
    return model(input_ids=batch["input_ids"], attention_mask=attention_mask, hidden=hidden,
                 first_layer=plan.frozen_layers).logits
