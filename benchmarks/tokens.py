"""Chinese word segmentation on People's Daily: minitf next to its peers, one split, one run.

    python benchmarks/tokens.py [--epochs 2] [--train-paragraphs N] [--hidden 128 --layers 2]
                                [--model DIR] [--pkuseg] [--snownlp-paragraphs N]

Data: minitf.data.corpora.prepare_pd (seed 0; 80/10/10 by distinct paragraph). Every system
learns from the training paragraphs only, and is scored on the test paragraphs with SIGHAN's
definition (minitf.tasks.token_metrics.segmentation_scores): word P/R/F1, OOV / IV recall
against the training lexicon. Characters per second: segmenting the test paragraphs, one
process, after a warm-up, on this machine in this run. train_s: the training time in this run.

    fmm        forward maximum matching with the training lexicon
    jieba      (if installed) with a dictionary rebuilt from the training words, HMM off / on
    snownlp    (if installed) its character-based generative segmenter retrained with its own
               trainer (snownlp.seg.train) on the training paragraphs (--snownlp-paragraphs N:
               the first N of them); its shipped model saw all of People's Daily, test included
    pkuseg     (--pkuseg; slow: ~45 min) its CRF retrained with pkuseg.train for
               --pkuseg-iterations on train.words (validation.words as its dev file), cut with
               no dictionary (user_dict=None)
    minitf     BertForTokenClassification fine-tuned with `minitf finetune --task segment`:
               trained here from scratch (a character vocabulary from the training text, no
               pre-training), or --model DIR: an already fine-tuned segmenter (e.g. pre-trained,
               then fine-tuned on train.words of the same split); scored at fp32, bf16 (marked
               "emulated" where the CPU lacks fast bf16 instructions:
               minitf.model.precision.cpu_capability) and int8 (dynamic quantisation of the
               linears, minitf.model.precision.quantize_int8): `--precision` of `minitf segment`
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header  # noqa: E402

from minitf.data import tokens as T  # noqa: E402
from minitf.data.corpora import prepare_pd  # noqa: E402
from minitf.model.bert import BertForTokenClassification, BertModel  # noqa: E402
from minitf.model.config import BertConfig  # noqa: E402
from minitf.model.precision import apply_precision, cpu_capability  # noqa: E402
from minitf.recipes.finetune import FinetuneConfig, finetune  # noqa: E402
from minitf.tasks.token_metrics import segmentation_scores  # noqa: E402
from minitf.tasks.tokens import TokenTagger  # noqa: E402
from minitf.tokenizers.wordpiece import load_tokenizer  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
Segmenter = Callable[[list[str]], list[list[str]]]


def fmm(text: str, lexicon: set[str], longest: int) -> list[str]:
    words, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if n == 1 or text[i:i + n] in lexicon:
                words.append(text[i:i + n])
                i += n
                break
    return words


def score(name: str, segment: Segmenter, texts: list[str], gold: list[list[str]],
          lexicon: set[str], train_s: float | None = None) -> dict:
    segment(texts[:50])  # warm-up
    started = time.perf_counter()
    predicted = segment(texts)
    seconds = time.perf_counter() - started
    for text, words in zip(texts, predicted, strict=True):
        assert "".join(words) == text, (name, text[:40])   # predictions never change the text
    s = segmentation_scores(gold, [T.words_to_tags(w) for w in predicted], texts, lexicon)
    row = {"system": name, "f1": s["f1"], "precision": s["precision"], "recall": s["recall"],
           "oov_recall": s["oov_recall"], "iv_recall": s["iv_recall"],
           "chars_per_s": sum(map(len, texts)) / seconds, "train_s": train_s}
    print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# The peers, each retrained on the training paragraphs
# ---------------------------------------------------------------------------------------------


def jieba_rows(train: T.Sentences, work: Path, test: tuple) -> list[dict]:
    try:
        import jieba
    except ImportError:
        print("jieba not installed: skipped", file=sys.stderr)
        return []
    freq = collections.Counter(s.text[a:b] for s in train.items
                               for a, b, _ in T.tags_to_spans(s.tags))
    (work / "dict.txt").write_text("".join(f"{w} {n}\n" for w, n in freq.items()),
                                   encoding="utf-8")
    cutter = jieba.Tokenizer(dictionary=str(work / "dict.txt"))
    return [score(f"jieba (training dictionary, HMM {'on' if hmm else 'off'})",
                  lambda ts, h=hmm: [list(cutter.cut(t, HMM=h)) for t in ts], *test)
            for hmm in (False, True)]


def snownlp_row(train: T.Sentences, work: Path, test: tuple, paragraphs: int | None
                ) -> list[dict]:
    """snownlp.seg retrained with its own trainer: a file of `char/tag` tokens (tags b, m, e,
    s) per line, as its seg/data.txt. A `/` inside a word cannot be written in that format
    (the trainer splits tokens at `/`); it is written as the full-width `／` for training."""
    try:
        import snownlp.seg
    except ImportError:
        print("snownlp not installed: skipped", file=sys.stderr)
        return []
    items = [s for s in train.items if s.units][:paragraphs]
    lines = (" ".join(f"{'／' if ch == '/' else ch}/{tag[0].lower()}"
                      for ch, tag in zip(s.units, s.tags, strict=True)) for s in items)
    (work / "snownlp.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.perf_counter()
    snownlp.seg.train(str(work / "snownlp.txt"))   # replaces the module's segmenter
    seconds = time.perf_counter() - started
    print(f"snownlp: trained on {len(items)} paragraphs in {seconds:.1f} s", file=sys.stderr)
    # Its model on the whole text (as trained), and snownlp.seg.seg (SnowNLP(text).words): the
    # model on runs of CJK ideographs only, every other run (digits, punctuation) one word.
    name = f"snownlp (retrained on {len(items):,} paragraphs"
    return [score(name + ", model on the whole text)",
                  lambda ts: [list(snownlp.seg.segger.seg(t)) for t in ts], *test,
                  train_s=seconds),
            score(name + ", snownlp.seg.seg: non-CJK runs one word)",
                  lambda ts: [snownlp.seg.seg(t) for t in ts], *test, train_s=seconds)]


def pkuseg_row(data: Path, work: Path, test: tuple, iterations: int) -> list[dict]:
    """pkuseg's CRF retrained by pkuseg.train (its working files: a temporary directory)."""
    import pkuseg
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its progress; stdout is the results
        pkuseg.train(str(data / "train.words"), str(data / "validation.words"),
                     str(work / "pkuseg"), train_iter=iterations)
    seconds = time.perf_counter() - started
    cutter = pkuseg.pkuseg(model_name=str(work / "pkuseg"), user_dict=None)
    return [score(f"pkuseg (retrained, {iterations} iterations, no dictionary)",
                  lambda ts: [cutter.cut(t) for t in ts], *test, train_s=seconds)]


# ---------------------------------------------------------------------------------------------
# minitf
# ---------------------------------------------------------------------------------------------


def train_minitf(data: Path, work: Path, args: argparse.Namespace) -> Path:
    counts = collections.Counter((data / "train.words").read_text(encoding="utf-8"))
    chars = sorted(c for c in counts if not c.isspace())
    model = work / "init"
    model.mkdir(parents=True)
    (model / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(SPECIALS) + len(chars), hidden_size=args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 32,
                         intermediate_size=4 * args.hidden, max_position_embeddings=128)
              ).save_pretrained(model)
    finetune(FinetuneConfig(task="segment", train=str(data / "train.words"),
                            validation=str(data / "validation.words"), model=str(model),
                            output=str(work / "seg"), epochs=args.epochs, batch_size=32,
                            lr=args.lr, max_length=128, progress="log",
                            max_train_samples=args.train_paragraphs))
    return work / "seg" / "best"


def minitf_rows(directory: Path, name: str, test: tuple, train_s: float | None) -> list[dict]:
    """The segmenter at fp32, bf16 and int8 (as `minitf segment --precision`)."""
    rows = []
    fast_bf16 = cpu_capability().fast_bf16
    for precision in ("fp32", "bf16", "int8"):
        model = BertForTokenClassification.from_pretrained(directory)
        model, mode = apply_precision(model, precision)
        tagger = TokenTagger(model, load_tokenizer(directory), batch_size=64,
                             autocast=mode.autocast)
        label = precision + (" emulated: no fast bf16 on this CPU"
                             if precision == "bf16" and not fast_bf16 else "")
        rows.append(score(f"minitf ({name}, {label})",
                          lambda ts, t=tagger: [[w.text for w in ws] for ws in t.segment(ts)],
                          *test, train_s=train_s))
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="minitf-tokens-"))
    data = prepare_pd(work / "pd", seed=0).folder
    train = T.read_sentences(data / "train.words", "words")
    test_items = [s for s in T.read_sentences(data / "test.words", "words").items if s.units]
    lexicon = {s.text[a:b] for s in train.items for a, b, _ in T.tags_to_spans(s.tags)}
    test = ([s.text for s in test_items], [s.tags for s in test_items], lexicon)
    longest = max(map(len, lexicon))
    rows = [score("fmm (training lexicon)",
                  lambda ts: [fmm(t, lexicon, longest) for t in ts], *test)]
    rows += jieba_rows(train, work, test)
    rows += snownlp_row(train, work, test, args.snownlp_paragraphs)
    if args.pkuseg:
        rows += pkuseg_row(data, work, test, args.pkuseg_iterations)
    if args.model:
        rows += minitf_rows(Path(args.model), f"--model {args.model}", test, None)
    else:
        started = time.perf_counter()
        best = train_minitf(data, work, args)
        rows += minitf_rows(best, f"{args.layers}×{args.hidden}, no pre-training", test,
                            time.perf_counter() - started)
    print(json.dumps({"machine": machine_header(), "args": vars(args), "rows": rows},
                     ensure_ascii=False, indent=1))
    print("\n| system | word F1 | P | R | OOV recall | IV recall | chars/s | train s |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        trained = "" if r["train_s"] is None else f"{r['train_s']:,.0f}"
        print(f"| {r['system']} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
              f"{r['oov_recall']:.3f} | {r['iv_recall']:.4f} | {r['chars_per_s']:,.0f} | "
              f"{trained} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-paragraphs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None,
                        help="score this fine-tuned minitf segmenter instead of training one")
    parser.add_argument("--pkuseg", action="store_true",
                        help="also retrain pkuseg (pip install pkuseg; ~45 min)")
    parser.add_argument("--pkuseg-iterations", type=int, default=10)
    parser.add_argument("--snownlp-paragraphs", type=int, default=None,
                        help="retrain snownlp on the first N training paragraphs (default: all)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
