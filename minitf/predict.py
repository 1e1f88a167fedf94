"""`minitf predict`: labels and class probabilities from a fine-tuned classifier, for texts on
the command line (a readable table) or a file (one JSON object per line)."""

from __future__ import annotations

import argparse
import json
import sys

from minitf.errors import MinitfError
from minitf.evaluate import add_data_arguments, load_for_inference, predict_logits, read_file
from minitf.train import data as D


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--model", required=True, help="fine-tuned classifier directory")
    parser.add_argument("--data", help="a .csv, .tsv or .jsonl file of texts (labels ignored)")
    parser.add_argument("--output", help="write the JSONL here instead of stdout")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.data):
        raise MinitfError("give either texts or --data FILE")
    model, tokenizer, labels = load_for_inference(args.model, args.attn_backend)
    if args.data:
        examples = read_file(args, require_labels=False)
    else:
        examples = D.Examples(list(args.texts), [None] * len(args.texts))
    data = D.encode(examples, tokenizer, None, args.max_length)
    probs = predict_logits(model, data, batch_size=args.batch_size).softmax(-1)
    if not args.data:
        width = max(len(x) for x in labels)
        for text, p in zip(examples.texts, probs.tolist(), strict=True):
            best = max(range(len(labels)), key=p.__getitem__)
            spread = "  ".join(f"{name} {q:.3f}" for name, q in zip(labels, p, strict=True))
            print(f"{labels[best]:<{width}}  [{spread}]  {text}")
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for i, p in enumerate(probs.tolist()):
            best = max(range(len(labels)), key=p.__getitem__)
            record = {"line": examples.lines[i], "text": examples.texts[i]}
            if examples.pairs is not None:
                record["text_pair"] = examples.pairs[i]
            record.update(label=labels[best], probabilities=dict(zip(labels, p, strict=True)))
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
