"""The BERT encoder, top to bottom, in plain PyTorch.

One forward pass, for token ids of shape (B, N):

    embeddings   word + position + token-type vectors, LayerNorm, dropout       → (B, N, C)
    encoder      num_hidden_layers × BertLayer (post-LN):
                   x = LayerNorm(x + Dropout(Wo · Attention(x)))
                   x = LayerNorm(x + Dropout(W2 · GELU(W1 · x)))
    pooler       tanh(W · x[:, 0])  — the [CLS] vector                        → (B, C)

Module and parameter names mirror Hugging Face's BERT checkpoints exactly
(`encoder.layer.3.attention.self.query.weight`, ...), so loading is a checked copy of a dict
(minitf/weights.py) rather than a renaming exercise. The attention formula itself lives in
minitf/attention.py, with its backends ("reference", "sdpa", "triton") side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitf.attention import attention_weights, get_attention
from minitf.config import BertConfig
from minitf.errors import MinitfError

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        # (B, N, C) → (B, H, N, D): each head sees its own D = C / H slice of the projections.
        q, k, v = (proj(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))

        dropout_p = self.dropout_p if self.training else 0.0
        weights = None
        if output_attentions:
            # Keep the (B, H, N, N) probabilities to hand back: the reference path, spelled out.
            weights = attention_weights(q, k, key_padding_mask=mask)
            out = torch.matmul(F.dropout(weights, dropout_p), v)               # (B, H, N, D)
        else:
            attend = get_attention(self.backend)
            out = attend(q, k, v, key_padding_mask=mask, dropout_p=dropout_p)  # (B, H, N, D)

        # Merge heads back: (B, H, N, D) → (B, N, H·D) = (B, N, C).
        return out.transpose(1, 2).reshape(B, N, C), weights


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.self(x, mask, output_attentions)
        return self.output(attended, residual=x), weights


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
    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        self.attention = BertAttention(config, backend)
        self.intermediate = BertIntermediate(config)
        self.output = BertAddNorm(config.intermediate_size, config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weights = self.attention(x, mask, output_attentions)
        if mask is None:
            return self.output(self.intermediate(x), residual=x), weights
        # The feed-forward (two thirds of a layer's arithmetic) acts on each token alone, so it
        # runs on the real tokens only: (T, C) with T = mask.sum(), not (B, N, C). Padding
        # positions keep their attention output; nothing reads them (they are masked as keys),
        # and their values in last_hidden_state are meaningless, as in any padded BERT.
        real = x[mask]                                              # (T, C)
        out = x.clone()
        out[mask] = self.output(self.intermediate(real), residual=real)
        return out, weights


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, backend: str):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, backend)
                                   for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # the [CLS] position, (B, C)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor              # (B, N, C)
    pooler_output: torch.Tensor                  # (B, C)
    attentions: tuple[torch.Tensor, ...] | None  # per layer (B, H, N, N), when asked for


@dataclass
class ClassifierOutput:
    logits: torch.Tensor                         # (B, num_labels)
    loss: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BertModel(nn.Module):
    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__()
        get_attention(attn_backend)  # fail now, not at the first forward, on a bad name
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, attn_backend)
        self.pooler = BertPooler(config)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    @property
    def attn_backend(self) -> str:
        return self.encoder.layer[0].attention.self.backend

    def set_attn_backend(self, backend: str) -> None:
        get_attention(backend)
        for layer in self.encoder.layer:
            layer.attention.self.backend = backend

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_attentions: bool = False
                ) -> EncoderOutput:
        check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None if attention_mask is None else key_padding_mask(attention_mask)

        x = self.embeddings(input_ids, token_type_ids)  # (B, N, C)
        attentions = []
        for layer in self.encoder.layer:
            x, weights = layer(x, mask, output_attentions)
            attentions.append(weights)
        return EncoderOutput(x, self.pooler(x), tuple(attentions) if output_attentions else None)

    @classmethod
    def from_pretrained(cls, path: str | Path, attn_backend: str = "auto") -> BertModel:
        """Load a Hugging Face BERT directory (config.json + model.safetensors)."""
        from minitf.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors in the Hugging Face layout."""
        from minitf.weights import save_pretrained
        save_pretrained(self, directory)


class BertForSequenceClassification(nn.Module):
    """BERT + dropout + a linear layer on the pooled [CLS] vector, as Hugging Face's."""

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config, attn_backend)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False) -> ClassifierOutput:
        encoded = self.bert(input_ids, attention_mask, token_type_ids, output_attentions)
        logits = self.classifier(self.dropout(encoded.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:  # one output: regression, as Hugging Face does
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return ClassifierOutput(logits, loss, encoded.attentions)

    @classmethod
    def from_pretrained(cls, path: str | Path, num_labels: int | None = None,
                        attn_backend: str = "auto", allow_missing_head: bool = False
                        ) -> BertForSequenceClassification:
        """Load a BERT directory as a classifier.

        A base checkpoint (no `classifier.*` tensors) is only accepted with
        allow_missing_head=True, which starts a freshly initialised head for fine-tuning.
        """
        from minitf.weights import load_pretrained
        return load_pretrained(cls, path, attn_backend=attn_backend, num_labels=num_labels,
                               allow_missing_head=allow_missing_head)

    def save_pretrained(self, directory: str | Path) -> None:
        from minitf.weights import save_pretrained
        save_pretrained(self, directory)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) for weights, zero biases, identity LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def check_inputs(config: BertConfig, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None) -> None:
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
    for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if t is not None and t.shape != input_ids.shape:
            raise MinitfError(f"{name} has shape {tuple(t.shape)} but input_ids has "
                              f"{tuple(input_ids.shape)}")
    if token_type_ids is not None and token_type_ids.numel() and (
            int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= config.type_vocab_size):
        raise MinitfError(f"token_type_ids must be in [0, {config.type_vocab_size}); got values "
                          f"up to {int(token_type_ids.max())}")


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The attention key-padding mask, True = a real token; None when nothing is padded (the
    unmasked attention kernels are faster, and the feed-forward then needs no unpadding)."""
    return None if bool(attention_mask.all()) else attention_mask.bool()


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)




def classification_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
                        ) -> torch.Tensor:
    """The sequence-classification loss: MSE on logits[:, 0] when num_labels == 1 (regression,
    as Hugging Face does), else cross-entropy with labels as class ids."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype), reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)
