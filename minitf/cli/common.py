"""What several commands share: running a recipe, reading a data file, loading a classifier.

Their flags are declared once, in minitf/recipes/options.py (INFERENCE_OPTIONS).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch

from minitf.data import examples as D
from minitf.model.precision import apply_precision, pick_device
from minitf.recipes import options as O
from minitf.tasks import classify as inference


def run_recipe(recipe: Callable[[Any], Any], config: Any) -> int:
    """Run a recipe; an interrupted (saved) run exits 130 after Ctrl-C, 143 after SIGTERM."""
    result = recipe(config)
    if result.interrupted:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 128 + (result.stop_signal or 2)
    return 0


def add_inference_arguments(parser: argparse.ArgumentParser, data_help: str,
                            data_required: bool) -> None:
    """--model, --adapter, --data and the flags for reading it and running a model over it."""
    O.add_options(parser, [
        O.MODEL.but(default=None, required=True, help="fine-tuned classifier directory (or, "
                    "with --adapter, the base model)"),
        O.ADAPTER, O.DATA.but(help=data_help, required=data_required), *O.INFERENCE_OPTIONS,
        O.PROMPT.but(help="with --verbalizer: use a masked-LM --model as a prompt classifier "
                     "(zero-shot), e.g. '{text}总之很[MASK]。'"), O.VERBALIZER])


def read_file(args: argparse.Namespace, require_labels: bool) -> D.Examples:
    """args.data read with the flags of INFERENCE_OPTIONS."""
    return D.read_examples(args.data, args.text_column, args.pair_column, args.label_column,
                           format=args.format, encoding=args.encoding,
                           encoding_errors=args.encoding_errors,
                           skip_bad_rows=args.skip_bad_rows, require_labels=require_labels)


def load_classifier(args: argparse.Namespace) -> tuple[Any, Any, list[str], torch.device]:
    """What `minitf evaluate` and `minitf predict` start from: the classifier of --model (with
    --adapter) on --device in --precision, its tokenizer, its label names and the device."""
    O.check_args(args, O.INFERENCE_OPTIONS)
    device = pick_device(args.device)
    model, tokenizer, labels = inference.load_for_inference(
        args.model, args.attn_backend, device, args.adapter, args.prompt, args.verbalizer)
    model = apply_precision(model, args.precision, device)[0]
    return model, tokenizer, labels, device
