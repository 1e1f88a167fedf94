"""The word segmenters minitf is compared with, each learning from the same training words,
and one way to score any of them (SIGHAN's: minitf/tasks/token_metrics.py).

    segment = fmm_segmenter(train)            # forward maximum matching, training lexicon
    segment = jieba_segmenter(train, folder)  # jieba, its dictionary rebuilt from train
    segment, seconds = snownlp_segmenter(train, folder)   # snownlp retrained by its trainer
    row = score_segmenter("fmm", segment, test)

A segmenter maps texts to their words; joining a text's words must give the text back (checked
when scored). `train` and `test` are minitf.data.tokens.Sentences of the `words` format
(B/M/E/S per character). jieba and snownlp are optional: their functions raise ImportError when
the package is missing (the callers skip the row). Used by `make demo-seg`
(minitf/recipes/demo_seg.py) and benchmarks/tokens.py.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from minitf.data import tokens as T
from minitf.data.lexicon import training_lexicon
from minitf.io import write_text
from minitf.tasks.token_metrics import segmentation_scores

Segmenter = Callable[[list[str]], list[list[str]]]


def training_words(train: T.Sentences) -> collections.Counter[str]:
    """How often each word occurs in the training sentences."""
    return collections.Counter(training_lexicon(train).counts)


def fmm_segmenter(train: T.Sentences) -> Segmenter:
    """Forward maximum matching: from the left, the longest training word that starts here
    (a single character when none does)."""
    lexicon = set(training_words(train))
    longest = max(map(len, lexicon), default=1)
    return lambda texts: [forward_maximum_matching(t, lexicon, longest) for t in texts]


def forward_maximum_matching(text: str, lexicon: Container[str], longest: int) -> list[str]:
    """`text` cut from the left into the longest entry of `lexicon` (at most `longest`
    characters) that starts at each point, a single character where none does."""
    words, i = [], 0
    while i < len(text):
        n = next((n for n in range(min(longest, len(text) - i), 1, -1)
                  if text[i:i + n] in lexicon), 1)
        words.append(text[i:i + n])
        i += n
    return words


def jieba_segmenter(train: T.Sentences, folder: Path, hmm: bool) -> Segmenter:
    """jieba with a dictionary of the training words and their counts (its own dictionary is
    trained on other text); `hmm`: its HMM guesses words the dictionary lacks."""
    import jieba

    counts = training_words(train)
    dictionary = write_text(folder / "jieba-dict.txt",
                            "".join(f"{w} {n}\n" for w, n in counts.items()), overwrite=True)
    cutter = jieba.Tokenizer(dictionary=str(dictionary))
    return lambda texts: [list(cutter.cut(t, HMM=hmm)) for t in texts]


def snownlp_segmenter(train: T.Sentences, folder: Path) -> tuple[Segmenter, float]:
    """snownlp's character-based generative segmenter retrained with its own trainer on
    `char/tag` lines (tags b m e s, as its seg/data.txt); seconds of training second. A "/" in
    a word cannot be written in that format, so it is trained as the full-width "／". Its model
    runs on the whole text (snownlp.seg.seg would keep every non-CJK run as one word).
    snownlp.seg.train replaces the module's segmenter: one retrained snownlp per process."""
    import snownlp.seg

    lines = (" ".join(f"{'／' if ch == '/' else ch}/{tag[0].lower()}"
                      for ch, tag in zip(s.units, s.tags, strict=True))
             for s in train.items if s.units)
    data = write_text(folder / "snownlp-train.txt", "\n".join(lines) + "\n", overwrite=True)
    started = time.perf_counter()
    snownlp.seg.train(str(data))
    seconds = time.perf_counter() - started
    return (lambda texts: [list(snownlp.seg.segger.seg(t)) for t in texts]), seconds


def score_segmenter(name: str, segment: Segmenter, test: T.Sentences, lexicon: set[str],
                    train_seconds: float | None = None) -> dict[str, Any]:
    """Word P/R/F1, OOV / IV recall against `lexicon` (the training words) and characters per
    second (after a warm-up on 50 texts) of `segment` on the non-empty test sentences."""
    items = [s for s in test.items if s.units]
    texts = [s.text for s in items]
    segment(texts[:50])
    started = time.perf_counter()
    predicted = segment(texts)
    seconds = time.perf_counter() - started
    for text, words in zip(texts, predicted, strict=True):
        if "".join(words) != text:
            raise AssertionError(f"{name} changed the text {text[:40]!r}")
    s = segmentation_scores([s.tags for s in items], [T.words_to_tags(w) for w in predicted],
                            texts, lexicon)
    return {"system": name, "f1": s["f1"], "precision": s["precision"], "recall": s["recall"],
            "oov_recall": s["oov_recall"], "iv_recall": s["iv_recall"],
            "chars_per_s": sum(map(len, texts)) / max(seconds, 1e-9),
            "train_seconds": train_seconds}
