"""`minitf tokenizer train`: learn a SentencePiece (or character) vocabulary for a new BERT."""

from __future__ import annotations

import argparse

from minitf.data.text import read_documents
from minitf.recipes import options as O
from minitf.tokenizers.training import MODEL_TYPES, train_sentencepiece


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train", help="train a SentencePiece tokenizer (loads in minitf and transformers)",
        description="Train a SentencePiece tokenizer with BERT's special tokens at fixed ids "
                    "([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4).")
    train.add_argument("--input", nargs="+", required=True, metavar="FILE",
                       help="plain text (one document per line) or CSV/TSV/JSONL files")
    train.add_argument("--vocab-size", type=int, default=8000, help="pieces (default 8000)")
    train.add_argument("--model-type", choices=MODEL_TYPES, default="unigram",
                       help="SentencePiece algorithm (default unigram); bpe pieces are "
                            "encoded by best score, as transformers' AlbertTokenizer does; "
                            "characters: a WordPiece vocabulary of single characters (as "
                            "bert-base-chinese), for character tagging and segmentation")
    train.add_argument("--lowercase", action="store_true",
                       help="lower-case all text (English: a smaller, uncased vocabulary)")
    train.add_argument("--strip-accents", action="store_true",
                       help="decompose characters and drop accents (é → e)")
    train.add_argument("--character-coverage", type=float, default=None,
                       help="share of characters kept as pieces, the rest [UNK] (default: "
                            "0.9995 for mostly-Chinese text, else 1.0)")
    O.add_options(train, [
        O.OUTPUT.but(metavar="DIR",
                     help="the tokenizer directory to write (spiece.model + configs)"),
        O.TEXT_COLUMN.but(help="the text column of CSV/TSV/JSONL input (default: the first "
                          "of text, sentence, ...)"),
        O.ENCODING_ERRORS.but(help="what to do with bytes that are not UTF-8 (default: stop)"),
        O.SKIP_BAD_ROWS.but(help="skip (and count) bad rows of CSV/TSV/JSONL input"),
        O.OVERWRITE.but(help="replace the tokenizer files of an existing --output"), O.SEED])


def run(args: argparse.Namespace) -> int:
    documents = read_documents(args.input, args.text_column,
                               encoding_errors=args.encoding_errors,
                               skip_bad_rows=args.skip_bad_rows)
    result = train_sentencepiece(
        documents, args.output, vocab_size=args.vocab_size, model_type=args.model_type,
        lowercase=args.lowercase, strip_accents=args.strip_accents,
        character_coverage=args.character_coverage, overwrite=args.overwrite, seed=args.seed,
        source=", ".join(args.input))
    print(f"trained a {args.model_type} tokenizer of {result.vocab_size} pieces on "
          f"{result.documents:,} documents ({result.characters:,} characters, coverage "
          f"{result.character_coverage}) in {result.seconds:.1f} s -> {result.output}")
    print(f"load it with minitf.tokenizers.wordpiece.load_tokenizer({str(result.output)!r}) or "
          f"transformers.AutoTokenizer.from_pretrained({str(result.output)!r})")
    return 0
