"""`minitf encode`: sentence embeddings (mean of the real tokens' last hidden states, as
sentence-transformers computes them for all-MiniLM-L6-v2) and their cosine similarities."""

from __future__ import annotations

import argparse

from minitf.model.bert import BertModel
from minitf.model.precision import apply_precision, pick_device
from minitf.paths import resolve_model_dir
from minitf.recipes import options as O
from minitf.tasks import classify as inference

EXAMPLES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply today.",
    "Shares dropped as investors panicked.",
    "我喜欢猫。",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="sentences (default: a few examples)")
    O.add_options(parser, [O.MODEL.but(help="model directory or name"), O.DEVICE,
                           O.BATCH_SIZE.but(default=32, help="sentences per forward pass"),
                           O.ATTN_BACKEND, O.PRECISION])


def run(args: argparse.Namespace) -> int:
    O.check_args(args, [O.BATCH_SIZE])
    directory = resolve_model_dir(args.model)
    device = pick_device(args.device)
    texts = args.texts or EXAMPLES
    model = BertModel.from_pretrained(directory, attn_backend=args.attn_backend).to(device)
    model = apply_precision(model, args.precision, device)[0]
    tokenizer = inference.load_tokenizer(directory)
    vectors = inference.encode_texts(model, tokenizer, texts, args.batch_size, device=device)
    print(f"model: {directory}  ({model.config.num_hidden_layers} layers, hidden "
          f"{model.config.hidden_size}, attention backend {args.attn_backend})\n")
    for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        head = ", ".join(f"{x:+.3f}" for x in vector[:4].tolist())
        print(f"[{i}] {text}\n    embedding ({vector.numel()} dims): [{head}, ...]")
    print("\ncosine similarity")
    print("     " + "".join(f"{j:>7}" for j in range(len(texts))))
    for i, row in enumerate((vectors @ vectors.T).tolist()):
        print(f"[{i}]  " + "".join(f"{x:7.3f}" for x in row))
    return 0
