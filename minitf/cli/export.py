"""`minitf export --format onnx --model DIR --output FILE`: a model directory as an ONNX file."""

from __future__ import annotations

import argparse

from minitf.recipes import options as O
from minitf.tasks.export import FORMATS, OPSET, export_onnx, load_for_export, output_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    O.add_options(parser, [
        O.MODEL.but(default=None, required=True, help="model directory (an encoder, or a "
                    "classifier: a config.json with id2label) or name"),
        O.OUTPUT.but(help="the .onnx file to write")])
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (default: "
                        "%(default)s)")
    O.add_options(parser, [O.OVERWRITE.but(
        help="replace --output if it exists (else an existing file is an error)")])


def run(args: argparse.Namespace) -> int:
    model = load_for_export(args.model)
    path = export_onnx(model, args.output, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, opset {args.opset}): inputs "
          f"input_ids, attention_mask, token_type_ids (batch, sequence) int64 → outputs "
          f"{', '.join(output_names(model))}")
    return 0
