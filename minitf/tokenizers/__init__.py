"""Tokenizers: BERT's WordPiece (wordpiece) and SentencePiece (sentencepiece, with its
normaliser in charsmap), the shared special-token / pairs / padding logic (base), Unicode
tables, and training a SentencePiece model from documents (training). Imports the model room
at most (it needs none of it)."""
