"""minitf: a readable BERT-family encoder with a Triton fused-attention kernel.

    from minitf import BertConfig, BertModel, BertForSequenceClassification, BertForMaskedLM
    from minitf import Tokenizer
"""

from minitf.errors import MinitfError
from minitf.model.bert import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from minitf.model.config import BertConfig

__all__ = ["BertConfig", "BertForMaskedLM", "BertForSequenceClassification",
           "BertForTokenClassification", "BertModel",
           "MinitfError", "Tokenizer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Tokenizer":  # imported on first use: the tokenizer module is self-contained
        from minitf.tokenizers.wordpiece import Tokenizer
        return Tokenizer
    raise AttributeError(f"module 'minitf' has no attribute {name!r}")
