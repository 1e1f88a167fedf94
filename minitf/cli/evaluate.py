"""`minitf evaluate`: accuracy, macro-F1, per-class F1 and the confusion matrix of a fine-tuned
classifier on a labelled file (MSE, MAE and Pearson r for a regression model)."""

from __future__ import annotations

import argparse
import json

from minitf.cli.common import add_inference_arguments, load_classifier, read_file
from minitf.data import examples as D
from minitf.recipes import options as O
from minitf.tasks import classify as inference
from minitf.tasks.metrics import format_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inference_arguments(parser, "labelled .csv, .tsv or .jsonl file", data_required=True)
    O.add_options(parser, [O.JSON.but(help="print one JSON object")])


def run(args: argparse.Namespace) -> int:
    model, tokenizer, labels, device = load_classifier(args)
    examples = read_file(args, require_labels=True)
    examples, targets = (D.label_values(examples, args.skip_bad_rows) if len(labels) == 1
                         else D.label_ids(examples, labels, args.skip_bad_rows))
    data = inference.encode_examples(model, examples, tokenizer, targets, args.max_length)
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
