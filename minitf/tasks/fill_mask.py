"""Fill-mask: the most likely tokens at each [MASK] of a text, from a masked-LM model.

    fill = FillMask.from_pretrained("out/pretrain")
    fill("今天天气很[MASK]。", top_k=5)   # → one list of Prediction per [MASK], best first

The numbers are those of transformers' fill-mask pipeline on the same model: a softmax over
the whole vocabulary at each [MASK] position, each position on its own (several [MASK]s are
not filled jointly); `sequence` is the text with that one [MASK] replaced, decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minitf.errors import MinitfError


@dataclass
class Prediction:
    token_id: int
    token: str      # the token decoded on its own
    score: float    # its probability at this [MASK]
    sequence: str   # the text with this [MASK] filled, decoded


class FillMask:
    def __init__(self, model: torch.nn.Module, tokenizer: Any):
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise MinitfError("the tokenizer has no [MASK] token, so there is nothing to fill")
        self.model, self.tokenizer = model.eval(), tokenizer

    @classmethod
    def from_pretrained(cls, directory: str | Path, attn_backend: str = "auto") -> FillMask:
        from minitf.model.bert import BertForMaskedLM
        from minitf.paths import resolve_model_dir
        from minitf.tokenizers.wordpiece import load_tokenizer

        directory = resolve_model_dir(directory)
        return cls(BertForMaskedLM.from_pretrained(directory, attn_backend=attn_backend),
                   load_tokenizer(directory))

    def __call__(self, text: str, top_k: int = 5) -> list[list[Prediction]]:
        if top_k < 1:
            raise MinitfError(f"--top-k must be at least 1, got {top_k}")
        tok = self.tokenizer
        batch = tok([text], max_length=self.model.config.max_position_embeddings)
        ids = batch["input_ids"][0]                                       # (N,)
        positions = (ids == tok.mask_token_id).nonzero().flatten()        # (M,)
        if len(positions) == 0:
            raise MinitfError(f"no [MASK] in {text!r}; write [MASK] where a token should be "
                              "predicted")
        with torch.inference_mode():
            logits = self.model(**batch).logits[0, positions].float()     # (M, V)
        probs = logits.softmax(-1)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        single = len(positions) == 1
        out = []
        for position, scores, token_ids in zip(positions, top.values, top.indices, strict=True):
            row = []
            for score, token_id in zip(scores.tolist(), token_ids.tolist(), strict=True):
                filled = ids.clone()
                filled[position] = token_id
                row.append(Prediction(token_id, tok.decode([token_id]), score,
                                      tok.decode(filled, skip_special_tokens=single)))
            out.append(row)
        return out
