"""From per-position scores to a well-formed label sequence: constrained Viterbi decoding.

A token classifier scores each position on its own, so the best label per position (argmax) can
spell sequences no gold file contains: `M` after `S`, a word `B-n I-v` whose characters disagree
on its tag, an entity `I-nr` with no start. tags_to_spans still reads them (nothing is dropped),
but each such slip costs a word. Here the decoder picks the sequence with the highest total
log-probability among the well-formed ones:

    allowed_transitions(labels)   which label may start, follow which, and end a sequence
    viterbi(scores, allowed)      the best allowed sequence of each sentence, batched
    word_kinds(labels)            how a word is spelled in a segmentation label set
    lexicon_viterbi(...)          the same best sequence, with a bonus for each word the
                                  lexicon holds (segmentation and joint tagging)

The rules follow from the label names (minitf/data/tokens.py writes them):

    B M E S          segmentation: M and E continue a word that B opened; B and M must be
                     continued; a sentence starts at B or S and ends at E or S
    B-X I-X          joint segmentation + tagging: I-X continues a word B-X or I-X opened,
                     with the same tag X (so one word never has two tags)
    B-X I-X O        BIO entities: I-X continues an entity of type X
    B-X I-X E-X S-X  BIOES: as BIO, and B-X / I-X must be continued (by I-X or E-X)

Transitions carry no learnt weights (no CRF): the model is untouched and loads in transformers
as before, and with every transition allowed this is exactly argmax.

A lexicon (minitf/data/lexicon.py: the training words, and any user dictionary) adds what a
character model sees poorly, whether a whole string is a known word. lexicon_viterbi searches
the segmentations of a sentence into words, each word scored by its labels' log-probabilities
(B + M... + E, or S) plus `weight` if the lexicon holds it; with weight 0 it returns what
viterbi returns. `finetune --task segment|tag` picks the weight on validation data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from minitf.data.lexicon import Lexicon

CONTINUING = ("M", "E", "I")   # kinds that continue what the previous position opened
OPENING = ("B", "M", "I")      # kinds after which the word / entity may (or must) go on
KNOWN = ("B", "M", "E", "S", "I", "O")


@dataclass
class Allowed:
    start: torch.Tensor        # (L,) bool: may label the first position
    follows: torch.Tensor      # (L, L) bool: [previous, current] may be adjacent
    end: torch.Tensor          # (L,) bool: may label the last position


def allowed_transitions(labels: Sequence[str]) -> Allowed:
    """The well-formed sequences of a label set (see the module's docstring). A label of an
    unknown kind is allowed anywhere, next to anything."""
    parsed = [label.partition("-")[::2] for label in labels]          # (kind, tag)
    kinds = {kind for kind, _ in parsed}
    closed = bool(kinds & {"E", "S"})   # BMES / BIOES: an opened word must be closed

    def may_follow(previous: tuple[str, str], current: tuple[str, str]) -> bool:
        (pk, pt), (ck, ct) = previous, current
        if pk not in KNOWN or ck not in KNOWN:
            return True
        if ck in CONTINUING:
            return pk in OPENING and pt == ct
        return not (closed and pk in OPENING)

    n = len(labels)
    follows = torch.tensor([[may_follow(p, c) for c in parsed] for p in parsed],
                           dtype=torch.bool).reshape(n, n)
    start = torch.tensor([k not in CONTINUING for k, _ in parsed])
    end = torch.tensor([not (closed and k in OPENING) for k, _ in parsed])
    return Allowed(start, follows, end)


def viterbi(scores: Sequence[torch.Tensor], allowed: Allowed, batch_size: int = 64
            ) -> list[list[int]]:
    """The best allowed label ids of each sentence; scores: logits (n_i, L) per sentence (n_i
    may be 0). Sentences of similar length are decoded together; past its end a sentence keeps
    its last label and score."""
    out: list[list[int]] = [[] for _ in scores]
    order = sorted((i for i, s in enumerate(scores) if len(s)), key=lambda i: len(scores[i]))
    predecessors = _Predecessors(allowed.follows)
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        batch = [scores[i] for i in chunk]
        for i, best in zip(chunk, _viterbi_batch(batch, allowed, predecessors), strict=True):
            out[i] = best
    return out


class _Predecessors:
    """The allowed previous labels of each label, in a form one step of Viterbi can use cheaply.

    Most labels have few allowed predecessors (I-X: B-X or I-X), the others accept any (B-X in
    BIO): those take the best previous label overall, the few-predecessor ones a max over at most
    `k` candidates, so a step costs O(L·k), not O(L²)."""

    def __init__(self, follows: torch.Tensor):
        labels = follows.shape[0]
        self.any = follows.all(dim=0)                                   # (L,)
        lists = [follows[:, c].nonzero().flatten().tolist() if not self.any[c] else []
                 for c in range(labels)]
        k = max(1, *(len(x) for x in lists))
        self.index = torch.zeros(labels, k, dtype=torch.long)          # (L, k) candidates
        self.penalty = torch.full((labels, k), float("-inf"))           # -inf: no candidate
        for c, previous in enumerate(lists):
            self.index[c, :len(previous)] = torch.tensor(previous, dtype=torch.long)
            self.penalty[c, :len(previous)] = 0.0

    def best(self, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """score (B, L) of the best path ending in each label → for each next label, the best
        allowed (score, previous label), both (B, L)."""
        candidates = score[:, self.index] + self.penalty                # (B, L, k)
        value, k = candidates.max(dim=-1)
        previous = self.index.expand(len(score), -1, -1).gather(2, k[..., None])[..., 0]
        overall, argmax = score.max(dim=1, keepdim=True)                # (B, 1)
        value = torch.where(self.any, overall, value)
        previous = torch.where(self.any, argmax, previous)
        return value, previous


def _viterbi_batch(scores: list[torch.Tensor], allowed: Allowed,
                   predecessors: _Predecessors) -> list[list[int]]:
    lengths = [len(s) for s in scores]
    width, labels = max(lengths), scores[0].shape[-1]
    never = torch.tensor(float("-inf"))
    # (B, T, L) log-probabilities; padding scores 0 for every label
    logp = torch.zeros(len(scores), width, labels)
    for r, s in enumerate(scores):
        logp[r, :len(s)] = torch.log_softmax(s.float(), dim=-1)
    end_penalty = torch.where(allowed.end, 0.0, never)
    best = logp[:, 0] + torch.where(allowed.start, 0.0, never)         # (B, L)
    back = torch.zeros(len(scores), width, labels, dtype=torch.long)
    keep = torch.arange(labels).expand(len(scores), labels)            # padding: same label
    length = torch.tensor(lengths)
    for t in range(1, width):
        inside = (t < length)[:, None]                                 # (B, 1)
        extended, previous = predecessors.best(best)
        best = torch.where(inside, extended + logp[:, t], best)
        back[:, t] = torch.where(inside, previous, keep)
    best = best + end_penalty   # padding kept the last label: it is the one that ends
    pointers, finite = back.numpy(), torch.isfinite(best).any(dim=1).tolist()
    paths = []
    for r, n in enumerate(lengths):
        if not finite[r]:   # no well-formed sequence (an odd label set): keep the argmax
            paths.append(scores[r].argmax(-1).tolist())
            continue
        label = int(best[r].argmax())
        path = [label]
        for t in range(n - 1, 0, -1):
            label = int(pointers[r, t, label])
            path.append(label)
        paths.append(path[::-1])
    return paths


# ---------------------------------------------------------------------------------------------
# Words with a lexicon
# ---------------------------------------------------------------------------------------------


@dataclass
class WordKinds:
    """The label ids that spell a word of each kind (K kinds: one for B/M/E/S, one per tag X
    for B-X/I-X): a single-position word, and the first, middle and last position of longer
    ones."""

    tags: list[str | None]      # (K,) the word's tag
    single: np.ndarray          # (K,) label ids
    first: np.ndarray
    middle: np.ndarray
    last: np.ndarray


def word_kinds(labels: Sequence[str]) -> WordKinds | None:
    """How words are spelled in `labels`: B/M/E/S, or B-X/I-X (joint segmentation + tagging);
    None for any other label set (entities: O between them, nothing to look up)."""
    index = {label: i for i, label in enumerate(labels)}
    if set(labels) == {"B", "M", "E", "S"}:
        rows = [(None, index["S"], index["B"], index["M"], index["E"])]
    else:
        parsed = [label.partition("-") for label in labels]
        tags = sorted({tag for kind, dash, tag in parsed if kind == "B" and dash})
        if not tags or any(not dash or kind not in ("B", "I") for kind, dash, _ in parsed):
            return None
        # a tag seen only as one-character words has no I-X: its longer words cannot be spelled
        rows = [(t, index[f"B-{t}"], index[f"B-{t}"], index.get(f"I-{t}", -1),
                 index.get(f"I-{t}", -1)) for t in tags]
    columns = list(zip(*rows, strict=True))
    return WordKinds(list(columns[0]), *(np.array(c, dtype=np.int64) for c in columns[1:]))


def lexicon_viterbi(scores: torch.Tensor, units: Sequence[str], kinds: WordKinds,
                    lexicon: Lexicon, weight: float) -> list[int]:
    """The best label ids of one sentence (scores: logits (n, L) of its n positions, units:
    their text) when a word the lexicon holds scores `weight` more (a word the lexicon lists
    with tags: only as one of those tags).

    best[j] is the best score of the first j positions cut into whole words. A word (i, j) of
    kind k adds S (j = i + 1) or B[i] + M[i+1] + ... + M[j-2] + E[j-1]; with cumulative sums
    C of M that is (best[i] + B[i] - C[i+1]) + (C[j-1] + E[j-1]), so the best start of a word
    of any length ending at j is a running maximum: O(n·K), plus one step per lexicon match."""
    n = len(units)
    if n == 0:
        return []
    words = _WordScores(scores, kinds)
    found = _lexicon_words(units, kinds, lexicon, weight)
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back = [(0, 0)] * (n + 1)                           # (start, kind) of the last word
    run, run_start = np.full(len(kinds.tags), -np.inf), np.zeros(len(kinds.tags), np.int64)
    for j in range(1, n + 1):
        # (score per kind, where the word starts: one position, or one per kind)
        candidates: list[tuple[np.ndarray, Any]] = [(best[j - 1] + words.single[j - 1], j - 1)]
        if j >= 2:   # words of two or more positions: the running best start
            opened = best[j - 2] + words.first[j - 2] - words.cum[j - 1]
            better = opened > run
            run, run_start = np.where(better, opened, run), np.where(better, j - 2, run_start)
            candidates.append((run + words.cum[j - 1] + words.last[j - 1], run_start))
        candidates += [(best[i] + words(i, j) + bonus, i) for i, bonus in found[j]]
        for values, starts in candidates:
            k = int(values.argmax())
            if values[k] > best[j]:
                best[j], back[j] = values[k], (starts if isinstance(starts, int)
                                               else int(starts[k]), k)
    return _spell(back, n, kinds)


class _WordScores:
    """The log-probability of a word (i, j) of each kind, from the cumulative sums of the
    middle labels: words(i, j) is (K,)."""

    def __init__(self, scores: torch.Tensor, kinds: WordKinds):
        logp = torch.log_softmax(scores.double(), dim=-1).numpy()
        never = np.full((len(logp), 1), -np.inf)
        padded = np.concatenate([logp, never], axis=1)   # label id -1: impossible
        self.single, self.first = padded[:, kinds.single], padded[:, kinds.first]  # (n, K)
        self.last, middle = padded[:, kinds.last], padded[:, kinds.middle]
        self.cum = np.concatenate([np.zeros((1, len(kinds.tags))), np.cumsum(     # (n + 1, K)
            np.where(np.isfinite(middle), middle, -1e30), axis=0)])

    def __call__(self, i: int, j: int) -> np.ndarray:
        if j - i == 1:
            return self.single[i]
        return self.first[i] + self.cum[j - 1] - self.cum[i + 1] + self.last[j - 1]


def _lexicon_words(units: Sequence[str], kinds: WordKinds, lexicon: Lexicon, weight: float
                   ) -> list[list[tuple[int, Any]]]:
    """For each end position j, the lexicon words (i, j) made of whole units: (i, bonus), the
    bonus one number, or (K,) when the lexicon names the word's tags."""
    text = "".join(units)
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in units])]).tolist()
    unit_at = {offset: k for k, offset in enumerate(offsets)}
    bonuses: dict[str, Any] = {}
    found: list[list[tuple[int, Any]]] = [[] for _ in range(len(units) + 1)]
    for start, end in lexicon.matches(text):            # character offsets
        if start not in unit_at or end not in unit_at:
            continue
        entry = text[start:end]
        if entry not in bonuses:
            tags = lexicon.tags.get(entry)
            bonuses[entry] = weight if tags is None or kinds.tags == [None] else np.array(
                [weight if tag in tags else 0.0 for tag in kinds.tags])
        found[unit_at[end]].append((unit_at[start], bonuses[entry]))
    return found


def _spell(back: list[tuple[int, int]], n: int, kinds: WordKinds) -> list[int]:
    """The label ids of the words that the back pointers pick, from the end."""
    ids: list[int] = []
    j = n
    while j > 0:
        i, k = back[j]
        inner = [int(kinds.middle[k])] * (j - i - 2)
        ids[:0] = [int(kinds.single[k])] if j - i == 1 else [int(kinds.first[k]), *inner,
                                                              int(kinds.last[k])]
        j = i
    return ids
