"""`minitf evaluate`: accuracy, macro-F1, per-class F1 and the confusion matrix of a fine-tuned
classifier on a labelled file. Also the evaluation used during fine-tuning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from minitf.errors import MinitfError
from minitf.model import BertForSequenceClassification
from minitf.train import data as D
from minitf.train.freeze import FreezePlan, PrefixCache, classifier_logits
from minitf.train.metrics import classification_metrics, format_report

NO_FREEZE = FreezePlan("none", None)


def predict_logits(model: BertForSequenceClassification, data: D.Encoded,
                   plan: FreezePlan = NO_FREEZE, cache: PrefixCache | None = None,
                   batch_size: int = 128, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits (n, num_labels) in the data's order, in eval mode, length-sorted batches."""
    was_training = model.training
    model.eval()
    logits = torch.empty(len(data), model.config.num_labels)
    with torch.inference_mode():
        for indices in D.batch_plan(data.lengths, batch_size, shuffle=False):
            batch = {k: v.to(device) for k, v in data.collate(indices).items()}
            logits[indices] = classifier_logits(model, batch, plan, cache, indices).float().cpu()
    model.train(was_training)
    return logits


def evaluate_encoded(model: BertForSequenceClassification, data: D.Encoded, labels: list[str],
                     plan: FreezePlan = NO_FREEZE, cache: PrefixCache | None = None,
                     batch_size: int = 128, device: torch.device | str = "cpu"
                     ) -> dict[str, Any]:
    """classification_metrics plus the mean cross-entropy `loss`."""
    logits = predict_logits(model, data, plan, cache, batch_size, device)
    return logits_metrics(logits, data.labels, labels)


def logits_metrics(logits: torch.Tensor, targets: torch.Tensor, labels: list[str]
                   ) -> dict[str, Any]:
    """classification_metrics of the logits' argmax, plus the mean cross-entropy `loss`."""
    metrics = classification_metrics(targets, logits.argmax(-1), labels)
    metrics["loss"] = F.cross_entropy(logits, targets).item()
    return metrics


def load_tokenizer(directory: str | Path) -> Any:
    """minitf's WordPiece tokenizer from a model directory (vocab.txt + tokenizer config)."""
    from minitf.tokenizer import Tokenizer
    return Tokenizer.from_pretrained(directory)


def load_for_inference(model: str, attn_backend: str = "auto"
                       ) -> tuple[BertForSequenceClassification, Any, list[str]]:
    """A fine-tuned classifier directory → (model, tokenizer, label names in id order)."""
    from minitf.paths import resolve_model_dir

    directory = resolve_model_dir(model)
    classifier = BertForSequenceClassification.from_pretrained(directory,
                                                               attn_backend=attn_backend)
    if not classifier.config.id2label:
        raise MinitfError(f"{directory}: config.json has no id2label; is this a fine-tuned "
                          "classifier (minitf finetune's best/ or last/ directory)?")
    labels = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
    return classifier, load_tokenizer(directory), labels


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-column")
    parser.add_argument("--text-pair-column", dest="pair_column")
    parser.add_argument("--label-column")
    parser.add_argument("--format", choices=D.FORMATS)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--encoding-errors", default="strict", choices=("strict", "replace"))
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--attn-backend", default="auto",
                        choices=("auto", "reference", "sdpa", "triton"))


def read_file(args: argparse.Namespace, require_labels: bool) -> D.Examples:
    return D.read_examples(args.data, args.text_column, args.pair_column, args.label_column,
                           format=args.format, encoding=args.encoding,
                           encoding_errors=args.encoding_errors,
                           skip_bad_rows=args.skip_bad_rows, require_labels=require_labels)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="fine-tuned classifier directory")
    parser.add_argument("--data", required=True, help="labelled .csv, .tsv or .jsonl file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    model, tokenizer, labels = load_for_inference(args.model, args.attn_backend)
    examples, ids = D.label_ids(read_file(args, require_labels=True), labels, args.skip_bad_rows)
    data = D.encode(examples, tokenizer, ids, args.max_length)
    metrics = evaluate_encoded(model, data, labels, batch_size=args.batch_size)
    metrics["skipped"] = examples.skipped
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.data} with {args.model}:")
        print(format_report(metrics))
        if examples.skipped:
            print(f"({examples.skipped} bad rows skipped)")
    return 0
