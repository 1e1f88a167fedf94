"""The BERT encoder, top to bottom, in plain PyTorch.

One forward pass, for token ids of shape (B, N):

    embeddings   word + position + token-type vectors, LayerNorm, dropout       → (B, N, C)
    encoder      num_hidden_layers × BertLayer (post-LN):
                   x = LayerNorm(x + Dropout(Wo · Attention(x)))
                   x = LayerNorm(x + Dropout(W2 · GELU(W1 · x)))
    pooler       tanh(W · x[:, 0])  — the [CLS] vector                        → (B, C)

Module and parameter names mirror Hugging Face's BERT checkpoints exactly
(`encoder.layer.3.attention.self.query.weight`, ...), so loading is a checked copy of a dict
(minitf/model/weights.py) rather than a renaming exercise. The attention formula itself lives in
minitf/model/attention.py, with its backends ("reference", "sdpa", "triton") side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitf.errors import MinitfError
from minitf.model.attention import (
    Packing,
    attention_weights,
    get_attention,
    packed_attention,
    uses_packed_attention,
)
from minitf.model.config import BertConfig
from minitf.model.init import init_weights

# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (N,)
        x = (self.word_embeddings(input_ids)                 # (B, N, C)
             + self.position_embeddings(positions)           # (N, C), broadcast over B
             + self.token_type_embeddings(token_type_ids))   # (B, N, C)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention: project to Q, K, V, split into heads, attend, merge heads."""

    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.backend = backend

    def forward(self, x: torch.Tensor, packing: Packing, cls_only: bool = False,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (T, C) packed tokens → (T, C), or (B, C) for the [CLS] queries only (cls_only).

        Keys and values always cover every token; with cls_only the queries are the B [CLS]
        rows, so the score matrix is (B, H, 1, N) instead of (B, H, N, N). Q/K/V are projected
        from x scattered back to (B, N, C) once: on CPU that measured faster than projecting
        the T packed rows and scattering three projections (one scatter instead of three).
        """
        dropout_p = self.dropout_p if self.training else 0.0
        if (not cls_only and not output_attentions and uses_packed_attention(
                self.backend, x, self.head_dim, packing, dropout_p)):
            # The fused kernel's varlen form: packed (T, H, D) views, no padding anywhere.
            q, k, v = (proj(x).view(x.shape[0], self.num_heads, -1)
                       for proj in (self.query, self.key, self.value))
            return packed_attention(q, k, v, packing, dropout_p).flatten(1), None
        padded = packing.unpack(x)                                    # (B, N, C), 0 at padding
        k, v = (packing.split_heads(proj(padded), self.num_heads)
                for proj in (self.key, self.value))                   # (B, H, N, D)
        if cls_only:
            q = self.query(x[packing.cls_rows]).view(packing.batch, self.num_heads, 1, -1)
        else:
            q = packing.split_heads(self.query(padded), self.num_heads)  # (B, H, N, D)

        weights = None
        if output_attentions:
            # Keep the (B, H, Nq, N) probabilities to hand back: the reference path, spelled out.
            weights = attention_weights(q, k, key_padding_mask=packing.mask)
            out = torch.matmul(F.dropout(weights, dropout_p), v)      # (B, H, Nq, D)
        else:
            attend = get_attention(self.backend)
            out = attend(q, k, v, key_padding_mask=packing.mask, dropout_p=dropout_p)
        if cls_only:
            return out.reshape(packing.batch, -1), weights            # (B, C)
        return packing.merge_heads(out), weights                      # (T, C)


class BertAddNorm(nn.Module):
    """Post-LN residual block: LayerNorm(residual + Dropout(dense(x))).

    Used twice per layer, under the names the checkpoints use: `attention.output` (after
    attention) and `output` (after the feed-forward).
    """

    def __init__(self, in_features: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        # `self.self` is an odd name, but it is the checkpoint's: attention.self.query.weight.
        self.self = BertSelfAttention(config, backend)
        self.output = BertAddNorm(config.hidden_size, config)

    def forward(self, x: torch.Tensor, packing: Packing, cls_only: bool = False,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.self(x, packing, cls_only, output_attentions)
        residual = x[packing.cls_rows] if cls_only else x
        return self.output(attended, residual=residual), weights


class BertIntermediate(nn.Module):
    """The first half of the feed-forward: C → intermediate_size, then the activation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


ACTIVATIONS = {
    "gelu": nn.GELU(),                          # exact, with erf (original BERT)
    "gelu_new": nn.GELU(approximate="tanh"),    # the tanh approximation (GPT-2)
    "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
    "relu": nn.ReLU(),
}


class BertLayer(nn.Module):
    """One encoder layer on packed tokens (T, C); with cls_only its output is (B, C), the
    [CLS] rows alone: all a classifier reads of the last layer."""

    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        self.attention = BertAttention(config, backend)
        self.intermediate = BertIntermediate(config)
        self.output = BertAddNorm(config.intermediate_size, config)

    def forward(self, x: torch.Tensor, packing: Packing, cls_only: bool = False,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weights = self.attention(x, packing, cls_only, output_attentions)
        return self.output(self.intermediate(x), residual=x), weights


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, backend)
                                   for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
                start: int = 0, stop: int | None = None, cls_only: bool = False,
                output_attentions: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Layers start..stop-1 on hidden (B, N, C) → (B, N, C), zeros at padding positions.

        cls_only: the last layer run computes its queries, attention output and feed-forward
        at position 0 only (keys and values over all tokens) and the result is (B, 1, C).
        With start == stop nothing runs and `hidden` comes back as it is (a cached (B, 1, C)
        [CLS] state passes through). Padding is removed once here and restored at the end.
        """
        stop = len(self.layer) if stop is None else stop
        attentions: list[torch.Tensor] = []
        if start < stop:
            B, N, _ = hidden.shape
            packing = Packing(attention_mask, B, N, hidden.device)
            if cls_only and packing.mask is not None and not bool(packing.mask[:, 0].all()):
                raise MinitfError("cls_only reads position 0 ([CLS]), which is padding in some "
                                  "rows of attention_mask; pad on the right, as BERT expects")
            x = packing.pack(hidden)                                   # (T, C)
            for i in range(start, stop):
                x, weights = self.layer[i](x, packing, cls_only and i == stop - 1,
                                           output_attentions)
                attentions.append(weights)
            hidden = x[:, None] if cls_only else packing.unpack(x)
        return hidden, tuple(attentions) if output_attentions else None


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # the [CLS] position, (B, C)


class BertPredictionHeadTransform(nn.Module):
    """The masked-LM head's first step: dense C → C, the activation, LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """transform, then scores over the vocabulary: decoder (the word-embedding matrix, tied by
    the model) plus a per-token bias. Checkpoint names: cls.predictions.{transform.*, bias}."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias     # (..., V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor              # (B, N, C), zeros at padding positions
    pooler_output: torch.Tensor | None           # (B, C); None without a pooler
    attentions: tuple[torch.Tensor, ...] | None  # per layer (B, H, N, N), when asked for


@dataclass
class ClassifierOutput:
    logits: torch.Tensor                         # (B, num_labels)
    loss: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor                         # (B, N, V), or (M, V) at the labelled positions
    loss: torch.Tensor | None = None             # mean of token_loss
    token_loss: torch.Tensor | None = None       # (M,) cross-entropy of each labelled position


class BertModel(nn.Module):
    # Checkpoint layout (minitf/model/weights.py): names without a prefix, no task head.
    checkpoint_prefix, head_prefix, tied_weights = "", None, ()

    def __init__(self, config: BertConfig, attn_backend: str = "auto",
                 add_pooling_layer: bool = True):
        super().__init__()
        get_attention(attn_backend)  # fail now, not at the first forward, on a bad name
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, attn_backend)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    @property
    def attn_backend(self) -> str:
        return self.encoder.layer[0].attention.self.backend

    def set_attn_backend(self, backend: str) -> None:
        get_attention(backend)
        for layer in self.encoder.layer:
            layer.attention.self.backend = backend

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Checked token ids (B, N) → embeddings (B, N, C), the encoder's input."""
        check_inputs(self.config, input_ids, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.embeddings(input_ids, token_type_ids)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_attentions: bool = False
                ) -> EncoderOutput:
        hidden = self.embed(input_ids, token_type_ids)                          # (B, N, C)
        hidden, attentions = self.encoder(hidden, attention_mask,
                                          output_attentions=output_attentions)
        pooled = None if self.pooler is None else self.pooler(hidden)
        return EncoderOutput(hidden, pooled, attentions)

    @classmethod
    def from_pretrained(cls, path: str | Path, attn_backend: str = "auto",
                        dtype: torch.dtype | str | None = None) -> BertModel:
        """Load a Hugging Face BERT directory (config.json + model.safetensors).

        dtype None keeps the checkpoint's; a checkpoint without pooler weights (a masked-LM
        one) gets a freshly initialised pooler, with a warning.
        """
        from minitf.model.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend, dtype=dtype)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors in the Hugging Face layout, in the model's
        dtype."""
        from minitf.model.weights import save_pretrained
        save_pretrained(self, directory)


class BertForSequenceClassification(nn.Module):
    """BERT + dropout + a linear layer on the pooled [CLS] vector, as Hugging Face's."""

    checkpoint_prefix, head_prefix, tied_weights = "bert.", "classifier.", ()

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config, attn_backend)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        init_weights(self.classifier, config.initializer_range)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, N or 1, C) → logits (B, num_labels), from [CLS] alone."""
        return self.classifier(self.dropout(self.bert.pooler(hidden)))

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, hidden: torch.Tensor | None = None,
                first_layer: int = 0) -> ClassifierOutput:
        """Token ids (B, N) → logits (B, num_labels), and the loss when labels are given.

        hidden / first_layer start the pass part-way up: `hidden` (B, N, C) is what encoder
        layers below `first_layer` produced (self.hidden_states(..., layers=first_layer)), e.g.
        from the frozen-prefix cache (minitf.model.freeze). With first_layer equal to the
        number of layers nothing runs and `hidden` may hold the [CLS] position only (B, 1, C).
        """
        if hidden is None:
            hidden, first_layer = self.bert.embed(input_ids, token_type_ids), 0
        # Only [CLS] of the last layer is read, so that layer runs cls_only (same numbers),
        # unless the caller wants every layer's full attention maps.
        hidden, attentions = self.bert.encoder(
            hidden, attention_mask, start=first_layer, cls_only=not output_attentions,
            output_attentions=output_attentions)
        logits = self.head(hidden)                                              # (B, labels)
        loss = None if labels is None else classification_loss(logits, labels)
        return ClassifierOutput(logits, loss, attentions)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None, layers: int = 0
                      ) -> torch.Tensor:
        """Embeddings, then encoder layers 0..layers-1: (B, N, C), the input of layer
        `layers`; forward(hidden=..., first_layer=layers) carries on from there."""
        hidden = self.bert.embed(input_ids, token_type_ids)
        return self.bert.encoder(hidden, attention_mask, stop=layers)[0]

    @classmethod
    def from_pretrained(cls, path: str | Path, num_labels: int | None = None,
                        attn_backend: str = "auto", allow_missing_head: bool = False,
                        dtype: torch.dtype | str | None = None
                        ) -> BertForSequenceClassification:
        """Load a BERT directory as a classifier.

        A base checkpoint (no `classifier.*` tensors) is only accepted with
        allow_missing_head=True, which starts a freshly initialised head for fine-tuning.
        """
        from minitf.model.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend, num_labels=num_labels,
                               allow_missing_head=allow_missing_head, dtype=dtype)

    def save_pretrained(self, directory: str | Path) -> None:
        from minitf.model.weights import save_pretrained
        save_pretrained(self, directory)


class BertForTokenClassification(nn.Module):
    """BERT (no pooler) + dropout + a linear layer on every position, as Hugging Face's: one
    label per token (word segmentation, part-of-speech tags, named entities)."""

    checkpoint_prefix, head_prefix, tied_weights = "bert.", "classifier.", ()
    head_reads_cls_only = False  # every position: a frozen-prefix cache keeps them all

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config, attn_backend, add_pooling_layer=False)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, hidden: torch.Tensor | None = None,
                first_layer: int = 0) -> ClassifierOutput:
        """Token ids (B, N) → logits (B, N, num_labels); with labels (B, N), -100 = not
        scored (special tokens, padding, the later pieces of a word), the mean cross-entropy.

        hidden / first_layer start part-way up, as in BertForSequenceClassification.
        """
        if hidden is None:
            hidden, first_layer = self.bert.embed(input_ids, token_type_ids), 0
        hidden, attentions = self.bert.encoder(hidden, attention_mask, start=first_layer,
                                               output_attentions=output_attentions)
        logits = self.classifier(self.dropout(hidden))                      # (B, N, labels)
        loss = None if labels is None else token_classification_loss(logits, labels)
        return ClassifierOutput(logits, loss, attentions)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None, layers: int = 0
                      ) -> torch.Tensor:
        """Embeddings, then encoder layers 0..layers-1: (B, N, C)."""
        hidden = self.bert.embed(input_ids, token_type_ids)
        return self.bert.encoder(hidden, attention_mask, stop=layers)[0]

    @classmethod
    def from_pretrained(cls, path: str | Path, num_labels: int | None = None,
                        attn_backend: str = "auto", allow_missing_head: bool = False,
                        dtype: torch.dtype | str | None = None) -> BertForTokenClassification:
        """Load a BERT directory as a token classifier; a checkpoint without `classifier.*`
        (a base or masked-LM one) only with allow_missing_head=True (a fresh head)."""
        from minitf.model.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend, num_labels=num_labels,
                               allow_missing_head=allow_missing_head, dtype=dtype)

    def save_pretrained(self, directory: str | Path) -> None:
        from minitf.model.weights import save_pretrained
        save_pretrained(self, directory)


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor,
                              reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the labelled positions: logits (B, N, L), labels (B, N) with -100
    where nothing is scored. No labelled position: a zero loss that still backpropagates."""
    if labels.shape != logits.shape[:-1]:
        raise MinitfError(f"labels has shape {tuple(labels.shape)} but the logits are "
                          f"{tuple(logits.shape[:-1])} positions")
    chosen = labels != -100
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[chosen].float(), labels[chosen].long(), reduction=reduction)


class BertForMaskedLM(nn.Module):
    """BERT (no pooler) + the masked-LM head, whose decoder is the word-embedding matrix."""

    checkpoint_prefix, head_prefix = "bert.", "cls.predictions."
    tied_weights = ("cls.predictions.decoder.weight",)  # = bert.embeddings.word_embeddings

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, attn_backend, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.cls.apply(lambda m: init_weights(m, config.initializer_range))
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None
                ) -> MaskedLMOutput:
        """Without labels: logits (B, N, V). With labels (B, N), -100 = not predicted: the
        vocabulary projection (the largest matmul, C × V per token) runs only where labels are
        set, logits are (M, V) in row-major order, token_loss (M,) their cross-entropy and
        loss its mean (recipes that weigh tokens otherwise, e.g. per block, start from
        token_loss)."""
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        if labels is None:
            return MaskedLMOutput(self.cls.predictions(hidden))
        if labels.shape != input_ids.shape:
            raise MinitfError(f"labels has shape {tuple(labels.shape)} but input_ids has "
                              f"{tuple(input_ids.shape)}")
        chosen = labels != -100                                                 # (B, N)
        logits = self.cls.predictions(hidden[chosen])                           # (M, V)
        targets = labels[chosen]
        token_loss = F.cross_entropy(logits.float(), targets, reduction="none")   # (M,)
        # No labelled position: a zero loss that still backpropagates (mean of nothing is NaN).
        loss = token_loss.mean() if targets.numel() else logits.sum() * 0.0
        return MaskedLMOutput(logits, loss, token_loss)

    @classmethod
    def from_pretrained(cls, path: str | Path, attn_backend: str = "auto",
                        dtype: torch.dtype | str | None = None,
                        allow_missing_head: bool = False) -> BertForMaskedLM:
        """Load a masked-LM directory; allow_missing_head=True also takes an encoder-only one
        (e.g. to continue pre-training) and starts a fresh cls.predictions.* head."""
        from minitf.model.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend, dtype=dtype,
                               allow_missing_head=allow_missing_head)

    def save_pretrained(self, directory: str | Path) -> None:
        from minitf.model.weights import save_pretrained
        save_pretrained(self, directory)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """The sequence-classification loss, as Hugging Face defines it: logits (B, num_labels).

    One output (num_labels == 1) is regression: MSE between logits[:, 0] and float labels.
    Otherwise cross-entropy with integer class labels, or with class probabilities (B,
    num_labels) as soft targets. reduction: "mean" or "sum".
    """
    if logits.shape[-1] == 1:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype), reduction=reduction)
    if labels.dim() == 2:  # soft targets (B, num_labels), e.g. self-training's probabilities
        return F.cross_entropy(logits, labels.to(logits.dtype), reduction=reduction)
    return F.cross_entropy(logits, labels.long(), reduction=reduction)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def check_inputs(config: BertConfig, input_ids: torch.Tensor,
                 token_type_ids: torch.Tensor | None) -> None:
    """Turn the inputs an embedding lookup would choke on into messages that say what is wrong."""
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
        raise MinitfError(f"input_ids must be an integer tensor of shape (batch, seq), got "
                          f"{input_ids.dtype} {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise MinitfError(
            f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
            f"({config.max_position_embeddings}); truncate the input (Tokenizer max_length)")
    vocab = config.vocab_size
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
        bad = input_ids[(input_ids < 0) | (input_ids >= config.vocab_size)][0]
        raise MinitfError(f"token id {int(bad)} is outside the vocabulary (size "
                          f"{config.vocab_size}); was the text tokenized with this model's vocab?")
    if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
        raise MinitfError(f"token_type_ids has shape {tuple(token_type_ids.shape)} but "
                          f"input_ids has {tuple(input_ids.shape)}")
    if token_type_ids is not None and token_type_ids.numel() and (
            int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= config.type_vocab_size):
        raise MinitfError(f"token_type_ids must be in [0, {config.type_vocab_size}); got values "
                          f"up to {int(token_type_ids.max())}")


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


