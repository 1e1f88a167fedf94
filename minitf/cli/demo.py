"""`minitf demo` / `make demo`: the recipe in minitf/recipes/demo.py, from the command line."""

from __future__ import annotations

import argparse

from minitf.recipes import options as O
from minitf.recipes.demo import DEFAULT_OUTPUT, demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    O.add_options(parser, [
        O.MODEL.but(default="minilm", help="pre-trained model (default: MiniLM)"),
        O.OUTPUT.but(default=DEFAULT_OUTPUT, required=False,
                     help="where the fine-tuned classifier goes (default: %(default)s)"),
        O.EPOCHS, O.FREEZE.but(default="layers:4")])
    parser.add_argument("--train-samples", type=int, default=15000)
    parser.add_argument("--lang", default="en", choices=("en", "zh"),
                        help="zh: pre-train a Chinese BERT, then fine-tune it "
                        "(minitf/recipes/demo_zh.py; --output default demo-zh)")
    parser.add_argument("--pretrain-minutes", type=float,
                        help="with --lang zh (default: 5, DemoZhConfig's)")


def run(args: argparse.Namespace) -> int:
    if args.lang == "zh":
        from minitf.recipes.demo_zh import DemoZhConfig, demo_zh
        output = "demo-zh" if args.output == DEFAULT_OUTPUT else args.output
        budget = {} if args.pretrain_minutes is None else {"pretrain_minutes":
                                                            args.pretrain_minutes}
        demo_zh(DemoZhConfig(output=output, **budget))
        return 0
    return demo(args.output, args.model, args.train_samples, args.epochs, args.freeze)
