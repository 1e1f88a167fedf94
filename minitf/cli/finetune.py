"""`minitf finetune` on the command line: flags → FinetuneConfig → minitf/recipes/finetune.py.

The flags are FinetuneConfig's fields, generated from their declarations in
minitf/recipes/options.py.
"""

from __future__ import annotations

import argparse

from minitf.cli.common import run_recipe
from minitf.recipes import options as O
from minitf.recipes.finetune import FinetuneConfig, finetune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    O.add_config_arguments(parser, FinetuneConfig)


def run(args: argparse.Namespace) -> int:
    return run_recipe(finetune, O.config_from_args(FinetuneConfig, args))
