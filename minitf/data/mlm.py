"""Masked-language-model data: documents → packed blocks → dynamically masked batches.

    read_documents(files)     plain text (one document per line) or CSV/TSV/JSONL (a text
                              column): minitf.data.text's, the tokenizer trainer's reader too
    tokenize_documents(...)   token ids per document, without [CLS]/[SEP]
    pack_blocks(docs, L)      one long stream cut into blocks of exactly L tokens:
                                  [CLS] t t t ... [SEP]
    MaskingPolicy.mask(...)   BERT's masking, drawn afresh for every (seed, epoch, block)

Packing (RoBERTa's "full sentences"): documents are laid end to end with a [SEP] between two
documents, and the stream is cut every L − 2 tokens; each piece gets [CLS] in front and [SEP]
behind. So a block may hold the end of one document and the start of the next (the [SEP]
between them marks the boundary), and a long document spans several blocks. Every block is
full — no padding, so no attention mask and no compute spent on pad positions. The last
piece, shorter than L − 2 tokens, is dropped (at most L − 3 tokens of the whole corpus, the
choice of Hugging Face's run_mlm.py too); a corpus shorter than one block is an error.

Masking (Devlin et al., 2019, §3.1): each ordinary token is chosen with probability p
(`--mlm-probability`, 0.15); a chosen token becomes [MASK] 80% of the time, a random ordinary
token 10%, and stays itself 10%. Special tokens ([CLS] [SEP] [PAD] [UNK] [MASK]) are never
chosen and never drawn as the random replacement. Labels are the original ids at the chosen
positions and -100 (ignored by the loss) everywhere else. A block in which no token was chosen
gets one, so every block teaches something. The random draws of a block come from a generator
seeded by (seed, split, epoch, block index): the masks are re-drawn every epoch, do not depend
on batch size, order or the number of processes, and a resumed run sees the very same masks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from minitf.data.text import read_documents
from minitf.errors import MinitfError

IGNORE_INDEX = -100            # label of the positions the loss ignores (PyTorch's default)
TRAIN, VALIDATION = 0, 1       # the "split" part of a block's seed: different masks per split


# ---------------------------------------------------------------------------------------------
# Reading and tokenizing documents
# ---------------------------------------------------------------------------------------------


def tokenize_documents(texts: Iterable[str], tokenizer: Any) -> list[list[int]]:
    """Token ids of each text without the [CLS]/[SEP] that `tokenizer.encode` adds."""
    out = []
    for text in texts:
        ids = tokenizer.encode(text, max_length=1 << 30, truncation=True)
        out.append(ids[1:-1])
    return out


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------


def pack_blocks(documents: Sequence[Sequence[int]], max_length: int, cls_id: int, sep_id: int,
                source: str = "the corpus") -> torch.Tensor:
    """(num_blocks, max_length) int64 blocks, [CLS] ... [SEP], packed as the module says."""
    if max_length < 3:
        raise MinitfError(f"--max-length must be at least 3 ([CLS] text [SEP]), got {max_length}")
    content = max_length - 2
    pieces = []
    for doc in documents:
        if len(doc):
            if pieces:
                pieces.append(np.array([sep_id], dtype=np.int64))  # document boundary
            pieces.append(np.asarray(doc, dtype=np.int64))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    n = len(stream) // content
    if n == 0:
        raise MinitfError(
            f"{source}: {len(stream)} tokens, fewer than one block of --max-length "
            f"{max_length} needs ({content} plus [CLS] and [SEP]); give more text or a smaller "
            "--max-length")
    body = torch.from_numpy(stream[:n * content].reshape(n, content))
    return torch.cat([torch.full((n, 1), cls_id), body, torch.full((n, 1), sep_id)], dim=1)


@dataclass
class Corpus:
    train: torch.Tensor        # (n, L) blocks
    validation: torch.Tensor   # (m, L) blocks
    fingerprint: str
    top_token: int             # the most frequent ordinary token of the training blocks


def load_corpus(files: Sequence[str], tokenizer: Any, policy: MaskingPolicy, max_length: int,
                text_column: str | None = None, validation: str | None = None,
                validation_fraction: float = 0.05, max_eval_blocks: int = 256, seed: int = 0,
                say: Any = print) -> Corpus:
    """Training and validation blocks: `validation` (a file), else a seeded share of the
    documents held out before packing (so no block mixes the two)."""
    docs, sources = [], []
    for file in files:
        texts = read_documents(file, text_column)
        docs += texts
        sources.append(f"{file} ({len(texts):,} documents)")
    held_out = None
    if validation:
        held_out = read_documents(validation, text_column)
    elif validation_fraction > 0:
        order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed))
        cut = max(1, round(validation_fraction * len(docs)))
        if cut >= len(docs):  # else the only document(s) would all go to validation
            raise MinitfError(
                f"{' + '.join(files)}: {len(docs)} document(s), so holding out "
                f"--validation-fraction {validation_fraction:g} of the documents for validation "
                "leaves none to train on; add documents (one per line, or per row), give a "
                "--validation file, or pass --validation-fraction 0")
        held_out = [docs[i] for i in sorted(order[:cut].tolist())]
        docs = [docs[i] for i in sorted(order[cut:].tolist())]
    digest = hashlib.sha1("\x01".join(docs).encode("utf-8", "replace"))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    source = " + ".join(files)
    train = pack_blocks(tokenize_documents(docs, tokenizer), max_length, cls, sep, source)
    held_out_blocks = train[:0]
    if held_out:
        where = validation or (f"the {validation_fraction:.0%} of documents held out of "
                               f"{source} for validation (--validation-fraction)")
        held_out_blocks = pack_blocks(tokenize_documents(held_out, tokenizer), max_length,
                                      cls, sep, where)[:max_eval_blocks]
    counts = torch.bincount(train.flatten(), minlength=policy.vocab_size)
    counts[list(policy.special_ids)] = 0
    say(f"corpus: {', '.join(sources)} → {len(train):,} training blocks of {max_length} "
        f"tokens ({train.numel():,} tokens), {len(held_out_blocks)} validation blocks")
    return Corpus(train, held_out_blocks, digest.hexdigest(), int(counts.argmax()))


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskingPolicy:
    """BERT's 80/10/10 masking for one vocabulary; see the module docstring."""

    vocab_size: int
    mask_id: int
    special_ids: tuple[int, ...]
    probability: float = 0.15
    mask_fraction: float = 0.8     # of the chosen tokens: → [MASK]
    random_fraction: float = 0.1   # → a random ordinary token; the rest stay unchanged

    def __post_init__(self) -> None:
        if not 0.0 < self.probability < 1.0:
            raise MinitfError(f"--mlm-probability must be between 0 and 1, got "
                              f"{self.probability}")
        if not 0 <= self.mask_id < self.vocab_size:
            raise MinitfError(f"[MASK] id {self.mask_id} is outside the vocabulary "
                              f"({self.vocab_size} tokens)")
        if len(self.ordinary_ids) == 0:
            raise MinitfError("the vocabulary has no ordinary tokens to predict")

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, probability: float = 0.15) -> MaskingPolicy:
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise MinitfError("the tokenizer has no [MASK] token, which masked-LM pre-training "
                              "needs; add [MASK] to its vocabulary")
        return cls(tokenizer.vocab_size, tokenizer.mask_token_id, special_ids(tokenizer),
                   probability)

    @cached_property
    def ordinary_ids(self) -> np.ndarray:
        """Ids that may be chosen for masking and drawn as random replacements."""
        keep = np.ones(self.vocab_size, dtype=bool)
        keep[list(self.special_ids)] = False
        return np.flatnonzero(keep)

    def mask_block(self, block: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, labels) of one block of ids, shape (L,) each."""
        candidates = ~np.isin(block, self.special_ids)
        chosen = (rng.random(block.shape) < self.probability) & candidates
        if not chosen.any() and candidates.any():
            chosen[rng.choice(np.flatnonzero(candidates))] = True
        labels = np.where(chosen, block, IGNORE_INDEX)
        action = rng.random(block.shape)  # < 0.8: [MASK]; < 0.9: random; else unchanged
        ordinary = self.ordinary_ids
        random_ids = ordinary[rng.integers(0, len(ordinary), size=block.shape)]
        inputs = np.where(chosen & (action < self.mask_fraction), self.mask_id, block)
        to_random = chosen & (action >= self.mask_fraction) & (
            action < self.mask_fraction + self.random_fraction)
        inputs = np.where(to_random, random_ids, inputs)
        return inputs, labels

    def mask(self, blocks: torch.Tensor, indices: Sequence[int], seed: int, epoch: int,
             split: int = TRAIN) -> dict[str, torch.Tensor]:
        """A batch: blocks[indices] masked, each with its own (seed, split, epoch, index) draw.

        Returns input_ids and labels of shape (B, L), int64.
        """
        rows = blocks[list(indices)].numpy()
        inputs, labels = np.empty_like(rows), np.empty_like(rows)
        for row, index in enumerate(indices):
            rng = np.random.default_rng((seed, split, epoch, int(index)))
            inputs[row], labels[row] = self.mask_block(rows[row], rng)
        return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}


def special_ids(tokenizer: Any) -> tuple[int, ...]:
    """The ids of the tokenizer's special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] and any
    other it declares), sorted."""
    names = ("pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id")
    ids = {getattr(tokenizer, n) for n in names if getattr(tokenizer, n, None) is not None}
    return tuple(sorted(ids | set(getattr(tokenizer, "all_special_ids", ()))))


def epoch_order(num_blocks: int, seed: int, epoch: int) -> list[int]:
    """The blocks of one epoch in a shuffled order that depends only on (seed, epoch)."""
    rng = np.random.default_rng((seed, epoch))
    return rng.permutation(num_blocks).tolist()

