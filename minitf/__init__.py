"""minitf: a readable BERT-family encoder with a Triton fused-attention kernel.

    from minitf import BertConfig, BertModel, BertForSequenceClassification, BertForMaskedLM
    from minitf import Tokenizer
"""

from minitf.config import BertConfig
from minitf.errors import MinitfError
from minitf.model import BertForMaskedLM, BertForSequenceClassification, BertModel

__all__ = ["BertConfig", "BertForMaskedLM", "BertForSequenceClassification", "BertModel",
           "MinitfError", "Tokenizer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Tokenizer":  # imported on first use: the tokenizer module is self-contained
        from minitf.tokenizer import Tokenizer
        return Tokenizer
    raise AttributeError(f"module 'minitf' has no attribute {name!r}")
