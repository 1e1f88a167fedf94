"""Small stand-ins for the fine-tuning tests: a whitespace tokenizer with minitf's Tokenizer
API, a tiny random classifier directory, and a toy sentiment corpus that a tiny model learns."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from minitf.model.bert import BertForSequenceClassification
from minitf.model.config import BertConfig

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "lovely", "happy", "superb"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "ugly"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "film", "plot", "and", "story", "it"]


class FakeTokenizer:
    """Lower-cased whitespace words; the call/encode/save API of
    minitf.tokenizers.wordpiece.Tokenizer."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.pad_token_id, self.cls_token_id, self.sep_token_id = 0, 2, 3

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> FakeTokenizer:
        return cls(Path(directory, "vocab.txt").read_text().splitlines())

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory, "vocab.txt").write_text("\n".join(self.vocab) + "\n")

    def _ids(self, text: str) -> list[int]:
        return [self.index.get(w, 1) for w in text.lower().split()]

    def encode(self, text: str, text_pair: str | None = None, max_length: int = 512,
               truncation: bool = True) -> list[int]:
        return self._encode(text, text_pair, max_length)[0]

    def _encode(self, text: str, pair: str | None, max_length: int) -> tuple[list[int], list[int]]:
        a = self._ids(text)
        b = self._ids(pair) if pair is not None else []
        budget = max_length - (3 if pair is not None else 2)
        while len(a) + len(b) > budget:  # longest-first truncation
            (a if len(a) >= len(b) else b).pop()
        ids = [2, *a, 3] + ([*b, 3] if pair is not None else [])
        types = [0] * (len(a) + 2) + ([1] * (len(b) + 1) if pair is not None else [])
        return ids, types

    def __call__(self, texts, text_pairs=None, max_length: int = 512, padding: bool = True,
                 truncation: bool = True) -> dict[str, torch.Tensor]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = text_pairs if text_pairs is not None else [None] * len(texts)
        rows = [self._encode(t, p, max_length) for t, p in zip(texts, pairs, strict=True)]
        n = max(len(ids) for ids, _ in rows)
        out = {k: torch.zeros(len(rows), n, dtype=torch.int64)
               for k in ("input_ids", "attention_mask", "token_type_ids")}
        for r, (ids, types) in enumerate(rows):
            out["input_ids"][r, :len(ids)] = torch.tensor(ids)
            out["token_type_ids"][r, :len(ids)] = torch.tensor(types)
            out["attention_mask"][r, :len(ids)] = 1
        return out


def toy_rows(n: int, seed: int = 0, labels: tuple[str, str] = ("neg", "pos")
             ) -> list[tuple[str, str]]:
    """(text, label) rows: the label is given away by one sentiment word among fillers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
        rows.append((" ".join(words), labels[positive]))
    return rows


def tiny_model_dir(path: Path, layers: int = 2, hidden: int = 32, seed: int = 0,
                   dropout: float = 0.1, head: bool = True) -> Path:
    """A random BERT (hidden 32, 2 layers, 2 heads) saved with its vocab: as a 2-label
    classifier, or (head=False) as a base model without a classifier."""
    torch.manual_seed(seed)
    vocab = SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER))
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=64, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    model = BertForSequenceClassification(config)
    (model if head else model.bert).save_pretrained(path)
    FakeTokenizer(vocab).save_pretrained(path)
    return path


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path
