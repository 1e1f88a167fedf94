"""`minitf tag`: tagged words (`word/TAG`, from a --task tag model) or named entities (`text/TYPE`,
from a --task ner model) for texts or a file; --json gives character offsets. One line out per
line in, empty lines kept."""

from __future__ import annotations

import argparse

from minitf.cli.segment import add_arguments as add_segment_arguments
from minitf.cli.segment import emit, load_tagger, read_texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_segment_arguments(parser)


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    tagger = load_tagger(args)
    if tagger.is_entity_tagger:
        return emit(args, texts, tagger.entities(texts), "entities")
    return emit(args, texts, tagger.segment(texts), "words")
