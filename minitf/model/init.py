"""How a BERT's weights start: BERT's own initialisation, and sinusoidal position embeddings
for small models trained from scratch (`minitf pretrain --position-init sinusoid`)."""

from __future__ import annotations

import torch
from torch import nn


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) for weights, zero biases, identity LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def sinusoid_positions_(embedding: nn.Embedding, scale: float = 1.0) -> None:
    """Start learned position embeddings at the sinusoids of Vaswani et al. (2017), each
    coordinate in [-scale, scale]: still ordinary weights (any BERT loader reads them), but
    neighbouring positions start out similar and distant ones different, so attention can tell
    near from far from the first step. From N(0, 0.02) a small character tagger first spends
    hundreds of steps predicting each label from its character alone; from the sinusoids it
    leaves that plateau far sooner. Not a default: a masked LM on the reviews' SentencePiece
    pieces, started this way, stayed on its most-frequent-token plateau (docs/zh.md)."""
    n, d = embedding.weight.shape                                   # (positions, hidden)
    position = torch.arange(n, dtype=torch.float32)[:, None]        # (n, 1)
    frequency = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)   # (ceil(d/2),)
    angle = position * frequency                                    # (n, ceil(d/2))
    with torch.no_grad():
        embedding.weight[:, 0::2] = scale * torch.sin(angle)
        embedding.weight[:, 1::2] = scale * torch.cos(angle[:, : d // 2])
