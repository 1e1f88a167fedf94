"""`minitf pretrain` on the command line: flags → PretrainConfig → minitf/recipes/pretrain.py."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from minitf.model.attention import BACKENDS
from minitf.recipes.pretrain import SHAPES, PretrainConfig, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PretrainConfig(train=[], output="")
    parser.add_argument("--train", nargs="+", required=True, metavar="FILE",
                        help="text files (one document per line) or CSV/TSV/JSONL files")
    parser.add_argument("--output", required=True,
                        help="directory for the model, checkpoints and metrics")
    parser.add_argument("--validation", help="held-out text (default: hold out "
                        "--validation-fraction of the --train documents)")
    parser.add_argument("--validation-fraction", type=float, default=d.validation_fraction)
    parser.add_argument("--text-column", help="the text column of CSV/TSV/JSONL files")
    start = parser.add_argument_group("the model: from scratch (--tokenizer) or continued "
                                      "(--model)")
    start.add_argument("--tokenizer", help="tokenizer directory (e.g. from `minitf tokenizer "
                       "train`), to pre-train a new model from scratch")
    start.add_argument("--model", help="a BERT directory to continue pre-training")
    start.add_argument("--config", default=d.config, choices=tuple(SHAPES),
                       help="shape from scratch: " + ", ".join(
                           f"{k} {n}×{h} ({a} heads)" for k, (n, h, a) in SHAPES.items())
                       + " (default: %(default)s)")
    start.add_argument("--layers", type=int)
    start.add_argument("--hidden", type=int)
    start.add_argument("--heads", type=int)
    start.add_argument("--intermediate", type=int, help="default: 4 × hidden")
    start.add_argument("--dropout", type=float, default=d.dropout)
    start.add_argument("--init-std", type=float, default=d.init_std,
                       help="standard deviation of the initial weights, saved as "
                       "initializer_range (default: BERT's 0.02; 0.1 left the most-frequent-"
                       "token plateau about twice as soon on the tiny shape, see docs/zh.md)")
    recipe = parser.add_argument_group("the recipe")
    recipe.add_argument("--max-length", type=int, default=d.max_length,
                        help="tokens per block, [CLS] and [SEP] included")
    recipe.add_argument("--mlm-probability", type=float, default=d.mlm_probability)
    recipe.add_argument("--batch-size", type=int, default=d.batch_size, help="blocks per step")
    recipe.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    recipe.add_argument("--weight-decay", type=float, default=d.weight_decay)
    recipe.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    recipe.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    recipe.add_argument("--seed", type=int, default=d.seed)
    length = parser.add_argument_group("how long (at least one)")
    length.add_argument("--max-steps", type=int, help="0: write the initialised model")
    length.add_argument("--epochs", type=int, help="passes over the training blocks")
    length.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="train for about this long; the learning-rate schedule is sized "
                        "to fit it")
    run_group = parser.add_argument_group("running")
    run_group.add_argument("--eval-every", type=int, help="steps (default: ~10 per run)")
    run_group.add_argument("--max-eval-blocks", type=int, default=d.max_eval_blocks)
    run_group.add_argument("--resume", action="store_true", help="continue from --output/last")
    run_group.add_argument("--overwrite", action="store_true",
                           help="start afresh in an --output that holds an earlier run")
    run_group.add_argument("--save-every", type=int, default=0,
                           help="also checkpoint every N steps")
    run_group.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    run_group.add_argument("--precision", default=d.precision,
                           choices=("auto", "fp32", "bf16", "fp16"))
    run_group.add_argument("--attn-backend", default=d.attn_backend,
                           choices=BACKENDS)
    run_group.add_argument("--progress", default=d.progress, choices=("auto", "bar", "log", "off"))
    run_group.add_argument("--dist-timeout", type=float, default=d.dist_timeout)


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(PretrainConfig)}
    result = pretrain(PretrainConfig(**{k: v for k, v in vars(args).items() if k in names}))
    if result.interrupted:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 128 + (result.stop_signal or 2)  # 130 after Ctrl-C, 143 after SIGTERM
    return 0
