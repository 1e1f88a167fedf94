"""`minitf finetune` on the command line: flags → FinetuneConfig → the recipe in finetune.py.

The flags mirror FinetuneConfig's fields one to one; their defaults come from it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from minitf.cli.common import add_backend_argument
from minitf.data import examples as D
from minitf.model.freeze import POLICIES
from minitf.model.lora import TARGETS
from minitf.recipes.finetune import SELECT_METRICS, FinetuneConfig, finetune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FinetuneConfig(train="", output="")
    parser.add_argument("--model", default=d.model, help="pre-trained BERT directory or name "
                        "(default: %(default)s)")
    parser.add_argument("--train", required=True, help="training data: .csv, .tsv or .jsonl")
    parser.add_argument("--output", required=True, help="directory for checkpoints and metrics")
    parser.add_argument("--validation", help="validation file (default: hold out "
                        "--validation-fraction of --train)")
    parser.add_argument("--test", help="test file, evaluated once with the best checkpoint")
    parser.add_argument("--validation-fraction", type=float, default=d.validation_fraction)
    parser.add_argument("--test-fraction", type=float, default=d.test_fraction,
                        help="hold out this fraction of --train as test data (no --test)")
    parser.add_argument("--max-train-samples", type=int, help="train on a seeded subset")
    add_data_arguments(parser.add_argument_group("data columns and format"), d)
    add_recipe_arguments(parser.add_argument_group("the recipe"), d)
    add_lora_arguments(parser.add_argument_group("LoRA adapters (minitf/model/lora.py)"), d)
    add_run_arguments(parser.add_argument_group("running"), d)


def add_data_arguments(data: argparse._ArgumentGroup, d: FinetuneConfig) -> None:
    data.add_argument("--text-column", help=f"default: first of {', '.join(D.TEXT_COLUMNS)}")
    data.add_argument("--text-pair-column", dest="pair_column",
                      help="second text of sentence pairs (default: sentence2 / #2 String "
                           "when the text column is sentence1 / #1 String)")
    data.add_argument("--label-column", help=f"default: first of {', '.join(D.LABEL_COLUMNS)}")
    data.add_argument("--format", choices=D.FORMATS, help="default: from the file extension")
    data.add_argument("--encoding", default=d.encoding)
    data.add_argument("--encoding-errors", default=d.encoding_errors,
                      choices=("strict", "replace"), help="replace: undecodable bytes → U+FFFD")
    data.add_argument("--skip-bad-rows", action="store_true",
                      help="skip (and count) malformed rows instead of stopping")
    data.add_argument("--regression", action="store_true",
                      help="the labels are numbers: train one output with MSE")


def add_recipe_arguments(recipe: argparse._ArgumentGroup, d: FinetuneConfig) -> None:
    recipe.add_argument("--epochs", type=int, default=d.epochs)
    recipe.add_argument("--batch-size", type=int, default=d.batch_size)
    recipe.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    recipe.add_argument("--weight-decay", type=float, default=d.weight_decay)
    recipe.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    recipe.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    recipe.add_argument("--max-length", type=int, default=d.max_length,
                        help="tokens per example, [CLS] and [SEP] included")
    recipe.add_argument("--freeze", default=d.freeze, help=f"{POLICIES} (default: none)")
    recipe.add_argument("--no-cache", dest="cache", action="store_false",
                        help="recompute the frozen prefix every epoch instead of caching it")
    recipe.add_argument("--seed", type=int, default=d.seed)
    recipe.add_argument("--patience", type=int, default=d.patience,
                        help="stop after N epochs without improvement (0: never)")
    recipe.add_argument("--select-metric", default=d.select_metric,
                        choices=("auto", *SELECT_METRICS), help="picks the best checkpoint "
                        "(auto: accuracy; loss for --regression)")


def add_lora_arguments(lora: argparse._ArgumentGroup, d: FinetuneConfig) -> None:
    lora.add_argument("--lora", type=int, default=d.lora, metavar="R",
                      help="train rank-R adapters instead of the weights (8 is usual)")
    lora.add_argument("--lora-alpha", type=float, help="scale alpha/R (default: 2R)")
    lora.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    lora.add_argument("--lora-targets", default=d.lora_targets,
                      help=f"comma-separated: {', '.join(TARGETS)}; or all-linear "
                      "(default: %(default)s)")
    lora.add_argument("--lora-layers", default=d.lora_layers,
                      help="e.g. 4-5 or 0,2,4 (default: all); the layers below are cached")
    lora.add_argument("--adapter", help="a PEFT LoRA adapter directory to continue training")


def add_run_arguments(run_group: argparse._ArgumentGroup, d: FinetuneConfig) -> None:
    run_group.add_argument("--resume", action="store_true", help="continue from --output/last")
    run_group.add_argument("--overwrite", action="store_true",
                           help="start afresh in an --output that holds an earlier run")
    run_group.add_argument("--save-every", type=int, default=0,
                           help="also checkpoint every N steps (default: each epoch)")
    run_group.add_argument("--stop-after-steps", type=int,
                           help="stop like Ctrl-C after N steps (saved; continue with --resume)")
    run_group.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    run_group.add_argument("--precision", default=d.precision,
                           choices=("auto", "fp32", "bf16", "fp16"))
    add_backend_argument(run_group, d.attn_backend)
    run_group.add_argument("--progress", default=d.progress, choices=("auto", "bar", "log", "off"))
    run_group.add_argument("--dist-timeout", type=float, default=d.dist_timeout,
                           help="under torchrun: seconds to wait for the other processes in a "
                           "collective before stopping with an error (default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    names = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args: argparse.Namespace) -> int:
    result = finetune(config_from_args(args))
    if result.interrupted:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 128 + (result.stop_signal or 2)  # 130 after Ctrl-C, 143 after SIGTERM
    return 0
