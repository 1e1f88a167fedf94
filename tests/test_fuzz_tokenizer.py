"""Fuzzed tokenizer files: vocab.txt, spiece.model, tokenizer_config.json and
special_tokens_map.json of a tiny WordPiece vocabulary, of MiniLM's real one and of a tiny
SentencePiece model trained here, mutated, must give a tokenizer (load_tokenizer) that encodes
text into ids of its vocabulary, or be refused with a MinitfError naming the directory or file."""

from __future__ import annotations

import json
import random
from pathlib import Path

from fuzzing import Case, fuzz, mutate_bytes, mutate_json

from minitf.paths import packaged_model_dir
from minitf.tokenizers.base import BaseTokenizer
from minitf.tokenizers.training import train_sentencepiece
from minitf.tokenizers.wordpiece import Tokenizer, load_tokenizer

SETTINGS = ("tokenizer_config.json", "special_tokens_map.json")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "film", "was", "good", "bad", "##s", "##ing", "!", ",", "un", "##like", "中"]
# Settings the loaders read (WordPiece and SentencePiece), tried with hostile values.
KEYS = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length",
        "extra_special_tokens", "additional_special_tokens", "tokenizer_class", "unk_token",
        "mask_token", "keep_accents", "remove_space")
SAMPLES = ["The film was good!", "unlike [MASK] films, 中文 [SEP] ok", "", "\u00e9\u0301 \x00"]


def base_dirs(root: Path) -> list[dict[str, bytes]]:
    """The files of a tiny WordPiece tokenizer saved by minitf, of a tiny SentencePiece model
    (0.5 s to train), and of MiniLM's real tokenizer if installed."""
    Tokenizer(SPECIALS + WORDS).save_pretrained(root / "tiny")
    rng = random.Random(0)
    corpus = [" ".join(rng.choices(WORDS[:5] + WORDS[-1:] + ["très", "好"], k=8))
              for _ in range(300)]
    train_sentencepiece(corpus, root / "spm", vocab_size=30)
    dirs = [root / "tiny", root / "spm"]
    if packaged_model_dir() is not None:
        dirs.append(packaged_model_dir())
    names = ("vocab.txt", "spiece.model", *SETTINGS)
    return [{n: (d / n).read_bytes() for n in names if (d / n).is_file()} for d in dirs]


def mutate_vocab(rng: random.Random, content: bytes) -> tuple[str, bytes]:
    """Byte mutations, or lines removed, repeated or replaced (specials included)."""
    lines = content.split(b"\n")
    if rng.random() < 0.5:
        return mutate_bytes(rng, content)
    i = rng.randrange(min(len(lines), 200))
    how = rng.choice(("remove", "repeat", "empty", "crlf", "space", "long"))
    replacement = {"remove": [], "repeat": [lines[i]] * 2, "empty": [b""],
                   "crlf": [lines[i] + b"\r"], "space": [b" " + lines[i] + b" "],
                   "long": [b"x" * 100_000]}[how]
    lines[i:i + 1] = replacement
    return f"vocab line {i + 1}: {how}", b"\n".join(lines)


def check_tokenizer(tok: BaseTokenizer, directory: Path) -> None:
    """A correct load encodes and decodes text, with ids inside the vocabulary."""
    batch = tok(SAMPLES, max_length=32)
    ids = batch["input_ids"]
    assert ids.shape[0] == len(SAMPLES) and 0 <= int(ids.min()) <= int(ids.max()) < tok.vocab_size
    for row in ids.tolist():
        tok.decode(row)


def test_fuzz_tokenizer(tmp_path: Path, fuzz_cases: int | None) -> None:
    bases = base_dirs(tmp_path / "base")

    def make_case(rng: random.Random) -> Case:
        files = dict(rng.choice(bases))
        name = rng.choice(("vocab.txt" if "vocab.txt" in files else "spiece.model", *SETTINGS))
        if name == "vocab.txt":
            what, files[name] = mutate_vocab(rng, files[name])
        elif name == "spiece.model":
            what, files[name] = mutate_bytes(rng, files[name])
        elif name in files:
            what, files[name] = mutate_json(rng, json.loads(files[name]), KEYS)
        else:
            what, files[name] = mutate_json(rng, {"model_max_length": 512}, KEYS)
        return Case(f"{name}: {what}", files)

    fuzz("tokenizer", make_case, load_tokenizer, check_tokenizer, tmp_path, fuzz_cases)
