"""Chinese word segmentation on People's Daily: minitf next to its peers, one split, one run.

    python benchmarks/tokens.py [--pretrain-minutes 3] [--epochs 1] [--train-paragraphs N]
                                [--scratch] [--model DIR] [--pkuseg] [--snownlp-paragraphs N]

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
    minitf     BertForTokenClassification fine-tuned with `minitf finetune --task segment`, by
               `make demo-seg`'s recipe (minitf/recipes/demo_seg.py: a character vocabulary,
               --pretrain-minutes of masked-LM pre-training on the training paragraphs + the
               training reviews, --epochs of fine-tuning on --train-paragraphs) and, with
               --scratch, the same without pre-training; or --model DIR: an already fine-tuned
               segmenter (of the same split); each scored at fp32, bf16 (marked
               "emulated" where the CPU lacks fast bf16 instructions:
               minitf.model.precision.cpu_capability) and int8 (dynamic quantisation of the
               linears, minitf.model.precision.quantize_int8): `--precision` of `minitf segment`;
               decoded with constrained Viterbi and the model's lexicon (the training words,
               at the weight fine-tuning picked on validation), and at fp32 also without the
               lexicon and with per-position argmax (`--lexicon-weight 0`, `--decoder argmax`
               of `minitf segment`, minitf/tasks/decode.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header  # noqa: E402

from minitf.data import tokens as T  # noqa: E402
from minitf.data.corpora import prepare_pd  # noqa: E402
from minitf.model.bert import BertForTokenClassification  # noqa: E402
from minitf.model.precision import apply_precision, cpu_capability  # noqa: E402
from minitf.tasks import segmenters as S  # noqa: E402
from minitf.tasks.tokens import TokenTagger, model_lexicon  # noqa: E402
from minitf.tokenizers.wordpiece import load_tokenizer  # noqa: E402


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


def train_minitf(data: Path, work: Path, args: argparse.Namespace) -> list[tuple[str, Path, float]]:
    """`make demo-seg`'s recipe (minitf/recipes/demo_seg.py) with this run's budgets: the
    character tokenizer and --pretrain-minutes of pre-training on the training paragraphs +
    reviews, then --epochs of `finetune --task segment`; and with --scratch the same from the
    initialisation (`pretrain --max-steps 0`). (name, directory, training seconds) each."""
    from minitf.data.corpora import prepare_zh
    from minitf.recipes.demo_seg import DemoSegConfig, finetune_characters, pretrain_characters
    from minitf.recipes.demo_zh import Timer

    say = Timer(time.perf_counter())
    cfg = DemoSegConfig(pretrain_minutes=args.pretrain_minutes, epochs=args.epochs,
                        segment_paragraphs=args.train_paragraphs)
    text = prepare_zh(work / "zh", seed=0).pretrain
    models = []
    for minutes in ([args.pretrain_minutes] if args.pretrain_minutes else []) + \
            ([0.0] if args.scratch else []):
        folder = work / f"pretrained-{minutes:g}min"
        started = time.perf_counter()
        bert, steps = pretrain_characters(
            replace(cfg, pretrain_minutes=minutes, pretrain_steps=None if minutes else 0),
            text, folder, say)
        pretrain_s = time.perf_counter() - started
        best, seconds = finetune_characters(cfg, "segment", bert, data, folder, say)
        name = (f"{cfg.config} 4 heads, {steps} pre-training steps ({minutes:g} min)"
                if minutes else f"{cfg.config} 4 heads, no pre-training")
        models.append((f"{name}, {args.epochs} epoch(s)", best, seconds + pretrain_s))
    return models


def minitf_rows(directory: Path, name: str, test: tuple, train_s: float | None) -> list[dict]:
    """The segmenter as `minitf segment` runs it (fp32, constrained Viterbi with the model's
    lexicon.txt and the weight fine-tuning picked), then one change at a time: no lexicon
    (`--lexicon-weight 0`), per-position argmax (`--decoder argmax`), bf16 and int8
    (`--precision`)."""
    rows = []
    fast_bf16 = cpu_capability().fast_bf16
    lexicon = model_lexicon(directory)
    for precision, decoder, weight in (("fp32", "viterbi", None), ("fp32", "viterbi", 0.0),
                                       ("fp32", "argmax", None), ("bf16", "viterbi", None),
                                       ("int8", "viterbi", None)):
        model = BertForTokenClassification.from_pretrained(directory)
        model, mode = apply_precision(model, precision)
        tagger = TokenTagger(model, load_tokenizer(directory), batch_size=64,
                             autocast=mode.autocast, decoder=decoder, lexicon=lexicon,
                             lexicon_weight=weight)
        label = precision + (" emulated: no fast bf16 on this CPU"
                             if precision == "bf16" and not fast_bf16 else "") + f", {decoder}"
        if tagger.uses_lexicon:
            label += f" + lexicon (weight {tagger.lexicon_weight:g})"
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
        for name, best, seconds in train_minitf(data, work, args):
            rows += minitf_rows(best, name, test, seconds)
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
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--train-paragraphs", type=int, default=None,
                        help="fine-tune on a seeded sample of N training paragraphs")
    parser.add_argument("--pretrain-minutes", type=float, default=3.0,
                        help="pre-training budget (0: none)")
    parser.add_argument("--scratch", action="store_true",
                        help="also fine-tune the same model from its initialisation")
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
