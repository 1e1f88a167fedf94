"""Flags that several commands share: data columns and format, device, batch size, backend."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.attention import BACKENDS
from minitf.model.precision import INFERENCE_PRECISIONS, apply_precision, pick_device
from minitf.tasks import classify as inference


def add_backend_argument(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--attn-backend", default=default, choices=BACKENDS,
                        help="attention implementation (default: %(default)s)")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="auto", choices=INFERENCE_PRECISIONS,
                        help="fp32 exact; bf16/int8 faster on some CPUs; auto: see "
                        "minitf/model/precision.py (default: %(default)s)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Reading a labelled (or unlabelled) file and running a model over it."""
    parser.add_argument("--text-column")
    parser.add_argument("--text-pair-column", dest="pair_column")
    parser.add_argument("--label-column")
    parser.add_argument("--format", choices=D.FORMATS)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--encoding-errors", default="strict", choices=("strict", "replace"))
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128, help="examples per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    add_backend_argument(parser)
    add_precision_argument(parser)


def read_file(args: argparse.Namespace, require_labels: bool) -> D.Examples:
    """args.data read with the flags of add_data_arguments."""
    return D.read_examples(args.data, args.text_column, args.pair_column, args.label_column,
                           format=args.format, encoding=args.encoding,
                           encoding_errors=args.encoding_errors,
                           skip_bad_rows=args.skip_bad_rows, require_labels=require_labels)


def load_classifier(args: argparse.Namespace) -> tuple[Any, Any, list[str], torch.device]:
    """What `minitf evaluate` and `minitf predict` start from: the classifier of --model (with
    --adapter) on --device in --precision, its tokenizer, its label names and the device."""
    if args.batch_size < 1:
        raise MinitfError("--batch-size must be at least 1")
    device = pick_device(args.device)
    model, tokenizer, labels = inference.load_for_inference(args.model, args.attn_backend,
                                                            device, args.adapter)
    model = apply_precision(model, args.precision, device)[0]
    return model, tokenizer, labels, device
