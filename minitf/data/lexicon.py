"""A word list for segmentation: the training words a segmenter saw, or a user's dictionary.

    lexicon = Lexicon.from_counts(counter)   # from words and how often they occur
    lexicon = read_lexicon(path)             # one word per line, jieba's dictionary format:
                                             # `word`, `word count` or `word count tag`
    write_lexicon(path, lexicon)             # `word count` lines, most frequent first
    lexicon.matches(text)                    # every (start, end) of a multi-character entry

`finetune --task segment|tag` writes its training words as LEXICON_FILE next to the model;
the decoder (minitf/tasks/decode.py, lexicon_viterbi) rewards words found in it. Single
characters are kept in the file but never matched: nearly every character is a word somewhere,
so one says nothing about where words end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from minitf.errors import MinitfError
from minitf.io import write_text

LEXICON_FILE = "lexicon.txt"
MAX_BYTES = 256 * 2**20   # a dictionary larger than this is refused before it is read


@dataclass
class Lexicon:
    counts: dict[str, int]                      # word → count (1 when the file gave none)
    prefixes: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # every proper prefix of a multi-character word: a match search stops where none goes on
        self.prefixes = frozenset(word[:n] for word in self.counts if len(word) > 1
                                  for n in range(1, len(word)))

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> Lexicon:
        return cls({word: int(n) for word, n in counts.items() if word})

    def __contains__(self, word: object) -> bool:
        return word in self.counts

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def union(self, other: Lexicon) -> Lexicon:
        merged = dict(self.counts)
        for word, n in other.counts.items():
            merged[word] = merged.get(word, 0) + n
        return Lexicon(merged)

    def matches(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every entry of two or more characters found in `text`, overlapping
        ones included."""
        found = []
        for start in range(len(text)):
            end = start + 2   # text[start:end] can be an entry only if text[start:end - 1]
            while end <= len(text) and text[start:end - 1] in self.prefixes:  # begins one
                if text[start:end] in self.counts:
                    found.append((start, end))
                end += 1
        return found


def read_lexicon(path: str | Path, encoding: str = "utf-8") -> Lexicon:
    """A dictionary file: one entry per line, `word [count [tag]]` separated by whitespace
    (jieba's format; the tag is ignored); empty lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise MinitfError(f"{path}: no such dictionary file; give a text file with one word "
                          "per line")
    if path.stat().st_size > MAX_BYTES:
        raise MinitfError(f"{path}: {path.stat().st_size:,} bytes, more than a dictionary "
                          f"should be ({MAX_BYTES:,}); is it the right file?")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as error:
        raise MinitfError(f"{path}: not {encoding} text ({error.reason} at byte "
                          f"{error.start}); give --encoding or convert the file") from None
    counts: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 3 or (len(fields) > 1 and not fields[1].isdigit()):
            raise MinitfError(f"{path}:{number}: expected `word`, `word count` or `word count "
                              f"tag`, got {line.strip()!r:.60}")
        counts[fields[0]] = counts.get(fields[0], 0) + (int(fields[1]) if len(fields) > 1 else 1)
    if not counts:
        raise MinitfError(f"{path}: no words in it; give one word per line")
    return Lexicon(counts)


def write_lexicon(path: str | Path, lexicon: Lexicon) -> Path:
    """`word count` lines, most frequent first (ties in text order): read_lexicon and jieba
    read it back."""
    rows = sorted(lexicon.counts.items(), key=lambda item: (-item[1], item[0]))
    return write_text(path, "".join(f"{word} {n}\n" for word, n in rows))


def lexicon_of_words(words: Iterable[str]) -> Lexicon:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return Lexicon.from_counts(counts)
