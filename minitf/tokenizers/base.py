"""What every minitf tokenizer shares, whatever splits its words: WordPiece
(minitf/tokenizers/wordpiece.py) or SentencePiece (minitf/tokenizers/sentencepiece.py).

    ids = tok._ids(text)            special tokens written in the text cut out first, the rest
                                    handed to the subclass's `_text_ids`
    tok(texts, pairs, max_length)   [CLS] a [SEP] (b [SEP]), truncation longest-first, right
                                    padding → input_ids / attention_mask / token_type_ids

A subclass supplies `_text_ids(text)` (ids of plain text with no special tokens in it) and
`_join(tokens)` (the decoded text of a list of token strings); everything else is here, so the
two tokenizers cannot drift apart in how they batch, truncate or pad.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from minitf.errors import MinitfError
from minitf.tokenizers.unicode_tables import NEW_LOWERCASE

WORD_CACHE_SIZE = 1 << 17  # distinct words remembered before the cache starts over
SPECIAL_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                    "cls_token": "[CLS]", "mask_token": "[MASK]"}


class BaseTokenizer:
    """Vocabulary, special tokens and the batch interface; see the module docstring."""

    def __init__(
        self, tokens: Sequence[str], special_tokens: dict[str, str | None],
        extra_special_tokens: Sequence[str] = (), model_max_length: int = 512,
    ) -> None:
        """`tokens` lists the vocabulary in id order; `special_tokens` maps the names of
        SPECIAL_NAMES to token strings (mask_token may be None)."""
        if len(tokens) == 0:
            raise MinitfError("the vocabulary is empty: vocab.txt must list one token per line")
        self._tokens = list(tokens)
        # A token listed twice keeps its last id, as in Hugging Face's load_vocab().
        self._vocab = {token: i for i, token in enumerate(self._tokens)}
        self.model_max_length = model_max_length
        self.special_tokens = {name: special_tokens.get(name) for name in SPECIAL_NAMES}
        self.extra_special_tokens = list(extra_special_tokens)
        for name in ("unk_token", "sep_token", "pad_token", "cls_token"):
            if not self.special_tokens[name]:  # None or ""
                raise MinitfError(f"{name} is not set; BERT needs [UNK], [SEP], [PAD] and [CLS]")
        specials = [t for t in [*self.special_tokens.values(), *extra_special_tokens] if t]
        for token in specials:
            if token not in self._vocab:
                raise MinitfError(
                    f"special token {token!r} is not in the vocabulary; add it to the vocabulary "
                    "or name a token the vocabulary has in tokenizer_config.json"
                )
        self._special_ids = {self._vocab[t] for t in specials}
        # Longest first, so that at one position the longest special token wins, as in the
        # reference's leftmost-longest matcher. The group keeps the matches in re.split().
        alternatives = "|".join(re.escape(t) for t in sorted(set(specials), key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})")
        self._word_cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------------- subclasses

    def _words(self, text: str) -> Iterable[str]:
        """The words of text that holds no special token, each split into pieces alone."""
        raise NotImplementedError

    def _split_word(self, word: str) -> tuple[int, ...]:
        """The ids of the pieces of one word."""
        raise NotImplementedError

    def _join(self, tokens: list[str]) -> str:
        """The text of a sequence of token strings, as the reference decodes it."""
        raise NotImplementedError

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

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(self._special_ids)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._tokens[i] for i in self._checked(ids)]

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
        """The token strings of `text`, without added [CLS]/[SEP]."""
        return [self._tokens[i] for i in self._ids(text)]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Turn ids back into text the way the reference does (see the subclass's `_join`)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() > 1:
                raise MinitfError(
                    f"decode() takes one sequence of ids, got a tensor of shape "
                    f"{tuple(ids.shape)}; decode each row separately"
                )
            ids = ids.tolist()
        ids = self._checked(ids)
        return self._join([self._tokens[i] for i in ids
                           if not (skip_special_tokens and i in self._special_ids)])

    # ------------------------------------------------------------------------- internals

    def _checked(self, ids: Sequence[int]) -> list[int]:
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._tokens):
                raise MinitfError(f"id {i!r} is not in the vocabulary (0..{len(self._tokens) - 1})")
        return list(ids)

    def _text_ids(self, text: str) -> list[int]:
        """Ids of text that holds no special token; each distinct word is split once (words
        repeat: the cache makes tokenizing a corpus several times faster)."""
        ids: list[int] = []
        cache = self._word_cache
        for word in self._words(text):
            pieces = cache.get(word)
            if pieces is None:
                if len(cache) >= WORD_CACHE_SIZE:
                    cache.clear()
                pieces = cache[word] = self._split_word(word)
            ids.extend(pieces)
        return ids

    def _ids(self, text: str) -> list[int]:
        """Token ids of a text, special tokens in it included, nothing added around."""
        ids: list[int] = []
        # re.split with a group alternates plain text (even places) and special tokens (odd).
        for n, part in enumerate(self._special_re.split(text)):
            if n % 2:
                ids.append(self._vocab[part])
            elif part:
                ids.extend(self._text_ids(part))
        return ids

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


# ----------------------------------------------------------------------------- helpers


def lower_char(char: str) -> str:
    """One character lower-cased as Rust's `char::to_lowercase` does (the reference's
    normalizers lower-case character by character: a word-final "Σ" becomes "σ", not "ς").
    NEW_LOWERCASE holds the mappings Unicode added after Python's own tables."""
    new = NEW_LOWERCASE.get(ord(char))
    return char.lower() if new is None else chr(new)


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


def read_settings(folder: Path) -> dict:
    """tokenizer_config.json with special_tokens_map.json on top (it wins, as in transformers);
    {} where the files are absent."""
    config = _read_json(folder / "tokenizer_config.json")
    config.update(_read_json(folder / "special_tokens_map.json"))
    return config


def settings_max_length(config: dict, folder: Path) -> int:
    """model_max_length from the settings; configs without a limit store 1e30."""
    value = config.get("model_max_length") or 512
    if not isinstance(value, (int, float)) or not value >= 2:  # NaN fails this too
        raise MinitfError(f"model_max_length={value!r} in {folder / 'tokenizer_config.json'} "
                          "must be a number of at least 2")
    return int(min(value, 1 << 31))


def settings_specials(config: dict, defaults: dict[str, str] = DEFAULT_SPECIALS
                      ) -> tuple[dict[str, str | None], list[str]]:
    """(special tokens by name, extra special tokens) from the settings, BERT's by default."""
    specials = {name: _token_text(config.get(name, default))
                for name, default in defaults.items()}
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    if isinstance(extra, dict):  # transformers 5 may name them: {"image_token": "<image>"}
        extra = list(extra.values())
    if not isinstance(extra, list):
        raise MinitfError(f"extra_special_tokens must be a list of tokens, not {extra!r:.40}")
    return specials, [_token_text(t) for t in extra]


def write_settings(tokenizer: BaseTokenizer, folder: Path, config: dict) -> None:
    """tokenizer_config.json (`config`, then the common keys) and special_tokens_map.json."""
    special_map = {k: v for k, v in tokenizer.special_tokens.items() if v is not None}
    if tokenizer.extra_special_tokens:
        special_map["extra_special_tokens"] = tokenizer.extra_special_tokens
    config = {**config, "model_max_length": tokenizer.model_max_length,
              "clean_up_tokenization_spaces": False, **special_map}
    try:
        for name, content in (("tokenizer_config.json", config),
                              ("special_tokens_map.json", special_map)):
            (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    except OSError as e:
        raise MinitfError(f"cannot save the tokenizer to {folder}: {e}") from e


def _read_json(file: Path) -> dict:
    """An optional JSON settings file: {} if absent, MinitfError if unreadable."""
    if not file.exists():
        return {}
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # bad UTF-8 or JSON, nesting too deep
        raise MinitfError(f"cannot read {file}: {str(e)[:200]}; fix or delete the file") from None
    if not isinstance(content, dict):
        raise MinitfError(f"{file} must hold a JSON object, not {type(content).__name__}")
    return content


def _token_text(value: object) -> str | None:
    """A special token from a config: a plain string or a serialised AddedToken dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise MinitfError(f"cannot read a special token from {value!r:.60}; expected a string")
