"""`minitf demo` / `make demo`: the recipe in minitf/recipes/demo.py, from the command line."""

from __future__ import annotations

import argparse

from minitf.recipes.demo import DEFAULT_OUTPUT, demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="pre-trained model (default: MiniLM)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="where the fine-tuned classifier goes (default: %(default)s)")
    parser.add_argument("--train-samples", type=int, default=15000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--freeze", default="layers:4")


def run(args: argparse.Namespace) -> int:
    return demo(args.output, args.model, args.train_samples, args.epochs, args.freeze)
