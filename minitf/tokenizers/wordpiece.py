"""BERT's WordPiece tokenizer, matching Hugging Face's Rust `BertTokenizerFast` id for id.

    tok = Tokenizer.from_pretrained("path/to/model")      # a directory holding vocab.txt
    batch = tok(["I love it!", "Ångström"], max_length=128) # input_ids, attention_mask, ...
    tok = load_tokenizer("path/to/model")   # WordPiece or SentencePiece, from the files present

Batching, pairs, truncation and padding live in minitf/tokenizers/base.py, shared with the
SentencePiece tokenizer (minitf/tokenizers/sentencepiece.py); this module is the WordPiece part.

Text becomes ids in four steps, in the same order as the reference:

1. Special tokens written in the raw text ("[SEP]", "[MASK]", ...) are cut out first, exactly
   as written (case-sensitive), and become their own ids.
2. Normalisation: control and format characters are deleted, whitespace becomes " ", CJK
   ideographs get spaces around them; then (uncased vocabularies) accents are stripped by
   decomposing to NFD and dropping non-spacing marks, and the text is lower-cased.
3. Pre-tokenisation: split on whitespace, and every punctuation character becomes a word.
4. WordPiece: each word is split greedily into the longest vocabulary entries, continuation
   pieces spelled "##piece". A word with an unmatchable part, or over 100 characters, is [UNK].

Why the Unicode tables (minitf/tokenizers/unicode_tables.py) are spelled out instead of asking
`unicodedata`: the reference classifies characters with the Rust `unicode_categories` crate,
whose tables are from Unicode 8.0, while Python's `unicodedata` follows the interpreter
(Unicode 14 on Python 3.11). Newer punctuation, marks and format characters are therefore
treated differently, and unassigned code points are kept (usually ending up as [UNK]) where
the old pure-Python BertTokenizer deletes them. tests/test_tokenizer.py checks every assigned
code point against the reference.
"""

from __future__ import annotations

import bisect
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from minitf.errors import MinitfError
from minitf.paths import resolve_model_dir
from minitf.tokenizers.base import (
    BaseTokenizer,
    lower_char,
    read_settings,
    settings_max_length,
    settings_specials,
    write_settings,
)
from minitf.tokenizers.unicode_tables import (
    CJK,
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


def is_cjk_ideograph(char: str) -> bool:
    """A CJK ideograph: the basic tokenizer splits these apart before WordPiece."""
    return char in _CJK_SET


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


class Tokenizer(BaseTokenizer):
    """WordPiece tokenizer for BERT-family models; see the module docstring for the steps."""

    def __init__(
        self, vocab: Sequence[str], *, do_lower_case: bool = True,
        strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
        model_max_length: int = 512, unk_token: str = "[UNK]", sep_token: str = "[SEP]",
        pad_token: str = "[PAD]", cls_token: str = "[CLS]", mask_token: str | None = "[MASK]",
        extra_special_tokens: Sequence[str] = (),
    ) -> None:
        """`vocab` lists the tokens in id order, one per line of vocab.txt."""
        super().__init__(
            vocab, {"unk_token": unk_token, "sep_token": sep_token, "pad_token": pad_token,
                    "cls_token": cls_token, "mask_token": mask_token},
            extra_special_tokens, model_max_length,
        )
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        # Accents follow lower-casing unless configured, as in the original BERT.
        self._strip = do_lower_case if strip_accents is None else strip_accents
        self._clean_map = _CharMap(self._clean_char)
        self._word_map = _CharMap(self._finish_char)

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Tokenizer:
        """Load from a Hugging Face-layout directory (vocab.txt, and optionally
        tokenizer_config.json and special_tokens_map.json), or a model name that
        minitf.paths.resolve_model_dir knows ("all-MiniLM-L6-v2")."""
        folder = resolve_model_dir(path)
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
        config = read_settings(folder)
        try:
            specials, extra = settings_specials(config)
            return cls(
                tokens,
                do_lower_case=bool(config.get("do_lower_case", True)),
                strip_accents=config.get("strip_accents"),
                tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                model_max_length=settings_max_length(config, folder),
                **specials, extra_special_tokens=extra,
            )
        except MinitfError as e:
            raise MinitfError(f"{folder}: {e}") from None

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write vocab.txt, tokenizer_config.json and special_tokens_map.json, loadable by this
        class and by transformers' BertTokenizerFast."""
        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "vocab.txt").write_text(
                "".join(t + "\n" for t in self._tokens), encoding="utf-8"
            )
        except OSError as e:
            raise MinitfError(f"cannot save the tokenizer to {folder}: {e}") from e
        write_settings(self, folder, {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
        })

    def _join(self, tokens: list[str]) -> str:
        """The reference's WordPiece decoding: pieces joined by spaces, "##" continuations
        glued on, no space before . , ! ?"""
        pieces = []
        for n, token in enumerate(tokens):
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
            char = lower_char(char)
        return "".join(f" {c} " if c in _PUNCTUATION_SET else c for c in char)

    def _words(self, text: str) -> list[str]:
        return self.split_words(text)

    def _split_word(self, word: str) -> tuple[int, ...]:
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


def _nfd(text: str) -> str:
    """Canonical decomposition, except for the characters in NFD_KEEP."""
    if NFD_KEEP not in text:
        return unicodedata.normalize("NFD", text)
    # U+11938 is a starter (combining class 0): NFD never reorders across it, so the pieces
    # around it can be decomposed on their own.
    return NFD_KEEP.join(unicodedata.normalize("NFD", part) for part in text.split(NFD_KEEP))


def load_tokenizer(path: str | os.PathLike) -> BaseTokenizer:
    """The tokenizer of a model directory (or a name resolve_model_dir knows), chosen by the
    files present: spiece.model → SentencePieceTokenizer, vocab.txt → WordPiece Tokenizer."""
    folder = resolve_model_dir(path)
    spiece, vocab = folder / "spiece.model", folder / "vocab.txt"
    wordpiece_class = str(read_settings(folder).get("tokenizer_class") or "").startswith("Bert")
    if spiece.is_file() and not (vocab.is_file() and wordpiece_class):
        from minitf.tokenizers.sentencepiece import SentencePieceTokenizer

        return SentencePieceTokenizer.from_pretrained(folder)
    if vocab.is_file():
        return Tokenizer.from_pretrained(folder)
    raise MinitfError(
        f"{folder} holds no tokenizer: expected vocab.txt (WordPiece) or spiece.model "
        "(SentencePiece); copy the model's tokenizer files there, or train one with "
        "`minitf tokenizer train --input FILE --output DIR`"
    )
