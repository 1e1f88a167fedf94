"""`minitf demo` / `make demo`: the main job on real weights (sentence similarities for now)."""

from __future__ import annotations

import argparse

from minitf import encode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    encode.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return encode.run(args)
