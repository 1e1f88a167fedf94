"""BERT's WordPiece tokenizer, matching Hugging Face's Rust `BertTokenizerFast` id for id.

    tok = Tokenizer.from_pretrained("path/to/model")      # a directory holding vocab.txt
    batch = tok(["I love it!", "Ångström"], max_length=128) # input_ids, attention_mask, ...

Text becomes ids in four steps, in the same order as the reference:

1. Special tokens written in the raw text ("[SEP]", "[MASK]", ...) are cut out first, exactly
   as written (case-sensitive), and become their own ids.
2. Normalisation: control and format characters are deleted, whitespace becomes " ", CJK
   ideographs get spaces around them; then (uncased vocabularies) accents are stripped by
   decomposing to NFD and dropping non-spacing marks, and the text is lower-cased.
3. Pre-tokenisation: split on whitespace, and every punctuation character becomes a word.
4. WordPiece: each word is split greedily into the longest vocabulary entries, continuation
   pieces spelled "##piece". A word with an unmatchable part, or over 100 characters, is [UNK].

Why the Unicode tables (minitf/unicode_tables.py) are spelled out instead of asking
`unicodedata`: the reference classifies characters with the Rust `unicode_categories` crate,
whose tables are from Unicode 8.0, while Python's `unicodedata` follows the interpreter
(Unicode 14 on Python 3.11). Newer punctuation, marks and format characters are therefore
treated differently, and unassigned code points are kept (usually ending up as [UNK]) where
the old pure-Python BertTokenizer deletes them. tests/test_tokenizer.py checks every assigned
code point against the reference.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from minitf.errors import MinitfError
from minitf.unicode_tables import (
    CJK,
    NEW_LOWERCASE,
    NFD_KEEP,
    NONSPACING_MARKS,
    PUNCTUATION,
    REMOVED,
    WHITESPACE,
)

# The reference's WordPiece decoder tidies each decoded token with these replacements, in order.
_DECODE_CLEANUP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)

_MAX_WORD_CHARS = 100  # longer words become [UNK] without trying WordPiece
_WORD_CACHE_SIZE = 1 << 17  # distinct words remembered before the cache starts over


class _CharSet:
    """A set of code points given as hex ranges ("41-5A 61"), with a bisect membership test."""

    def __init__(self, spec: str) -> None:
        self.starts, self.ends = [], []
        for item in spec.split():
            first, _, last = item.partition("-")
            self.starts.append(int(first, 16))
            self.ends.append(int(last or first, 16))

    def __contains__(self, char: str) -> bool:
        cp = ord(char)
        i = bisect.bisect_right(self.starts, cp) - 1
        return i >= 0 and cp <= self.ends[i]


_REMOVED_SET, _WHITESPACE_SET, _CJK_SET = _CharSet(REMOVED), _CharSet(WHITESPACE), _CharSet(CJK)
_PUNCTUATION_SET, _MARK_SET = _CharSet(PUNCTUATION), _CharSet(NONSPACING_MARKS)


class _CharMap(dict):
    """A `str.translate` table that works out a character's replacement the first time it is
    seen and remembers it, so the per-character rules run once per distinct character, not
    once per character of text."""

    def __init__(self, rule: Callable[[str], str]) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, cp: int) -> str:
        self[cp] = replacement = self.rule(chr(cp))
        return replacement


class Tokenizer:
    """WordPiece tokenizer for BERT-family models; see the module docstring for the steps."""

    def __init__(
        self, vocab: Sequence[str], *, do_lower_case: bool = True,
        strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
        model_max_length: int = 512, unk_token: str = "[UNK]", sep_token: str = "[SEP]",
        pad_token: str = "[PAD]", cls_token: str = "[CLS]", mask_token: str | None = "[MASK]",
        extra_special_tokens: Sequence[str] = (),
    ) -> None:
        """`vocab` lists the tokens in id order, one per line of vocab.txt."""
        if len(vocab) == 0:
            raise MinitfError("the vocabulary is empty: vocab.txt must list one token per line")
        self._tokens = list(vocab)
        # A token listed twice keeps its last id, as in Hugging Face's load_vocab().
        self._vocab = {token: i for i, token in enumerate(self._tokens)}
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self.special_tokens = {
            "unk_token": unk_token, "sep_token": sep_token, "pad_token": pad_token,
            "cls_token": cls_token, "mask_token": mask_token,
        }
        self.extra_special_tokens = list(extra_special_tokens)
        for name in ("unk_token", "sep_token", "pad_token", "cls_token"):
            if self.special_tokens[name] is None:
                raise MinitfError(f"{name} is not set; BERT needs [UNK], [SEP], [PAD] and [CLS]")
        specials = [t for t in [*self.special_tokens.values(), *extra_special_tokens] if t]
        for token in specials:
            if token not in self._vocab:
                raise MinitfError(
                    f"special token {token!r} is not in the vocabulary; add it to vocab.txt or "
                    "name a token the vocabulary has in tokenizer_config.json"
                )
        self._special_ids = {self._vocab[t] for t in specials}
        # Longest first, so that at one position the longest special token wins, as in the
        # reference's leftmost-longest matcher. The group keeps the matches in re.split().
        alternatives = "|".join(re.escape(t) for t in sorted(set(specials), key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})")

        # Accents follow lower-casing unless configured, as in the original BERT.
        self._strip = do_lower_case if strip_accents is None else strip_accents
        self._clean_map = _CharMap(self._clean_char)
        self._word_map = _CharMap(self._finish_char)
        self._word_cache: dict[str, tuple[int, ...]] = {}

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Tokenizer:
        """Load from a Hugging Face-layout directory: vocab.txt, and optionally
        tokenizer_config.json and special_tokens_map.json."""
        folder = Path(path)
        if not folder.is_dir():
            raise MinitfError(
                f"tokenizer directory {str(folder)!r} does not exist or is not a directory; "
                "pass the folder that holds vocab.txt"
            )
        vocab_file = folder / "vocab.txt"
        if not vocab_file.is_file():
            raise MinitfError(f"{vocab_file} is missing: a WordPiece tokenizer needs vocab.txt")
        try:
            # Same reading as Hugging Face's load_vocab(): lines without their "\n".
            with open(vocab_file, encoding="utf-8") as f:
                tokens = [line.rstrip("\n") for line in f]
        except (OSError, UnicodeDecodeError) as e:
            raise MinitfError(f"cannot read {vocab_file} as UTF-8 text: {e}") from e
        if not tokens:
            raise MinitfError(f"{vocab_file} is empty; it must list one token per line")

        config = _read_json(folder / "tokenizer_config.json")
        # special_tokens_map.json wins over tokenizer_config.json, as in transformers.
        config.update(_read_json(folder / "special_tokens_map.json"))
        model_max_length = config.get("model_max_length") or 512
        if not isinstance(model_max_length, (int, float)) or model_max_length < 2:
            raise MinitfError(
                f"model_max_length={model_max_length!r} in {folder / 'tokenizer_config.json'} "
                "must be a number of at least 2"
            )
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens")
        try:
            return cls(
                tokens,
                do_lower_case=bool(config.get("do_lower_case", True)),
                strip_accents=config.get("strip_accents"),
                tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                # Configs without a limit store 1e30; no BERT has more than 512 positions.
                model_max_length=int(min(model_max_length, 1 << 31)),
                **{name: _token_text(config.get(name, default)) for name, default in (
                    ("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                    ("cls_token", "[CLS]"), ("mask_token", "[MASK]"))},
                extra_special_tokens=[_token_text(t) for t in extra or []],
            )
        except MinitfError as e:
            raise MinitfError(f"{folder}: {e}") from None

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write vocab.txt, tokenizer_config.json and special_tokens_map.json, loadable by this
        class and by transformers' BertTokenizerFast."""
        folder = Path(path)
        special_map = {k: v for k, v in self.special_tokens.items() if v is not None}
        if self.extra_special_tokens:
            special_map["extra_special_tokens"] = self.extra_special_tokens
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
            **special_map,
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "vocab.txt").write_text(
                "".join(t + "\n" for t in self._tokens), encoding="utf-8"
            )
            for name, content in (("tokenizer_config.json", config),
                                  ("special_tokens_map.json", special_map)):
                (folder / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise MinitfError(f"cannot save the tokenizer to {folder}: {e}") from e

    # ------------------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def unk_token_id(self) -> int:
        return self._vocab[self.special_tokens["unk_token"]]

    @property
    def sep_token_id(self) -> int:
        return self._vocab[self.special_tokens["sep_token"]]

    @property
    def pad_token_id(self) -> int:
        return self._vocab[self.special_tokens["pad_token"]]

    @property
    def cls_token_id(self) -> int:
        return self._vocab[self.special_tokens["cls_token"]]

    @property
    def mask_token_id(self) -> int | None:
        mask = self.special_tokens["mask_token"]
        return None if mask is None else self._vocab[mask]

    # ----------------------------------------------------------------------- public calls

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        max_length: int | None = None,
        padding: bool = True,
        truncation: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode a batch into int64 tensors `input_ids`, `attention_mask` and `token_type_ids`
        of shape (batch, longest). Padding goes on the right, with attention_mask 0 there.
        `max_length` defaults to min(512, model_max_length); pairs are truncated longest-first.
        """
        texts = _as_list(texts, "texts")
        pairs = None if text_pairs is None else _as_list(text_pairs, "text_pairs")
        if pairs is not None and len(pairs) != len(texts):
            raise MinitfError(
                f"got {len(texts)} texts but {len(pairs)} text_pairs; give one pair per text"
            )
        if not texts:
            raise MinitfError("texts is empty; give at least one text to encode")
        rows = [
            self._build(t, None if pairs is None else pairs[i], max_length, truncation, i)
            for i, t in enumerate(texts)
        ]
        longest = max(len(ids) for ids, _ in rows)
        if not padding and any(len(ids) != longest for ids, _ in rows):
            raise MinitfError(
                f"padding=False, but the texts encode to lengths from "
                f"{min(len(ids) for ids, _ in rows)} to {longest}, and a tensor cannot be "
                "ragged; pass padding=True, or call encode() per text for plain lists"
            )
        # Fill the real positions (row-major, as boolean-mask assignment goes) in one step each:
        # far faster than torch.tensor() on a padded list of lists.
        lengths = torch.tensor([len(ids) for ids, _ in rows])
        attention_mask = torch.arange(longest) < lengths[:, None]
        input_ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.int64)
        input_ids[attention_mask] = torch.tensor([i for ids, _ in rows for i in ids])
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[attention_mask] = torch.tensor([t for _, types in rows for t in types])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask.long(),
            "token_type_ids": token_type_ids,
        }

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        max_length: int | None = None,
        truncation: bool = True,
    ) -> list[int]:
        """Ids of one text (or pair) with [CLS] ... [SEP] (... [SEP]) around them."""
        _as_list(text, "text")
        if text_pair is not None:
            _as_list(text_pair, "text_pair")
        return self._build(text, text_pair, max_length, truncation, 0)[0]

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece strings of `text`, without added [CLS]/[SEP]."""
        return [self._tokens[i] for i in self._ids(text)]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Turn ids back into text the way the reference does: pieces joined by spaces,
        "##" continuations glued on, no space before . , ! ?"""
        if isinstance(ids, torch.Tensor):
            if ids.dim() > 1:
                raise MinitfError(
                    f"decode() takes one sequence of ids, got a tensor of shape "
                    f"{tuple(ids.shape)}; decode each row separately"
                )
            ids = ids.tolist()
        words = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._tokens):
                raise MinitfError(f"id {i!r} is not in the vocabulary (0..{len(self._tokens) - 1})")
            if not (skip_special_tokens and i in self._special_ids):
                words.append(self._tokens[i])
        pieces = []
        for n, token in enumerate(words):
            if n > 0:
                token = token[2:] if token.startswith("##") else " " + token
            for old, new in _DECODE_CLEANUP:
                token = token.replace(old, new)
            pieces.append(token)
        return "".join(pieces)

    def split_words(self, text: str) -> list[str]:
        """Steps 2-3 of the module docstring: the words that WordPiece sees. Special tokens are
        not treated specially here."""
        text = text.translate(self._clean_map)
        # NFD runs on the whole text (not per character) because it may reorder marks.
        if self._strip and not text.isascii():
            text = _nfd(text)
        return text.translate(self._word_map).split()

    # ------------------------------------------------------------------------- internals

    def _clean_char(self, char: str) -> str:
        """Normalisation before accent stripping: delete, turn into " ", or pad CJK."""
        if char in _REMOVED_SET:
            return ""
        if char in _WHITESPACE_SET:
            return " "
        if self.tokenize_chinese_chars and char in _CJK_SET:
            return f" {char} "
        return char

    def _finish_char(self, char: str) -> str:
        """Drop a non-spacing mark, lower-case, then pad punctuation with spaces."""
        if self._strip and char in _MARK_SET:
            return ""
        if self.do_lower_case:
            # Per character, like the reference: a word-final "Σ" becomes "σ", not "ς".
            new = NEW_LOWERCASE.get(ord(char))
            char = char.lower() if new is None else chr(new)
        return "".join(f" {c} " if c in _PUNCTUATION_SET else c for c in char)

    def _ids(self, text: str) -> list[int]:
        """Token ids of a text, special tokens in it included, nothing added around."""
        ids: list[int] = []
        cache = self._word_cache
        # re.split with a group alternates plain text (even places) and special tokens (odd).
        for n, part in enumerate(self._special_re.split(text)):
            if n % 2:
                ids.append(self._vocab[part])
                continue
            for word in self.split_words(part):
                pieces = cache.get(word)
                if pieces is None:
                    if len(cache) >= _WORD_CACHE_SIZE:
                        cache.clear()
                    pieces = cache[word] = self._wordpiece(word)
                ids.extend(pieces)
        return ids

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first split of one word into vocabulary ids."""
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk_token_id,)
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._vocab:
                    pieces.append(self._vocab[piece])
                    start = end
                    break
            else:  # no prefix of the rest is in the vocabulary: the whole word is unknown
                return (self.unk_token_id,)
        return tuple(pieces)

    def _build(
        self, text: str, pair: str | None, max_length: int | None, truncation: bool, index: int
    ) -> tuple[list[int], list[int]]:
        """[CLS] a [SEP] (b [SEP]) with token_type_ids, truncated to max_length."""
        limit = min(512, self.model_max_length) if max_length is None else max_length
        n_special = 2 if pair is None else 3
        if not isinstance(limit, int) or limit < n_special:
            what = "a single text" if pair is None else "a text pair"
            raise MinitfError(
                f"max_length={limit!r} is too small: {what} needs {n_special} positions for "
                f"[CLS] and [SEP] alone; pass max_length >= {n_special}"
            )
        a = self._ids(text)
        b = [] if pair is None else self._ids(pair)
        length = len(a) + len(b) + n_special
        if length > limit:
            if not truncation:
                raise MinitfError(
                    f"text {index} encodes to {length} tokens (with [CLS]/[SEP]), more than "
                    f"max_length={limit}; pass truncation=True or a larger max_length"
                )
            if pair is None:
                a = a[: limit - n_special]
            else:
                keep_a, keep_b = _longest_first(len(a), len(b), limit - n_special)
                a, b = a[:keep_a], b[:keep_b]
        cls, sep = self.cls_token_id, self.sep_token_id
        ids = [cls, *a, sep]
        types = [0] * len(ids)
        if pair is not None:
            ids += [*b, sep]
            types += [1] * (len(b) + 1)
        return ids, types


def _longest_first(n_a: int, n_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text of a pair to keep, copying the reference's LongestFirst
    rule: the shorter text stays whole if the longer one can absorb the cut; otherwise each
    gets half the budget, the odd token going to the longer text (to the second on a tie)."""
    short, long_ = sorted((n_a, n_b))
    keep_short = short
    keep_long = short if short > budget else max(short, budget - short)
    if keep_short + keep_long > budget:
        keep_short, keep_long = budget // 2, budget // 2 + budget % 2
    return (keep_long, keep_short) if n_a > n_b else (keep_short, keep_long)


def _nfd(text: str) -> str:
    """Canonical decomposition, except for the characters in NFD_KEEP."""
    if NFD_KEEP not in text:
        return unicodedata.normalize("NFD", text)
    # U+11938 is a starter (combining class 0): NFD never reorders across it, so the pieces
    # around it can be decomposed on their own.
    return NFD_KEEP.join(unicodedata.normalize("NFD", part) for part in text.split(NFD_KEEP))


def _as_list(texts: object, name: str) -> list[str]:
    """Accept one string or a sequence of strings; name the offending argument otherwise."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (list, tuple)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise MinitfError(f"{name}[{i}] is a {type(t).__name__}, not a str")
        return list(texts)
    raise MinitfError(f"{name} must be a str or a list of str, not {type(texts).__name__}")


def _read_json(file: Path) -> dict:
    """An optional JSON settings file: {} if absent, MinitfError if unreadable."""
    if not file.exists():
        return {}
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MinitfError(f"cannot read {file}: {e}; fix or delete the file") from e
    if not isinstance(content, dict):
        raise MinitfError(f"{file} must hold a JSON object, not {type(content).__name__}")
    return content


def _token_text(value: object) -> str | None:
    """A special token from a config: a plain string or a serialised AddedToken dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise MinitfError(f"cannot read a special token from {value!r}; expected a string")
