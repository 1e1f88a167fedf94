"""Token-level data: one label per position, for segmentation, tagging and named entities.

    read_sentences(file, format)   a file → Sentences, every bad line reported as `file:line`
    words_to_tags / tags_to_spans  between words (with their tags) and per-position labels
    encode_windows(...)            positions → token ids in overlapping windows
    stitch(...)                    per-window predictions → one label per position

The three formats (`format`):

    words       one sentence per line, words separated by whitespace (the SIGHAN bakeoff
                format): the positions are the characters, labelled B/M/E/S (begin, middle,
                end of a word, single-character word).
    word-tags   one sentence per line of `word/TAG` tokens (People's Daily): the positions are
                the characters, labelled B-TAG (first character of a word) and I-TAG (the
                others): segmentation and tagging at once.
    conll       `token<TAB>tag`, a blank line between sentences (BIO / BIOES entities): the
                positions are the tokens (characters for Chinese, words for English).

An empty line of `words` / `word-tags` is an empty sentence: kept (so line N of a prediction
is line N of its input) and never trained on. Each position becomes the tokenizer's pieces of
it; the first piece carries the label (the others, [CLS] and [SEP] get -100). A text the
vocabulary lacks becomes [UNK] for the model but is written back as it was: predictions are
labels on positions, never new text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError

FORMATS = ("words", "word-tags", "conll")
SEGMENT_LABELS = ("B", "M", "E", "S")
IGNORE = -100
MAX_REPORTED = 5


@dataclass
class Sentence:
    """The positions of one sentence, a label each, and the line it starts on."""

    units: list[str]
    tags: list[str]
    line: int
    spaced: bool = False  # units are whitespace-separated words (conll): joined with spaces

    @property
    def text(self) -> str:
        return (" " if self.spaced else "").join(self.units)


@dataclass
class Sentences:
    items: list[Sentence]
    format: str
    source: str = "<memory>"
    labels: list[str] = field(default_factory=list)   # every label seen, sorted

    def __len__(self) -> int:
        return len(self.items)


# ---------------------------------------------------------------------------------------------
# Words ↔ labels
# ---------------------------------------------------------------------------------------------


def words_to_tags(words: Sequence[str], tags: Sequence[str] | None = None) -> list[str]:
    """Words (and a tag per word) → a label per character: B/M/E/S, or B-TAG/I-TAG."""
    out: list[str] = []
    for n, word in enumerate(words):
        if tags is not None:
            out += [f"B-{tags[n]}"] + [f"I-{tags[n]}"] * (len(word) - 1)
        elif len(word) == 1:
            out.append("S")
        else:
            out += ["B"] + ["M"] * (len(word) - 2) + ["E"]
    return out


def tags_to_spans(labels: Sequence[str]) -> list[tuple[int, int, str | None]]:
    """Per-character labels → words as (start, end, tag); every position is in one word.

    B/M/E/S: a word starts at B or S, and after E or S. B-TAG/I-TAG: a word starts at B-, or
    where the tag changes; its tag is its first character's. An ill-formed sequence (M after
    S, I- at the start) still gives words that cover the text: nothing is dropped.
    """
    spans: list[tuple[int, int, str | None]] = []
    start = 0
    for i, label in enumerate(labels):
        kind, _, tag = label.partition("-")
        if i > start:
            prev_kind, _, prev_tag = labels[i - 1].partition("-")
            if kind in ("B", "S") or prev_kind in ("E", "S") or tag != prev_tag:
                spans.append((start, i, labels[start].partition("-")[2] or None))
                start = i
    if labels:
        spans.append((start, len(labels), labels[start].partition("-")[2] or None))
    return spans


def entity_spans(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """BIO / BIOES labels → entities (start, end, type), seqeval's default (lenient) reading:
    an entity starts at B-/S-, or at I-/E- whose type differs from the previous label's; it
    ends before O, B-, S-, a type change, or after E-/S-."""
    spans: list[tuple[int, int, str]] = []
    start, current = None, None
    for i, label in enumerate([*labels, "O"]):
        kind, _, tag = label.partition("-")
        if start is not None and (kind in ("O", "B", "S") or tag != current):
            spans.append((start, i, current))
            start, current = None, None
        if kind != "O" and start is None:
            start, current = i, tag
        if kind in ("E", "S") and start is not None:
            spans.append((start, i + 1, current))
            start, current = None, None
    return spans


# ---------------------------------------------------------------------------------------------
# Reading the formats
# ---------------------------------------------------------------------------------------------


def read_sentences(path: str | Path, format: str, encoding: str = "utf-8") -> Sentences:
    """Read a `words`, `word-tags` or `conll` file; every bad line is reported together."""
    if format not in FORMATS:
        raise MinitfError(f"unknown token format {format!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    try:
        text = path.read_bytes().decode(encoding.replace("utf-8", "utf-8-sig"))
    except OSError as exc:
        raise MinitfError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        line = text_line_of(path.read_bytes(), exc.start)
        raise MinitfError(f"{path}:{line}: bytes that are not valid {encoding}; convert the "
                          "file to UTF-8") from None
    lines = [s.removesuffix("\r") for s in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    problems: list[str] = []
    reader = _read_conll if format == "conll" else _read_line_format
    items = reader(lines, format, lambda n, what: problems.append(f"{path}:{n}: {what}"))
    if problems:
        more = len(problems) - MAX_REPORTED
        raise MinitfError("\n".join(problems[:MAX_REPORTED])
                          + (f"\n... and {more} more bad lines" if more > 0 else "")
                          + f"\n(format {format!r}: {FORMAT_HELP[format]})")
    labels = sorted({t for s in items for t in s.tags})
    return Sentences(items, format, str(path), labels)


FORMAT_HELP = {
    "words": "one sentence per line, words separated by spaces",
    "word-tags": "one sentence per line of word/TAG tokens separated by spaces",
    "conll": "token<TAB>tag per line, a blank line between sentences",
}


def text_line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_line_format(lines: list[str], format: str, bad: Any) -> list[Sentence]:
    out = []
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if format == "words":
            out.append(Sentence(list("".join(tokens)), words_to_tags(tokens), n))
            continue
        words, tags = [], []
        for token in tokens:
            word, slash, tag = token.rpartition("/")
            if not slash:
                bad(n, f"{token[:40]!r} has no '/TAG'")
            elif not word:
                bad(n, f"{token[:40]!r}: an empty word before '/'")
            elif not tag:
                bad(n, f"{token[:40]!r}: the tag after '/' is missing")
            elif "-" in tag:
                bad(n, f"{token[:40]!r}: a tag may not contain '-' (labels are B-TAG / I-TAG)")
            words.append(word)
            tags.append(tag)
        out.append(Sentence(list("".join(words)), words_to_tags(words, tags), n))
    return out


def _read_conll(lines: list[str], format: str, bad: Any) -> list[Sentence]:
    out: list[Sentence] = []
    units: list[str] = []
    tags: list[str] = []
    first = 0
    for n, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if units:
                spaced = any(len(u) > 1 for u in units)  # words, not characters
                out.append(Sentence(units, tags, first, spaced))
            units, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not columns[0].strip() or not columns[1].strip():
            bad(n, f"{len(columns)} column(s); a CoNLL line is token<TAB>tag "
                   f"(got {line[:60]!r})")
            continue
        token, tag = columns[0].strip(), columns[1].strip()
        if tag != "O" and (tag[:2] not in ("B-", "I-", "E-", "S-") or len(tag) < 3):
            bad(n, f"tag {tag[:30]!r} is not O, B-TYPE, I-TYPE, E-TYPE or S-TYPE")
        if not units:
            first = n
        units.append(token)
        tags.append(tag)
    return out


def check_known_labels(data: Sentences, known: Sequence[str]) -> None:
    """A label in `data` (validation, test) that training never saw: one error, by line."""
    seen = set(known)
    for sentence in data.items:
        unknown = [t for t in sentence.tags if t not in seen]
        if unknown:
            raise MinitfError(f"{data.source}:{sentence.line}: label {unknown[0]!r} never "
                              f"occurs in the training data; the model cannot predict it "
                              "(add examples of it to the training file, or fix the label)")


# ---------------------------------------------------------------------------------------------
# Windows: positions → token ids, and back
# ---------------------------------------------------------------------------------------------


@dataclass
class Window:
    sentence: int          # index of the sentence
    first: int             # first position (unit) the window covers
    input_ids: list[int]   # [CLS] pieces... [SEP]
    heads: list[int]       # index in input_ids of each covered position's first piece
    labels: list[int]      # a label id per input id, IGNORE where none

    @property
    def labelled(self) -> int:
        """How many positions carry a label (those the loss is over)."""
        return sum(label != IGNORE for label in self.labels)


def unit_pieces(tokenizer: Any, units: Sequence[str], cache: dict[str, list[int]]
                ) -> list[list[int]]:
    """The token ids of each unit; a unit the tokenizer drops entirely (e.g. a control
    character) becomes [UNK], so every position keeps a place for its label."""
    out = []
    for unit in units:
        ids = cache.get(unit)
        if ids is None:
            ids = cache[unit] = tokenizer.encode(unit)[1:-1] or [tokenizer.unk_token_id]
        out.append(ids)
    return out


def encode_windows(sentences: Sequence[Sentence], tokenizer: Any, max_length: int,
                   label2id: dict[str, int] | None = None, overlap: int = 32) -> list[Window]:
    """Each sentence as windows of at most max_length ids ([CLS] and [SEP] included);
    consecutive windows share `overlap` pieces' worth of positions. Empty sentences give none."""
    budget = max_length - 2
    if budget < 2:
        raise MinitfError(f"max_length {max_length} leaves no room for text between [CLS] "
                          "and [SEP]; use at least 4")
    overlap = max(0, min(overlap, budget // 2))
    cache: dict[str, list[int]] = {}
    windows = []
    for s, sentence in enumerate(sentences):
        pieces = unit_pieces(tokenizer, sentence.units, cache)
        for first, stop in _window_bounds([len(p) for p in pieces], budget, overlap):
            ids, heads, labels = [tokenizer.cls_token_id], [], [IGNORE]
            for u in range(first, stop):
                heads.append(len(ids))
                unit_ids = pieces[u][:budget]   # one unit longer than a window: its first pieces
                ids += unit_ids
                label = IGNORE if label2id is None else label2id[sentence.tags[u]]
                labels += [label] + [IGNORE] * (len(unit_ids) - 1)
            windows.append(Window(s, first, ids + [tokenizer.sep_token_id], heads,
                                  labels + [IGNORE]))
    return windows


def _window_bounds(lengths: list[int], budget: int, overlap: int) -> list[tuple[int, int]]:
    """(first, stop) unit ranges of at most `budget` pieces each, covering every unit; the
    next window starts so that about `overlap` pieces are shared."""
    bounds, first, n = [], 0, len(lengths)
    while first < n:
        stop, used = first, 0
        while stop < n and (used + lengths[stop] <= budget or stop == first):
            used += min(lengths[stop], budget)
            stop += 1
        bounds.append((first, stop))
        if stop >= n:
            break
        back, shared = stop, 0
        while back > first + 1 and shared + lengths[back - 1] <= overlap:
            back -= 1
            shared += lengths[back]
        first = back
    return bounds


def stitch(windows: Sequence[Window], scores: Sequence[Any], lengths: Sequence[int]
           ) -> list[list[Any]]:
    """Per-window scores (one row per input id) → one row per position of each sentence.

    Where windows overlap, a position takes the window in which it lies farthest from an edge
    (the most context on both sides), so the stitched labels do not depend on where a window
    happened to end."""
    out: list[list[Any]] = [[None] * n for n in lengths]
    margin: list[list[int]] = [[-1] * n for n in lengths]
    for window, rows in zip(windows, scores, strict=True):
        count = len(window.heads)
        for k, head in enumerate(window.heads):
            u = window.first + k
            m = min(k, count - 1 - k)
            if m > margin[window.sentence][u]:
                margin[window.sentence][u] = m
                out[window.sentence][u] = rows[head]
    return out
