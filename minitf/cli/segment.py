"""`minitf segment`: split texts into words with a fine-tuned token model (--task segment or tag).

One line out per line in: the words separated by spaces (`word/TAG` with a tagging model), or
with --json one object per line with each word's character offsets. An empty input line gives
an empty output line. Words are slices of the input: joined, they give the line back (spaces
in the input end a word and are not part of one; --json's offsets place every word).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.model.bert import BertForTokenClassification
from minitf.model.precision import apply_precision, pick_device
from minitf.recipes import options as O
from minitf.tasks.tokens import TokenTagger, Word, model_lexicon


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts (or --data FILE, a line each)")
    O.add_options(parser, [
        O.MODEL.but(default=None, required=True, help="a fine-tuned token model directory"),
        O.DATA.but(help="a text file: one text per line"), O.ENCODING,
        O.MAX_LENGTH.but(default=None, type=int, help="tokens per window (default: the "
                         "windows the model was fine-tuned on, tokenizer_config.json's "
                         "model_max_length)"),
        O.BATCH_SIZE.but(default=64, help="windows per forward pass"), O.DECODER,
        O.LEXICON, O.LEXICON_WEIGHT,
        O.DEVICE, O.PRECISION, O.JSON.but(help="one JSON object per line, with offsets"),
        O.OUTPUT.but(required=False, help="write here instead of stdout"),
        O.OVERWRITE.but(help="replace --output if it exists")])


def read_texts(args: argparse.Namespace) -> list[str]:
    if bool(args.texts) == bool(args.data):
        raise MinitfError("give either texts or --data FILE")
    if not args.data:
        return list(args.texts)
    try:
        text = Path(args.data).read_text(encoding=args.encoding)
    except OSError as exc:
        raise MinitfError(f"{args.data}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        line = Path(args.data).read_bytes().count(b"\n", 0, exc.start) + 1
        raise MinitfError(f"{args.data}:{line}: not valid {args.encoding}") from None
    lines = [s.removesuffix("\r") for s in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def load_tagger(args: argparse.Namespace) -> TokenTagger:
    from minitf.tokenizers.wordpiece import load_tokenizer
    O.check_args(args, [O.MAX_LENGTH, O.BATCH_SIZE, O.DEVICE, O.PRECISION, O.LEXICON_WEIGHT])
    device = pick_device(args.device)
    model = BertForTokenClassification.from_pretrained(args.model).to(device)
    lexicon = model_lexicon(args.model, args.lexicon)
    model, precision = apply_precision(model, args.precision, device)
    return TokenTagger(model, load_tokenizer(args.model), args.max_length, args.batch_size,
                       device=device, autocast=precision.autocast, decoder=args.decoder,
                       lexicon=lexicon, lexicon_weight=args.lexicon_weight)


def emit(args: argparse.Namespace, texts: list[str], results: list[list[Word]],
         plain: str) -> int:
    """`plain`: "words" (space-separated words, word/TAG when tagged) or "entities"."""
    lines = []
    for text, words in zip(texts, results, strict=True):
        if args.json:
            key = "entities" if plain == "entities" else "words"
            record = {"text": text, key: [w.as_dict() for w in words]}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            lines.append(" ".join(w.text if w.tag is None else f"{w.text}/{w.tag}"
                                  for w in words) + "\n")
    if args.output:
        write_text(args.output, "".join(lines), overwrite=args.overwrite)
    else:
        sys.stdout.writelines(lines)
    return 0


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    tagger = load_tagger(args)
    if tagger.is_entity_tagger:
        raise MinitfError(f"{args.model} tags entities (its labels include O): use "
                          "`minitf tag`")
    results = tagger.segment(texts)
    if not args.json:  # plain text: words only; `minitf tag` prints their tags
        results = [[Word(w.text, w.start, w.end) for w in ws] for ws in results]
    return emit(args, texts, results, "words")
