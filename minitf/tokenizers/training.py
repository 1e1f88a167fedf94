"""Train a SentencePiece tokenizer (or a character vocabulary) for a BERT model from plain text.

    documents = read_documents(["reviews.txt"])   # minitf.data.text: the one corpus reader
    result = train_sentencepiece(documents, "tok/", vocab_size=8000)
    tok = load_tokenizer("tok/")      # minitf; transformers' AutoTokenizer loads it too

Input: the documents, as strings. Files are read by the caller with
minitf.data.text.read_documents (plain text, one document per line, or a CSV/TSV/JSONL text
column), the reader `minitf pretrain` uses too, so both see the same documents. The corpus is
prenormalised exactly as the tokenizer will see text (quotes, optional lower-casing / accent
stripping), then SentencePiece learns the pieces.

BERT's special tokens get fixed ids, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, as control
pieces: SentencePiece never produces them from text; minitf and transformers cut them out
only where they are written literally ("[MASK]" in a text is the mask id).

model_type "characters" is no SentencePiece model but BERT's WordPiece tokenizer with one piece
per character (as bert-base-chinese): what character-level tasks want (minitf finetune --task
segment|tag), where every character is one position (character_vocabulary).

Character coverage: the share of the corpus's characters that get their own piece (the rest
become [UNK]). Chinese has thousands of characters, so the default there is 0.9995 (the
rarest 0.05% of characters are dropped); for other text it is 1.0 (every character kept).

The output directory is built in a temporary folder next to it and renamed into place
(minitf.io.atomic_directory), so an error or Ctrl-C never leaves a half-written tokenizer.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from minitf.errors import MinitfError
from minitf.io import atomic_directory, is_temporary
from minitf.run_folder import check_folder, is_minitf_folder, write_marker
from minitf.tokenizers.sentencepiece import (
    MODEL_FILE,
    SPECIAL_IDS,
    SentencePieceTokenizer,
    prenormalize,
)
from minitf.tokenizers.wordpiece import Tokenizer, is_cjk_ideograph

MODEL_TYPES = ("unigram", "bpe", "characters")
CJK_COVERAGE, DEFAULT_COVERAGE = 0.9995, 1.0
_CJK_SHARE = 0.3  # at least this share of the letters in CJK ideographs → CJK_COVERAGE
_MAX_SENTENCE_BYTES = 1 << 16  # SentencePiece skips longer sentences...
_CHUNK_CHARS = _MAX_SENTENCE_BYTES // 4  # ...so documents are cut into pieces this long
_SAMPLE = 2_000_000  # documents SentencePiece reads at most (a seeded sample beyond that)


@dataclass
class TrainResult:
    output: Path
    vocab_size: int
    documents: int
    characters: int
    character_coverage: float
    seconds: float


def train_sentencepiece(
    documents: Iterable[str], output: str | os.PathLike, *, vocab_size: int = 8000,
    model_type: str = "unigram", lowercase: bool = False, strip_accents: bool = False,
    character_coverage: float | None = None, overwrite: bool = False, seed: int = 0,
    source: str = "the documents",
) -> TrainResult:
    """Train on `documents` and write the tokenizer directory `output`; see the module
    docstring. `character_coverage` None picks CJK_COVERAGE for mostly-Chinese text, else 1.0.
    `source` names the corpus in error messages (the files it was read from)."""
    start = time.perf_counter()
    output = Path(output)
    _check_settings(vocab_size, model_type, character_coverage)
    if model_type == "characters" and strip_accents:
        raise MinitfError("--strip-accents is for SentencePiece vocabularies; a character "
                          "vocabulary keeps every character as it is")
    _check_output(output, overwrite)
    if isinstance(documents, (str, bytes, os.PathLike)):
        documents = [documents]  # one string is one document (a path is refused below)
    documents = [_document(d, lowercase, strip_accents) for d in documents]
    if not documents:
        raise MinitfError(f"{source}: no documents to train on; give text with one document "
                          "per line")
    coverage = character_coverage if character_coverage is not None else _coverage(documents)
    with atomic_directory(output) as staging:  # files of an existing --output are kept
        if not is_minitf_folder(output):
            write_marker(staging, "tokenizer train")
        if model_type == "characters":
            tokenizer = character_vocabulary(documents, vocab_size, coverage, lowercase)
        else:
            _train(documents, staging, vocab_size, model_type, coverage, seed, source)
            tokenizer = SentencePieceTokenizer(staging / MODEL_FILE, do_lower_case=lowercase,
                                               keep_accents=not strip_accents)
        tokenizer.save_pretrained(staging)
    return TrainResult(output, tokenizer.vocab_size, len(documents),
                       sum(map(len, documents)), coverage, time.perf_counter() - start)


def character_vocabulary(documents: list[str], vocab_size: int, coverage: float,
                         lowercase: bool) -> Tokenizer:
    """`model_type="characters"`: one piece per character, as bert-base-chinese's vocabulary —
    a WordPiece tokenizer whose pieces are the most frequent characters (at most
    `vocab_size` - 5, covering at least `coverage` of the text; the rest become [UNK]), each
    also as a "##" continuation when it is not a CJK ideograph (so "1998" is 1 ##9 ##9 ##8
    rather than one [UNK]: CJK ideographs are split apart before WordPiece, other letters are
    not). For tagging or segmenting characters: every character is one position."""
    counts = Counter(c for d in documents for c in d if not c.isspace())
    ranked = [c for c, _ in counts.most_common(max(1, vocab_size - len(SPECIAL_IDS)))]
    total, kept, covered = sum(counts.values()), [], 0
    for char in ranked:
        if covered >= coverage * total:
            break
        kept.append(char)
        covered += counts[char]
    specials = [token for token, _ in sorted(SPECIAL_IDS.values(), key=lambda t: t[1])]
    continuations = [f"##{c}" for c in kept if not is_cjk_ideograph(c)]
    return Tokenizer(specials + kept + continuations, do_lower_case=lowercase,
                     strip_accents=False, tokenize_chinese_chars=True)


def _document(text: str, lowercase: bool, strip_accents: bool) -> str:
    if not isinstance(text, str):
        raise MinitfError(f"train_sentencepiece takes documents (strings), got {text!r:.60}; "
                          "read files with minitf.data.text.read_documents")
    return prenormalize(text, lowercase, not strip_accents)


def _coverage(documents: list[str]) -> float:
    """CJK_COVERAGE if CJK ideographs make up a good share of the letters, else 1.0."""
    sample = "".join(documents[:: max(1, len(documents) // 2000)])
    letters = sum(c.isalpha() for c in sample)
    cjk = len(re.findall("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", sample))
    return CJK_COVERAGE if letters and cjk / letters >= _CJK_SHARE else DEFAULT_COVERAGE


# ---------------------------------------------------------------------------- training


MAX_VOCAB = 1 << 20  # pieces; SentencePiece itself fails past 2^31 with a raw error


def _check_settings(vocab_size: int, model_type: str, coverage: float | None) -> None:
    if model_type not in MODEL_TYPES:
        raise MinitfError(f"model type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_IDS):
        raise MinitfError(f"--vocab-size {vocab_size} is too small: the 5 special tokens "
                          "alone take 5 ids; try 8000")
    if vocab_size > MAX_VOCAB:
        raise MinitfError(f"--vocab-size {vocab_size} is too large: at most {MAX_VOCAB:,} "
                          "pieces (BERT's is 30,522; 8000 suits a small corpus)")
    if coverage is not None and not 0.9 <= coverage <= 1.0:
        raise MinitfError(f"--character-coverage {coverage} must be between 0.9 and 1.0")


def _check_output(output: Path, overwrite: bool) -> None:
    """A new or empty folder, or one minitf made (minitf/run_folder.py); a non-empty one only
    with `overwrite` (its tokenizer files are replaced, anything else in it kept)."""
    check_folder(output)
    if output.is_dir() and any(not is_temporary(e.name) for e in output.iterdir()) \
            and not overwrite:
        raise MinitfError(f"{output} already exists and is not empty; choose another "
                          "--output, or pass --overwrite to replace its tokenizer files")


def _train(documents: list[str], folder: Path, vocab_size: int, model_type: str,
           coverage: float, seed: int, source: str) -> None:
    """Run the SentencePiece trainer; its errors become MinitfErrors naming the input."""
    names = {name: token for name, (token, _) in SPECIAL_IDS.items()}
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(d[i:i + _CHUNK_CHARS] for d in documents
                               for i in range(0, len(d), _CHUNK_CHARS)),
            model_prefix=str(folder / "spiece"),
            vocab_size=vocab_size, model_type=model_type, character_coverage=coverage,
            pad_id=SPECIAL_IDS["pad_token"][1], pad_piece=names["pad_token"],
            unk_id=SPECIAL_IDS["unk_token"][1], unk_piece=names["unk_token"],
            bos_id=-1, eos_id=-1,  # BERT's [CLS]/[SEP] are added by the tokenizer instead
            control_symbols=[names["cls_token"], names["sep_token"], names["mask_token"]],
            normalization_rule_name="nmt_nfkc", max_sentence_length=_MAX_SENTENCE_BYTES,
            input_sentence_size=_SAMPLE, shuffle_input_sentence=True,
            num_threads=max(1, min(8, os.cpu_count() or 1)), minloglevel=2,
        )
    except RuntimeError as e:
        raise MinitfError(_explain(str(e), vocab_size, source)) from None


def _explain(message: str, vocab_size: int, source: str) -> str:
    """SentencePiece's error message, turned into what to do about it."""
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
    if too_high:
        return (f"{source}: the corpus is too small for --vocab-size {vocab_size}; it yields "
                f"at most {too_high.group(2)} pieces: pass --vocab-size {too_high.group(2)} "
                "or less, or train on more text")
    too_few = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_few:
        return (f"{source}: --vocab-size {vocab_size} cannot hold the {too_few.group(2)} "
                "distinct characters the corpus needs; pass a larger --vocab-size (at least "
                f"{int(too_few.group(2)) + 100}) or a lower --character-coverage (e.g. 0.995)")
    return f"{source}: SentencePiece could not train on this corpus: {message.strip()}"
