"""The frozen-prefix cache: the outputs of a frozen prefix (minitf.model.freeze), computed once.

Later epochs read them instead of running the embeddings and frozen layers again
(classifier_logits(model, batch, plan, cache, indices)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minitf.data.examples import Encoded, batch_plan
from minitf.model.bert import BertForSequenceClassification

# ---------------------------------------------------------------------------------------------
# The cache of the frozen prefix's outputs
# ---------------------------------------------------------------------------------------------


class PrefixCache:
    """Hidden states after the frozen prefix for every example of `data`, kept unpadded.

    Computed once, in eval mode, in length-sorted batches (a fixed order, so the cache — and a
    resumed run that rebuilds it — does not depend on the epoch's batches). Memory: 4 bytes ×
    hidden_size per token, or per example when every layer is frozen (only [CLS] is needed).
    """

    def __init__(self, model: BertForSequenceClassification, data: Encoded, num_layers: int,
                 batch_size: int = 64, device: torch.device | str = "cpu",
                 storage: torch.device | str = "cpu"):
        # All layers frozen: a [CLS] head needs position 0 only (a prompt head reads the [MASK]).
        self.cls_only = (num_layers == model.config.num_hidden_layers
                         and getattr(model, "head_reads_cls_only", True))
        lengths = torch.ones(len(data), dtype=torch.int64) if self.cls_only else data.lengths
        self.lengths = lengths
        self.offsets = torch.zeros(len(data) + 1, dtype=torch.int64)
        self.offsets[1:] = torch.cumsum(lengths, 0)
        self.hidden = torch.empty(int(self.offsets[-1]), model.config.hidden_size,
                                  device=storage)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for indices in batch_plan(data.lengths, batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in data.collate(indices).items()}
                h = model.hidden_states(batch["input_ids"], batch["attention_mask"],
                                        batch["token_type_ids"], num_layers).to(storage)
                for row, i in enumerate(indices):
                    start, n = int(self.offsets[i]), int(lengths[i])
                    self.hidden[start:start + n] = h[row, :n]
        model.train(was_training)

    @property
    def nbytes(self) -> int:
        return self.hidden.numel() * self.hidden.element_size()

    def collate(self, indices: Sequence[int], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded hidden states (B, N, C) and attention mask (B, N) of the chosen examples."""
        n = int(self.lengths[list(indices)].max())
        hidden = torch.zeros(len(indices), n, self.hidden.shape[1], device=self.hidden.device)
        mask = torch.zeros(len(indices), n, dtype=torch.int64)
        for row, i in enumerate(indices):
            start, k = int(self.offsets[i]), int(self.lengths[i])
            hidden[row, :k] = self.hidden[start:start + k]
            mask[row, :k] = 1
        return hidden.to(device), mask.to(device)
