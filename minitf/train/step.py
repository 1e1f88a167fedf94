"""One optimisation step, the same for every recipe.

    loss = compute_loss()                 under autocast (bf16/fp16 on GPU, bf16 on request on CPU)
    backward                              through the GradScaler when training in fp16
    value = mean loss of the global batch one sync per step (the number shown, and the guard:
                                          a NaN/inf loss stops the run *before* it reaches the
                                          weights, on every rank at once)
    unscale, clip                         gradient norm ≤ max_grad_norm, on the true gradients
    optimizer.step, scheduler.step        (the scaler skips a step whose gradients overflowed)
    zero_grad

`TrainStep.state_dict()` holds everything of the step that a resumed run needs: optimizer,
scheduler and GradScaler state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from minitf.model.precision import TRAINING_PRECISIONS, resolve_precision

PRECISIONS = TRAINING_PRECISIONS


class NonFiniteLoss(Exception):
    """The loss of a step was NaN or ±inf; nothing was updated."""

    def __init__(self, value: float):
        super().__init__(f"the loss became {value}")
        self.value = value


class TrainStep:
    """`step(compute_loss) -> float`: one update of `optimizer`'s parameters.

    compute_loss() returns the scalar loss to backpropagate (under data parallelism: this
    rank's share, see distributed.Shard.mean); `mean_loss` turns it into the global batch's
    mean as a float (distributed.Context.mean_loss; `Tensor.item` on one process).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any, max_grad_norm: float,
                 device: torch.device, precision: str = "auto",
                 mean_loss: Callable[[torch.Tensor], float] = lambda loss: loss.item()):
        self.optimizer, self.scheduler, self.max_grad_norm = optimizer, scheduler, max_grad_norm
        self.device, self.mean_loss = device, mean_loss
        self.autocast = autocast_settings(precision, device)
        fp16 = self.autocast["enabled"] and self.autocast["dtype"] == torch.float16
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, compute_loss: Callable[[], torch.Tensor]) -> float:
        with torch.autocast(self.device.type, **self.autocast):
            loss = compute_loss()
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        # After backward, so that under DDP the gradient all-reduce (which every rank must
        # join) is complete before this sync; before the update, so a bad loss never reaches
        # the weights.
        value = self.mean_loss(loss)
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(value)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm and self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def autocast_settings(precision: str, device: torch.device) -> dict[str, Any]:
    """Keyword arguments of torch.autocast (`enabled`, `dtype`) for --precision on `device`,
    as minitf.model.precision.resolve_precision decides it for training (auto: bf16 where the GPU
    supports it, else fp16; fp32 on CPU)."""
    name = resolve_precision(precision, device, training=True)
    return {"enabled": name in ("bf16", "fp16"),
            "dtype": torch.float16 if name == "fp16" else torch.bfloat16}
