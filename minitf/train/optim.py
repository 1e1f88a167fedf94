"""The BERT fine-tuning optimizer and learning-rate schedule.

AdamW (decoupled weight decay, Loshchilov & Hutter 2019) over the trainable parameters only,
with weight decay on the weight matrices and embeddings but not on biases or LayerNorm
weights (decaying a LayerNorm gain towards 0 just rescales the layer, and biases do not
overfit the way weights do). The learning rate rises linearly from 0 over the warmup steps,
then falls linearly to 0 at the last step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR


def no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01,
                    device: torch.device | str = "cpu") -> torch.optim.AdamW:
    """AdamW over requires_grad parameters: frozen ones get neither updates nor state."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if not no_decay(n)], "weight_decay": weight_decay},
        {"params": [p for n, p in trainable if no_decay(n)], "weight_decay": 0.0},
    ]
    # The fused implementation updates all tensors in one kernel (CPU and CUDA); same maths.
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                    ) -> LambdaLR:
    """lr × (step + 1) / (warmup + 1) during warmup (so the first step does not have lr 0),
    then lr × (total − step) / (total − warmup)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return LambdaLR(optimizer, factor)
