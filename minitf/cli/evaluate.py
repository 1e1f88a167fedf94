"""`minitf evaluate`: accuracy, macro-F1, per-class F1 and the confusion matrix of a fine-tuned
classifier on a labelled file (MSE, MAE and Pearson r for a regression model)."""

from __future__ import annotations

import argparse
import json

from minitf import inference
from minitf.cli.common import add_data_arguments, read_file
from minitf.errors import MinitfError
from minitf.precision import apply_precision
from minitf.train import data as D
from minitf.train.metrics import format_report
from minitf.train.step import pick_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="fine-tuned classifier directory (or, "
                        "with --adapter, the base model)")
    parser.add_argument("--adapter", help="a PEFT LoRA adapter directory for --model")
    parser.add_argument("--data", required=True, help="labelled .csv, .tsv or .jsonl file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise MinitfError("--batch-size must be at least 1")
    device = pick_device(args.device)
    model, tokenizer, labels = inference.load_for_inference(args.model, args.attn_backend,
                                                            device, args.adapter)
    model = apply_precision(model, args.precision, device)[0]
    examples = read_file(args, require_labels=True)
    examples, targets = (D.label_values(examples, args.skip_bad_rows) if len(labels) == 1
                         else D.label_ids(examples, labels, args.skip_bad_rows))
    data = D.encode(examples, tokenizer, targets, args.max_length)
    metrics = inference.evaluate_encoded(model, data, labels, batch_size=args.batch_size,
                                         device=device)
    metrics["skipped"] = examples.skipped
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.data} with {args.model}:")
        print(format_report(metrics))
        if examples.skipped:
            print(f"({examples.skipped} bad rows skipped)")
    return 0
