"""`minitf pretrain` on the command line: flags → PretrainConfig → minitf/recipes/pretrain.py.

The flags are PretrainConfig's fields, generated from their declarations in
minitf/recipes/options.py.
"""

from __future__ import annotations

import argparse

from minitf.cli.common import run_recipe
from minitf.recipes import options as O
from minitf.recipes.pretrain import PretrainConfig, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    O.add_config_arguments(parser, PretrainConfig)


def run(args: argparse.Namespace) -> int:
    return run_recipe(pretrain, O.config_from_args(PretrainConfig, args))
