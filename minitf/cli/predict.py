"""`minitf predict`: labels and class probabilities from a fine-tuned classifier (the value, for
a regression model), for texts on the command line (a readable table) or a file (one JSON
object per line)."""

from __future__ import annotations

import argparse
import json
import sys

from minitf.cli.common import add_inference_arguments, load_classifier, read_file
from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.recipes import options as O
from minitf.tasks import classify as inference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to classify")
    add_inference_arguments(parser, "a .csv, .tsv or .jsonl file of texts (labels ignored)",
                            data_required=False)
    O.add_options(parser, [
        O.OUTPUT.but(required=False, help="write the JSONL here instead of stdout"),
        O.OVERWRITE.but(help="replace --output if it exists (else an existing file is an "
                        "error)")])


def run(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.data):
        raise MinitfError("give either texts or --data FILE")
    model, tokenizer, labels, device = load_classifier(args)
    if args.data:
        examples = read_file(args, require_labels=False)
    else:
        examples = D.Examples(list(args.texts), [None] * len(args.texts))
    classify = inference.Classifier(model, tokenizer, labels, device, args.batch_size,
                                    args.max_length)
    answers = [c.as_dict() for c in classify.classify(examples)]
    if not args.data:
        width = max(len(str(a["label"])) for a in answers) if len(labels) > 1 else 8
        for text, a in zip(examples.texts, answers, strict=True):
            spread = "  ".join(f"{k} {q:.3f}" for k, q in a.get("probabilities", {}).items())
            label = a["label"] if spread else f"{a['label']:.4f}"
            print(f"{label:<{width}}  " + (f"[{spread}]  " if spread else "") + text)
        return 0
    lines = []
    for i, a in enumerate(answers):
        record = {"line": examples.lines[i], "text": examples.texts[i]}
        if examples.pairs is not None:
            record["text_pair"] = examples.pairs[i]
        lines.append(json.dumps({**record, **a}, ensure_ascii=False) + "\n")
    if args.output:  # whole or not at all, never through a symlink (minitf.io)
        write_text(args.output, "".join(lines), overwrite=args.overwrite)
    else:
        sys.stdout.writelines(lines)
    return 0
