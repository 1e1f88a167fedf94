"""`minitf predict`: labels and class probabilities from a fine-tuned classifier (the value, for
a regression model), for texts on the command line (a readable table) or a file (one JSON
object per line)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from minitf.cli.common import add_data_arguments, load_classifier, read_file
from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.tasks import classify as inference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--model", required=True, help="fine-tuned classifier directory (or, "
                        "with --adapter, the base model)")
    parser.add_argument("--adapter", help="a PEFT LoRA adapter directory for --model")
    parser.add_argument("--data", help="a .csv, .tsv or .jsonl file of texts (labels ignored)")
    parser.add_argument("--output", help="write the JSONL here instead of stdout")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output if it exists (else an existing file is an error)")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.data):
        raise MinitfError("give either texts or --data FILE")
    model, tokenizer, labels, device = load_classifier(args)
    if args.data:
        examples = read_file(args, require_labels=False)
    else:
        examples = D.Examples(list(args.texts), [None] * len(args.texts))
    data = D.encode(examples, tokenizer, None, args.max_length)
    logits = inference.predict_logits(model, data, batch_size=args.batch_size, device=device)
    answers = answer(logits, labels)
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


def answer(logits: torch.Tensor, labels: list[str]) -> list[dict[str, Any]]:
    """Per example {"label", "probabilities"}; for a regression model {"label": the value}."""
    if len(labels) == 1:
        return [{"label": value} for value in logits[:, 0].tolist()]
    answers = []
    for p in logits.softmax(-1).tolist():
        best = max(range(len(labels)), key=p.__getitem__)
        answers.append({"label": labels[best], "probabilities": dict(zip(labels, p, strict=True))})
    return answers
