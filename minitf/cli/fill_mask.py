"""`minitf fill-mask`: the top-k tokens and their probabilities at each [MASK] of a text."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from minitf.recipes import options as O
from minitf.tasks.fill_mask import FillMask


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="+", help="texts with [MASK] where a token is missing")
    parser.add_argument("--top-k", type=int, default=5, help="predictions per [MASK]")
    O.add_options(parser, [
        O.MODEL.but(default=None, required=True, help="a masked-LM model directory (minitf "
                    "pretrain's output, or any BertForMaskedLM checkpoint)"),
        O.JSON.but(help="one JSON object per text instead of a table"), O.ATTN_BACKEND])


def run(args: argparse.Namespace) -> int:
    fill = FillMask.from_pretrained(args.model, args.attn_backend)
    for text in args.texts:
        masks = fill(text, args.top_k)
        if args.json:
            print(json.dumps({"text": text, "masks": [[asdict(p) for p in row] for row in masks]},
                             ensure_ascii=False))
            continue
        print(text)
        for i, row in enumerate(masks, 1):
            label = f"  [MASK] {i}:" if len(masks) > 1 else " "
            for p in row:
                print(f"{label} {p.score:7.4f}  {p.token:<12} {p.sequence}")
                label = " " * len(label)
    return 0
