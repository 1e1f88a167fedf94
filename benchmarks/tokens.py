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
from minitf.tasks import segmenters as S  # noqa: E402
from minitf.tasks.tokens import TokenTagger  # noqa: E402
from minitf.tokenizers.wordpiece import load_tokenizer  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
Segmenter = Callable[[list[str]], list[list[str]]]


def score(name: str, segment: S.Segmenter, test: tuple, train_s: float | None = None) -> dict:
    row = S.score_segmenter(name, segment, *test, train_seconds=train_s)
    print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# The peers, each retrained on the training paragraphs (minitf/tasks/segmenters.py)
# ---------------------------------------------------------------------------------------------


def jieba_rows(train: T.Sentences, work: Path, test: tuple) -> list[dict]:
    try:
        return [score(f"jieba (training dictionary, HMM {'on' if hmm else 'off'})",
                      S.jieba_segmenter(train, work, hmm), test) for hmm in (False, True)]
    except ImportError:
        print("jieba not installed: skipped", file=sys.stderr)
        return []


def snownlp_row(train: T.Sentences, work: Path, test: tuple, paragraphs: int | None
                ) -> list[dict]:
    items = [s for s in train.items if s.units][:paragraphs]
    try:
        segment, seconds = S.snownlp_segmenter(T.Sentences(items, train.format), work)
    except ImportError:
        print("snownlp not installed: skipped", file=sys.stderr)
        return []
    return [score(f"snownlp (retrained on {len(items):,} paragraphs)", segment, test, seconds)]


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
                  lambda ts: [cutter.cut(t) for t in ts], test, seconds)]


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
                          test, train_s))
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="minitf-tokens-"))
    data = prepare_pd(work / "pd", seed=0).folder
    train = T.read_sentences(data / "train.words", "words")
    test = (T.read_sentences(data / "test.words", "words"), set(S.training_words(train)))
    rows = [score("fmm (training lexicon)", S.fmm_segmenter(train), test)]
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
        trained = "" if r["train_seconds"] is None else f"{r['train_seconds']:,.0f}"
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
