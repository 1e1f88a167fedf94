"""`minitf encode`: sentence embeddings (mean of the real tokens' last hidden states, as
sentence-transformers computes them for all-MiniLM-L6-v2) and their cosine similarities."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from minitf.model import BertModel
from minitf.paths import DEFAULT_MODEL, resolve_model_dir

EXAMPLES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply today.",
    "Shares dropped as investors panicked.",
    "我喜欢猫。",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="sentences (default: a few examples)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model directory or name")
    parser.add_argument("--attn-backend", default="auto",
                        choices=("auto", "reference", "sdpa", "triton"))


def embed(model: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence vectors (B, C) — padding excluded from the mean."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state                    # (B, N, C)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)    # (B, N, 1)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return F.normalize(mean, dim=-1)


def encode_texts(model: BertModel, tokenizer, texts: list[str], batch_size: int = 32,
                 max_length: int = 512) -> torch.Tensor:
    """Sentence embeddings (len(texts), C) for any number of texts, in their original order.

    Texts are sorted by token count before batching, so each batch pads to a similar length
    and little compute is spent on padding; the result is put back in input order.
    """
    lengths = [len(tokenizer.tokenize(t)) for t in texts]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    out = torch.empty(len(texts), model.config.hidden_size)
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in index], max_length=max_length)
        out[index] = embed(model, batch)
    return out


def run(args: argparse.Namespace) -> int:
    from minitf.tokenizer import Tokenizer

    directory = resolve_model_dir(args.model)
    texts = args.texts or EXAMPLES
    model = BertModel.from_pretrained(directory, attn_backend=args.attn_backend)
    tokenizer = Tokenizer.from_pretrained(directory)
    vectors = embed(model, tokenizer(texts))
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
