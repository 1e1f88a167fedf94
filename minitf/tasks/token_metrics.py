"""Token-task metrics as the field reports them, from gold and predicted per-position labels.

    segmentation_scores   SIGHAN's scorer: word precision / recall / F1 (a word is right when
                          both its boundaries are), recall of OOV words (not in the training
                          lexicon) and of IV words
    tagging_scores        tag accuracy on the gold words (the predicted tag of a gold word is
                          the one predicted at its first character) and joint segmentation +
                          tag F1 (a word is right when its boundaries and its tag are)
    entity_scores         entity-level exact match, per type and overall (micro), as seqeval
                          defines it: an entity counts when its start, end and type are right

Words are spans (start, end) of character positions, so the same text is never compared by
string: a word that occurs twice in a sentence counts twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from minitf.data.tokens import entity_spans, tags_to_spans


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def segmentation_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                        texts: Sequence[str], lexicon: Iterable[str]) -> dict[str, Any]:
    """gold / predicted: labels per character (B/M/E/S or B-TAG/I-TAG) of each text."""
    lexicon = set(lexicon)
    correct = n_pred = n_gold = 0
    oov = oov_found = iv = iv_found = 0
    for g, p, text in zip(gold, predicted, texts, strict=True):
        gold_words = {(s, e) for s, e, _ in tags_to_spans(g)}
        pred_words = {(s, e) for s, e, _ in tags_to_spans(p)}
        n_gold, n_pred = n_gold + len(gold_words), n_pred + len(pred_words)
        for start, end in gold_words:
            found = (start, end) in pred_words
            correct += found
            if text[start:end] in lexicon:
                iv, iv_found = iv + 1, iv_found + found
            else:
                oov, oov_found = oov + 1, oov_found + found
    return {**prf(correct, n_pred, n_gold), "oov_recall": oov_found / oov if oov else None,
            "iv_recall": iv_found / iv if iv else None, "oov_rate": oov / n_gold if n_gold else 0.0,
            "gold_words": n_gold, "predicted_words": n_pred}


def tagging_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
                   ) -> dict[str, Any]:
    """gold / predicted: B-TAG/I-TAG labels per character of each text."""
    right_tags = words = correct = n_pred = 0
    for g, p in zip(gold, predicted, strict=True):
        gold_words = tags_to_spans(g)
        pred_words = set(tags_to_spans(p))
        words += len(gold_words)
        right_tags += sum(p[s].partition("-")[2] == tag for s, _, tag in gold_words)
        correct += sum(w in pred_words for w in gold_words)
        n_pred += len(pred_words)
    joint = prf(correct, n_pred, words)
    return {"accuracy": right_tags / words if words else 0.0, "joint_f1": joint["f1"],
            "joint_precision": joint["precision"], "joint_recall": joint["recall"],
            "gold_words": words}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
                  ) -> dict[str, Any]:
    """gold / predicted: BIO or BIOES labels per position. Per type and micro overall."""
    counts: dict[str, list[int]] = {}   # type → [correct, predicted, gold]
    for g, p in zip(gold, predicted, strict=True):
        gold_spans, pred_spans = set(entity_spans(g)), set(entity_spans(p))
        for span in gold_spans | pred_spans:
            c = counts.setdefault(span[2], [0, 0, 0])
            c[0] += span in gold_spans and span in pred_spans
            c[1] += span in pred_spans
            c[2] += span in gold_spans
    per_type = {t: {**prf(*c), "support": c[2]} for t, c in sorted(counts.items())}
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {**prf(*total), "support": total[2], "per_type": per_type}
