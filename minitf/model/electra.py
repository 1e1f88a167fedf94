"""ELECTRA's replaced-token detection (Clark et al., 2020): a small generator, a discriminator.

One training forward pass, for BERT-masked blocks (minitf/data/mlm.py):

    input_ids (B, L), labels (B, L)   labels: the original id at each chosen position, -100
                                      elsewhere
    generator      BertForMaskedLM → masked-LM loss at the M chosen positions, logits (M, V)
    sample         one token per chosen position from softmax(logits), without gradient;
                   the recipe seeds each block's draws by (seed, split, epoch, block), as its
                   masks, so they do not depend on batch size, resume or processes
    corrupted      the original text with the chosen positions replaced by the samples  (B, L)
    replaced       corrupted != original: a sample equal to the original is "original"   (B, L)
    discriminator  BertModel (no pooler) + ElectraDiscriminatorHead → one logit a token  (B, L)
    disc loss      binary cross-entropy of the logits against `replaced`, over the real
                   (non-[PAD]) tokens, [CLS] and [SEP] included, as ELECTRA's
    loss           mlm + DISC_WEIGHT × disc, per block

The generator shares the discriminator's embeddings (word, position, token type and their
LayerNorm: one module, so one tensor each), as ELECTRA does; so it has the same hidden size,
and is made small by depth: GENERATOR_LAYERS_DIVISOR times fewer layers (at least one), the
same heads and intermediate size. No gradient flows from the discriminator into the generator
through the samples (they are drawn, not differentiated); the shared embeddings get both.

On disk (`Electra.writer`, `Electra.from_pretrained`), a directory holds
    config.json, model.safetensors             the discriminator as a plain Hugging Face
                                               BertModel (`transformers.AutoModel` loads it)
    discriminator_head.safetensors             the head, `discriminator_predictions.*` (the
                                               names of transformers' ElectraForPreTraining)
    generator/                                 the generator, a BertForMaskedLM directory
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from minitf.errors import MinitfError
from minitf.model.bert import (
    ACTIVATIONS,
    BertForMaskedLM,
    BertModel,
    init_weights,
)
from minitf.model.config import BertConfig
from minitf.model.weights import save_safetensors

IGNORE_INDEX = -100             # labels of the positions the generator does not predict
DISC_WEIGHT = 50.0              # λ of ELECTRA's loss: mlm + λ · disc (Clark et al., §2)
GENERATOR_LAYERS_DIVISOR = 3    # generator layers = max(1, discriminator layers // 3)
HEAD_FILE = "discriminator_head.safetensors"
GENERATOR_DIR = "generator"


def generator_config(config: BertConfig) -> BertConfig:
    """The generator's shape for a discriminator of `config`: the same but shallower."""
    layers = max(1, config.num_hidden_layers // GENERATOR_LAYERS_DIVISOR)
    return replace(config, num_hidden_layers=layers, id2label={})


class Discriminator(BertModel):
    """The discriminator's encoder: a BertModel without a pooler (ELECTRA trains none), saved
    as "BertModel" so that transformers and `minitf finetune` take it as a BERT encoder."""

    architecture = "BertModel"

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__(config, attn_backend, add_pooling_layer=False)


class ElectraDiscriminatorHead(nn.Module):
    """hidden (B, L, C) → dense C→C, activation, dense C→1 → one logit per token (B, L);
    transformers' ElectraDiscriminatorPredictions."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.dense_prediction = nn.Linear(config.hidden_size, 1)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(hidden))).squeeze(-1)


@dataclass
class ElectraOutput:
    loss: torch.Tensor          # (B,) per block: mlm + DISC_WEIGHT × disc
    mlm_loss: torch.Tensor      # (B,) mean cross-entropy over the block's chosen tokens
    disc_loss: torch.Tensor     # (B,) mean binary cross-entropy over the block's real tokens
    token_loss: torch.Tensor    # (M,) the generator's cross-entropy at each chosen token
    right: torch.Tensor         # (M,) the generator's argmax is the original token
    disc_logits: torch.Tensor   # (B, L) > 0: predicted "replaced"
    replaced: torch.Tensor      # (B, L) bool, the discriminator's labels
    real: torch.Tensor          # (B, L) bool, not [PAD]


def corrupt(input_ids: torch.Tensor, labels: torch.Tensor, sampled: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(original, corrupted, replaced), each (B, L): the text before masking, the text with
    the chosen positions (labels != -100, in row-major order) set to `sampled` (M,), and
    where the two differ."""
    chosen = labels != IGNORE_INDEX                                          # (B, L)
    original = torch.where(chosen, labels, input_ids)                        # (B, L)
    corrupted = original.clone()
    corrupted[chosen] = sampled
    return original, corrupted, corrupted != original


class Electra(nn.Module):
    """The generator and the discriminator (with its head), their embeddings shared."""

    def __init__(self, generator: BertForMaskedLM, discriminator: Discriminator,
                 head: ElectraDiscriminatorHead | None = None):
        super().__init__()
        g, d = generator.config, discriminator.config
        for name in ("vocab_size", "hidden_size", "max_position_embeddings", "type_vocab_size",
                     "pad_token_id"):
            if getattr(g, name) != getattr(d, name):
                raise MinitfError(f"the generator's {name} is {getattr(g, name)} but the "
                                  f"discriminator's is {getattr(d, name)}; ELECTRA shares the "
                                  "embeddings, so they must be equal")
        # One embedding module: the generator's becomes the discriminator's (and so does its
        # output projection, tied to the word embeddings).
        generator.bert.embeddings = discriminator.embeddings
        generator.cls.predictions.decoder.weight = discriminator.embeddings.word_embeddings.weight
        self.generator, self.discriminator = generator, discriminator
        self.discriminator_predictions = head or ElectraDiscriminatorHead(d)

    @property
    def config(self) -> BertConfig:
        return self.discriminator.config

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                seeds: Sequence[int] | None = None) -> ElectraOutput:
        """Masked blocks (B, L) and their labels → both losses (see the module docstring).
        `seeds`: one per block, seeding the draws of its samples (None: torch's global RNG)."""
        real = input_ids != self.config.pad_token_id                            # (B, L)
        mask = None if bool(real.all()) else real.long()
        gen = self.generator(input_ids=input_ids, attention_mask=mask, labels=labels)
        chosen = labels != IGNORE_INDEX                                          # (B, L)
        sampled = sample(gen.logits, chosen.sum(1).tolist(), seeds)             # (M,)
        _, corrupted, replaced = corrupt(input_ids, labels, sampled)
        hidden = self.discriminator(corrupted, attention_mask=mask).last_hidden_state
        logits = self.discriminator_predictions(hidden)                          # (B, L)
        bce = F.binary_cross_entropy_with_logits(logits.float(), replaced.float(),
                                                 reduction="none") * real        # (B, L)
        disc = bce.sum(1) / real.sum(1).clamp(min=1)                             # (B,)
        row = chosen.nonzero()[:, 0]                                             # (M,)
        sums = torch.zeros(len(input_ids), device=input_ids.device)
        mlm = sums.index_add_(0, row, gen.token_loss) / chosen.sum(1).clamp(min=1)
        right = gen.logits.argmax(-1) == labels[chosen]
        return ElectraOutput(mlm + DISC_WEIGHT * disc, mlm, disc, gen.token_loss.detach(),
                             right, logits.detach(), replaced, real)

    # -- directories ----------------------------------------------------------------------

    @classmethod
    def new(cls, config: BertConfig, attn_backend: str = "auto") -> Electra:
        """A randomly initialised pair: the discriminator of `config`, its generator."""
        discriminator = Discriminator(config, attn_backend)
        generator = BertForMaskedLM(generator_config(config), attn_backend)
        return cls(generator, discriminator)

    @classmethod
    def from_pretrained(cls, path: str | Path, attn_backend: str = "auto") -> Electra:
        """An ELECTRA directory (see the module docstring). A missing head file starts a
        fresh head; a missing generator/ is an error."""
        directory = Path(path)
        if not (directory / GENERATOR_DIR / "config.json").is_file():
            raise MinitfError(
                f"{directory}: no {GENERATOR_DIR}/ folder, so this is not an ELECTRA model and "
                "there is no generator to continue from; continue pre-training it with "
                "--objective mlm, or start ELECTRA from scratch with --tokenizer "
                f"{directory} (and --config / --layers ...) instead of --model")
        discriminator = Discriminator.from_pretrained(directory, attn_backend=attn_backend)
        generator = BertForMaskedLM.from_pretrained(directory / GENERATOR_DIR,
                                                    attn_backend=attn_backend,
                                                    dtype=discriminator.embeddings
                                                    .word_embeddings.weight.dtype)
        head = ElectraDiscriminatorHead(discriminator.config)
        if (directory / HEAD_FILE).is_file():
            load_head(head, directory / HEAD_FILE)
        return cls(generator, discriminator, head.to(discriminator.embeddings
                                                     .word_embeddings.weight.dtype))

    def writer(self, tokenizer: Any = None) -> Callable[[Path], None]:
        """A writer of the ELECTRA directory (and the tokenizer's files at both levels)."""
        def write(directory: Path) -> None:
            self.write_discriminator(directory, tokenizer)
            self.write_generator(directory / GENERATOR_DIR, tokenizer)
        return write

    def write_discriminator(self, directory: Path, tokenizer: Any = None) -> None:
        """The top level: the encoder, its head file, the tokenizer."""
        self.discriminator.save_pretrained(directory)
        head = {f"discriminator_predictions.{n}": t.detach().contiguous().cpu()
                for n, t in self.discriminator_predictions.state_dict().items()}
        save_safetensors(head, directory / HEAD_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    def write_generator(self, directory: Path, tokenizer: Any = None) -> None:
        self.generator.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)


def sample(logits: torch.Tensor, counts: list[int], seeds: Sequence[int] | None
           ) -> torch.Tensor:
    """One token id from softmax(logits) per row (M, V) → (M,), without gradient. The rows
    are `counts[b]` consecutive rows per block b; with `seeds`, block b's draws come from a
    generator seeded with seeds[b], so they depend neither on the batch nor on the process."""
    with torch.no_grad():
        probs = torch.softmax(logits.detach().float(), dim=-1)                  # (M, V)
        if seeds is None:
            return torch.multinomial(probs, 1).squeeze(1)
        parts = []
        for block, seed in zip(probs.split(counts), seeds, strict=True):
            rng = torch.Generator(device=probs.device).manual_seed(int(seed))
            parts.append(torch.multinomial(block, 1, generator=rng).squeeze(1)
                         if len(block) else block.new_zeros(0, dtype=torch.long))
        return torch.cat(parts)


def load_head(head: ElectraDiscriminatorHead, file: Path) -> None:
    """Fill `head` from a discriminator_head.safetensors, checking names and shapes."""
    try:
        tensors = load_file(file)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise MinitfError(f"{file}: cannot read safetensors ({exc}); copy it again, or delete "
                          "it to start a fresh discriminator head") from None
    names = {n.removeprefix("discriminator_predictions."): t for n, t in tensors.items()}
    expected = head.state_dict()
    if names.keys() != expected.keys() or any(names[n].shape != expected[n].shape
                                              for n in expected):
        found = ", ".join(f"{n} {tuple(t.shape)}" for n, t in tensors.items())
        raise MinitfError(f"{file}: expected the discriminator head's "
                          f"{', '.join(f'{n} {tuple(t.shape)}' for n, t in expected.items())}; "
                          f"found {found}")
    head.load_state_dict(names)
