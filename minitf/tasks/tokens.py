"""Token classification in use: texts in, words / tagged words / entities out.

    TokenTagger.from_pretrained(dir)   a BertForTokenClassification directory and its tokenizer
    tagger.predict(sentences)          a label per position of each Sentence (windowed, stitched,
                                       then decoded: minitf/tasks/decode.py)
    tagger.segment(texts)              words with their character offsets (and tags)
    tagger.entities(texts)             entity spans with type and character offsets

The positions of a text are its characters, whitespace excepted: a space always ends a word and
belongs to none. Words are slices of the input, never rewritten: for a text without whitespace,
joining the words gives the text back; with whitespace, `start`/`end` locate each word in it.
A model whose labels hold `O` is an entity tagger: on a text with spaces between words, its
positions are those words (as in English CoNLL data), otherwise characters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minitf.data import tokens as T
from minitf.data.lexicon import LEXICON_FILE, Lexicon, read_lexicon
from minitf.errors import MinitfError
from minitf.model.bert import BertForTokenClassification
from minitf.tasks.decode import allowed_transitions, lexicon_viterbi, viterbi, word_kinds

DECODERS = ("viterbi", "argmax")
# The bonus of a lexicon word when nothing picked one on validation data (fine-tuning without
# validation sentences, a last/ checkpoint): People's Daily's segmenter and tagger picked 3-4
# and scored within 0.2 points of their best anywhere from 2 to 6 (benchmarks/tokens.py)
DEFAULT_LEXICON_WEIGHT = 3.0


@dataclass
class Word:
    text: str
    start: int               # character offsets in the input: input[start:end] == text
    end: int
    tag: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"text": self.text, "start": self.start, "end": self.end}
        return out if self.tag is None else {**out, "tag": self.tag}


def positions(text: str, spaced: bool) -> list[tuple[int, int]]:
    """(start, end) of each position of `text`: its non-space characters, or its
    whitespace-separated words when `spaced`."""
    if not spaced:
        return [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
    out, start = [], None
    for i, ch in enumerate([*text, " "]):
        if ch.isspace() and start is not None:
            out.append((start, i))
            start = None
        elif not ch.isspace() and start is None:
            start = i
    return out


class TokenTagger:
    """A token-classification model and its tokenizer, predicting in windows."""

    def __init__(self, model: BertForTokenClassification, tokenizer: Any,
                 max_length: int | None = None, batch_size: int = 64, overlap: int = 32,
                 device: torch.device | str = "cpu",
                 autocast: Callable[[], AbstractContextManager] = nullcontext,
                 decoder: str = "viterbi", lexicon: Lexicon | None = None,
                 lexicon_weight: float | None = None):
        """max_length: tokens per window, [CLS] and [SEP] included (None: the tokenizer's
        model_max_length, which `finetune --task` sets to the windows it trained on: a model
        never trained past position 32 should not be asked about position 100); autocast:
        the context each forward runs in (Precision.autocast for bf16); decoder: "viterbi"
        (the best well-formed label sequence) or "argmax" (the best label per position);
        lexicon: words the Viterbi decoder rewards by lexicon_weight each (None: the model's
        config.json minitf_lexicon_weight, which `finetune` picks on validation data, else
        DEFAULT_LEXICON_WEIGHT): segmentation and joint tagging only
        (minitf/tasks/decode.py)."""
        if decoder not in DECODERS:
            raise MinitfError(f"--decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
        if lexicon_weight is not None and not 0 <= lexicon_weight < float("inf"):
            raise MinitfError(f"--lexicon-weight {lexicon_weight}: give a number >= 0 (0 turns "
                              "the lexicon off)")
        max_length = max_length or tokenizer.model_max_length
        self.model, self.tokenizer, self.autocast = model.eval(), tokenizer, autocast
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length = min(max_length, model.config.max_position_embeddings)
        self.batch_size, self.overlap, self.device = batch_size, overlap, torch.device(device)
        self.decoder, self.allowed = decoder, allowed_transitions(self.labels)
        self.kinds = word_kinds(self.labels)
        self.lexicon = lexicon
        picked = model.config.minitf_lexicon_weight
        self.lexicon_weight = (lexicon_weight if lexicon_weight is not None else
                               picked if picked is not None else DEFAULT_LEXICON_WEIGHT)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> TokenTagger:
        """The model and tokenizer of `directory`, with its lexicon.txt (the training words)."""
        from minitf.tokenizers.wordpiece import load_tokenizer
        model = BertForTokenClassification.from_pretrained(directory)
        return cls(model, load_tokenizer(directory), lexicon=model_lexicon(directory), **kwargs)

    @property
    def is_entity_tagger(self) -> bool:
        return "O" in self.labels

    def scores(self, sentences: Sequence[T.Sentence]) -> list[list[torch.Tensor]]:
        """Logits (num_labels,) per position of each sentence."""
        windows, logits = self._window_logits(sentences)
        return T.stitch(windows, logits, [len(s.units) for s in sentences])

    def predict(self, sentences: Sequence[T.Sentence]) -> list[list[str]]:
        """A label per position of each sentence: the stitched scores, decoded."""
        return self.decode(self.scores(sentences), sentences)

    @property
    def uses_lexicon(self) -> bool:
        return (self.decoder == "viterbi" and self.kinds is not None
                and self.lexicon is not None and self.lexicon_weight > 0)

    def decode(self, scores: Sequence[Sequence[torch.Tensor]],
               sentences: Sequence[T.Sentence]) -> list[list[str]]:
        """Logits per position of each sentence (as scores() gives them) → labels: the best
        well-formed sequence (with the lexicon's bonus, when there is one), or with
        decoder="argmax" the best label per position."""
        matrices = [torch.stack(list(s)) if len(s) else torch.zeros(0, len(self.labels))
                    for s in scores]
        if self.decoder == "argmax":
            ids = [m.argmax(-1).tolist() for m in matrices]
        elif self.uses_lexicon:
            ids = [lexicon_viterbi(m, s.units, self.kinds, self.lexicon, self.lexicon_weight)
                   for m, s in zip(matrices, sentences, strict=True)]
        else:
            ids = viterbi(matrices, self.allowed)
        return [[self.labels[i] for i in sentence] for sentence in ids]

    @torch.no_grad()
    def _window_logits(self, sentences: Sequence[T.Sentence]
                       ) -> tuple[list[T.Window], list[torch.Tensor]]:
        """The windows of the sentences and the logits (window length, num_labels) of each."""
        self.model.eval()
        windows = T.encode_windows(sentences, self.tokenizer, self.max_length,
                                   overlap=self.overlap)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        rows: list[Any] = [None] * len(windows)
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), self.batch_size):
            chunk = order[b:b + self.batch_size]
            width = max(len(windows[i].input_ids) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(chunk):
                n = len(windows[i].input_ids)
                ids[r, :n] = torch.tensor(windows[i].input_ids)
                mask[r, :n] = 1
            with self.autocast():
                logits = self.model(ids.to(self.device), mask.to(self.device)).logits
            logits = logits.float().cpu()
            for r, i in enumerate(chunk):
                rows[i] = logits[r]
        return windows, rows

    def _sentences(self, texts: Sequence[str]) -> tuple[list[T.Sentence], list[list[tuple]]]:
        spans, sentences = [], []
        for n, text in enumerate(texts):
            spaced = self.is_entity_tagger and any(ch.isspace() for ch in text.strip())
            where = positions(text, spaced)
            spans.append(where)
            sentences.append(T.Sentence([text[s:e] for s, e in where], [], n + 1, spaced))
        return sentences, spans

    def segment(self, texts: Sequence[str]) -> list[list[Word]]:
        """Words of each text (a tag each when the model tags words)."""
        sentences, spans = self._sentences(texts)
        out = []
        for text, where, labels in zip(texts, spans, self.predict(sentences), strict=True):
            words = []
            for first, stop, tag in T.tags_to_spans(labels):
                # A space inside a predicted word still splits it: words never hold spaces.
                start = where[first][0]
                for k in range(first + 1, stop + 1):
                    if k == stop or where[k][0] != where[k - 1][1]:
                        words.append(Word(text[start:where[k - 1][1]], start,
                                          where[k - 1][1], tag))
                        if k < stop:
                            start = where[k][0]
            out.append(words)
        return out

    def entities(self, texts: Sequence[str]) -> list[list[Word]]:
        """Entity spans of each text: their text, character offsets and type."""
        sentences, spans = self._sentences(texts)
        return [[Word(text[where[s][0]:where[e - 1][1]], where[s][0], where[e - 1][1], kind)
                 for s, e, kind in T.entity_spans(labels)]
                for text, where, labels in zip(texts, spans, self.predict(sentences),
                                               strict=True)]


def model_lexicon(directory: str | Path, user_lexicon: str | Path | None = None
                  ) -> Lexicon | None:
    """The model directory's lexicon.txt (None without one), with `user_lexicon`'s words
    added."""
    own = Path(directory, LEXICON_FILE)
    lexicon = read_lexicon(own) if own.is_file() else None
    if user_lexicon is None:
        return lexicon
    user = read_lexicon(user_lexicon)
    return user if lexicon is None else lexicon.union(user)
