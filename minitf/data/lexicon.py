"""A word list for segmentation: the training words a segmenter saw, or a user's dictionary.

    lexicon = Lexicon.from_counts(counter)   # from words and how often they occur
    lexicon = training_lexicon(sentences)    # the words (and tags) of labelled sentences
    lexicon = read_lexicon(path)             # one word per line, jieba's dictionary format:
                                             # `word`, `word count` or `word count tag[,tag]`
    write_lexicon(path, lexicon)             # the same lines, most frequent first
    lexicon.matches(text)                    # every (start, end) of a multi-character entry

`finetune --task segment|tag` writes its training words as LEXICON_FILE next to the model;
the decoder (minitf/tasks/decode.py, lexicon_viterbi) rewards words found in it. Single
characters are kept in the file but never matched: nearly every character is a word somewhere,
so one says nothing about where words end. A tagger's lexicon also lists the tags each word had
in training (`人民 412 n`, `发展 300 v,vn`): the decoder then rewards the word only with one of
them. A word without tags is rewarded with any.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from minitf.data import tokens as T
from minitf.errors import MinitfError
from minitf.io import write_text

LEXICON_FILE = "lexicon.txt"
MAX_BYTES = 256 * 2**20   # a dictionary larger than this is refused before it is read


@dataclass
class Lexicon:
    counts: dict[str, int]                      # word → count (1 when the file gave none)
    tags: dict[str, frozenset[str]] = field(default_factory=dict)   # word → its tags, if any
    prefixes: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # every proper prefix of a multi-character word: a match search stops where none goes on
        self.prefixes = frozenset(word[:n] for word in self.counts if len(word) > 1
                                  for n in range(1, len(word)))

    @classmethod
    def from_counts(cls, counts: Mapping[str, int],
                    tags: Mapping[str, Iterable[str]] | None = None) -> Lexicon:
        return cls({word: int(n) for word, n in counts.items() if word},
                   {word: frozenset(t) for word, t in (tags or {}).items() if word and t})

    def __contains__(self, word: object) -> bool:
        return word in self.counts

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def union(self, other: Lexicon) -> Lexicon:
        """Both word lists: counts added; a word keeps the tags either gave it (none from one
        side that lists none: any tag)."""
        merged = dict(self.counts)
        for word, n in other.counts.items():
            merged[word] = merged.get(word, 0) + n
        sides = (self, other)
        tags = {word: frozenset().union(*(side.tags.get(word, ()) for side in sides))
                for word in merged
                if all(word in side.tags for side in sides if word in side.counts)}
        return Lexicon(merged, tags)

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
    """A dictionary file: one entry per line, `word [count [tags]]` separated by whitespace
    (jieba's format; tags: one, or several joined by commas); empty lines are skipped; a word
    on two lines adds up its counts and tags."""
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
    tags: dict[str, set[str]] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 3 or (len(fields) > 1 and not fields[1].isdigit()):
            raise MinitfError(f"{path}:{number}: expected `word`, `word count` or `word count "
                              f"tag`, got {line.strip()!r:.60}")
        word = fields[0]
        counts[word] = counts.get(word, 0) + (int(fields[1]) if len(fields) > 1 else 1)
        if len(fields) == 3:
            tags.setdefault(word, set()).update(t for t in fields[2].split(",") if t)
    if not counts:
        raise MinitfError(f"{path}: no words in it; give one word per line")
    return Lexicon.from_counts(counts, tags)


def write_lexicon(path: str | Path, lexicon: Lexicon) -> Path:
    """`word count [tags]` lines, most frequent first (ties in text order): read_lexicon and
    jieba read it back."""
    rows = sorted(lexicon.counts.items(), key=lambda item: (-item[1], item[0]))
    return write_text(path, "".join(
        f"{word} {n}" + (f" {','.join(sorted(lexicon.tags[word]))}\n" if word in lexicon.tags
                         else "\n") for word, n in rows))


def training_lexicon(train: T.Sentences) -> Lexicon:
    """The words of labelled sentences, how often each occurs and (word-tags) its tags."""
    counts: dict[str, int] = {}
    tags: dict[str, set[str]] = {}
    for sentence in train.items:
        for start, end, tag in T.tags_to_spans(sentence.tags):
            word = sentence.text[start:end]
            counts[word] = counts.get(word, 0) + 1
            if tag is not None:
                tags.setdefault(word, set()).add(tag)
    return Lexicon.from_counts(counts, tags)
