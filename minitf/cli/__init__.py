"""The `minitf` command: one sub-command per module, imported only when it runs.

Each module named in COMMANDS defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from minitf.errors import MinitfError

COMMANDS = {
    # name: (module, one-line help)
    "demo": ("minitf.cli.demo", "run the main job end to end on the real MiniLM weights"),
    "encode": ("minitf.cli.encode", "print sentence embeddings and their cosine similarities"),
    "finetune": ("minitf.cli.finetune", "fine-tune a BERT classifier on a CSV/TSV/JSONL file"),
    "evaluate": ("minitf.cli.evaluate", "evaluate a fine-tuned classifier on a labelled file"),
    "predict": ("minitf.cli.predict", "predict labels for texts or a file"),
    "attention": ("minitf.cli.attention", "attention heat-maps, or an explorer page (--html)"),
    "pretrain": ("minitf.cli.pretrain", "pre-train a BERT (masked LM) on plain text"),
    "fill-mask": ("minitf.cli.fill_mask", "the most likely tokens at each [MASK] of a text"),
    "tokenizer": ("minitf.cli.tokenizer", "train a SentencePiece tokenizer on plain text"),
    "export": ("minitf.cli.export", "export an encoder or classifier to ONNX"),
    "segment": ("minitf.cli.segment", "split texts into words (a --task segment/tag model)"),
    "tag": ("minitf.cli.tag", "tag words or find named entities (a --task tag/ner model)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="minitf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        if argv[:1] == [name]:  # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except MinitfError as exc:
        print(f"minitf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minitf {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system said no (read-only, a directory, full, ...)
        where = f"{str(exc.filename)[:200]}: " if exc.filename is not None else ""
        print(f"minitf {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
