"""Data-parallel fine-tuning on PyTorch's own engine: torch.distributed + DistributedDataParallel.

Launch the same command under torchrun; nothing else changes:

    torchrun --nproc_per_node=4 -m minitf finetune --model ... --train ... --output ...

torchrun starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `start()` reads them and joins the process group (NCCL on GPUs, gloo on CPU).
Without them (WORLD_SIZE unset or 1) every function here is a no-op and a run is exactly the
single-process recipe.

How a step stays the single-process step (same global batch, same seed, same result up to
floating-point summation order):

    batches   every rank builds the same global, length-bucketed batch plan from (seed, epoch)
              and takes rows r, r+W, r+2W, ... of each global batch (`Context.shard`)
    loss      rank r's loss is  W/L · Σ_{i in its rows} ℓ_i  for a global batch of L examples.
              DDP averages gradients over the W ranks, so the update sees (1/L) Σ_all ∇ℓ_i —
              the single-process mean — even when L does not divide by W (the last batch of an
              epoch) or a rank has no rows at all (it then runs one row with weight 0, because
              every rank must take part in the gradient all-reduce)
    clipping  happens after backward, on the all-reduced gradient: the same norm everywhere
    frozen    parameters with requires_grad=False are not registered with DDP's reducer, so a
              frozen prefix costs no communication
    evaluate  each rank predicts rows r::W of the validation set; the logits are all-gathered
              and every rank computes the same metrics over each example exactly once (all
              ranks need them, to agree on the best epoch and on early stopping)

Only rank 0 prints, writes metrics.jsonl, the plot and checkpoints (checkpoint.Outputs). Every
rank resumes from --output/last, so with several hosts --output must be a shared directory (or
last/ copied to every host before --resume). Checkpoints hold every rank's RNG state.

A peer that dies or stalls must not leave the others waiting forever: every collective has a
timeout (--dist-timeout, default 300 s), and a failed or timed-out collective becomes a
MinitfError that names the rank and the likely cause.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from minitf.data.examples import Encoded
from minitf.errors import MinitfError
from minitf.model.bert import classification_loss
from minitf.train.checkpoint import rng_state, set_rng_state


@dataclass
class Shard:
    """This rank's rows of one global batch, and how to weight their loss."""

    rows: list[int]
    global_size: int   # L: examples in the global batch
    world: int         # W
    weight: float = 1.0  # 0 for a stand-in row on a rank that got no rows
    epoch: int = 0       # the epoch the batch belongs to (e.g. to seed its masks)
    batch: Sequence[int] = ()   # the global batch's rows (every rank's)

    def mean(self, total: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """The loss to backpropagate from `total`, the sum of this rank's per-row losses: the
        mean over the global batch once DDP has averaged the W ranks' gradients (see the
        module docstring). On one process simply total / L. `count`: what the mean is over
        when not the L rows (e.g. the labelled positions of the global batch, for a loss
        summed over positions)."""
        count = self.global_size if count is None else max(count, 1)
        if self.world == 1:
            return total / count
        return total * (self.weight * self.world / count)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Shard.mean of the classification (or regression) loss of these rows."""
        return self.mean(classification_loss(logits, labels, reduction="sum"))


class Context:
    """Rank, world size and the few collectives the recipe needs. world == 1: no-ops."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 timeout: float = 300.0):
        self.rank, self.world, self.local_rank, self.timeout = rank, world, local_rank, timeout

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints and writes."""
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """One GPU per process: cuda:LOCAL_RANK. CPU stays CPU."""
        if self.enabled and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    # -- training ---------------------------------------------------------------------------

    def data_parallel(self, model: nn.Module, loss: Callable[[nn.Module, Shard], torch.Tensor],
                      device: torch.device) -> Callable[[Shard], torch.Tensor]:
        """`loss(model, shard)` as a callable `(shard) -> loss`; under torchrun wrapped in
        DistributedDataParallel, which all-reduces the gradients of the trainable parameters
        during backward."""
        if not self.enabled:
            return lambda shard: loss(model, shard)
        # Dropout masks differ per rank (as they differ per example in one process).
        torch.manual_seed(torch.initial_seed() + self.rank)
        step = _LossModule(model, loss)
        # BERT's buffers are constants (position ids): no need to broadcast them every step.
        # (torch 2.13 renamed broadcast_buffers to forward_sync_buffers.)
        ddp = nn.parallel.DistributedDataParallel
        buffers = ("forward_sync_buffers" if "forward_sync_buffers" in
                   inspect.signature(ddp.__init__).parameters else "broadcast_buffers")
        return ddp(step, device_ids=[device.index] if device.type == "cuda" else None,
                   **{buffers: False})

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise MinitfError(f"--batch-size {batch_size} is the global batch; it must divide by "
                              f"the number of processes ({self.world}), each of which takes "
                              f"--batch-size / {self.world} rows per step; use e.g. "
                              f"{(batch_size // self.world + 1) * self.world}")

    def shard(self, batch: Sequence[int], epoch: int = 0) -> Shard:
        """Rows r, r+W, ... of a global batch (length-sorted, so every rank gets similar
        lengths). A rank left without rows gets the batch's first row with weight 0."""
        rows = list(batch[self.rank::self.world])
        if not rows:
            return Shard([batch[0]], len(batch), self.world, weight=0.0, epoch=epoch,
                         batch=batch)
        return Shard(rows, len(batch), self.world, epoch=epoch, batch=batch)

    def mean_loss(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss, the same on every rank (so that every rank sees a NaN
        and stops together). One sync per step, as `loss.item()` is in one process."""
        if not self.enabled:
            return loss.item()
        total = loss.detach().float().reshape(1).clone()
        dist.all_reduce(total)  # Σ_r W/L·S_r = W · (global mean)
        return total.item() / self.world

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (a Ctrl-C reaches ranks at different steps)."""
        if not self.enabled:
            return flag
        device = "cpu" if dist.get_backend() == "gloo" else f"cuda:{self.local_rank}"
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    # -- evaluation -------------------------------------------------------------------------

    def local_rows(self, data: Encoded) -> Encoded:
        """The rows of `data` this rank evaluates (and caches): r, r+W, ..."""
        if not self.enabled:
            return data
        return data.subset(range(self.rank, len(data), self.world))

    def gather_rows(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """Every rank's `local_rows` results, put back in the data's order: (total, ...)."""
        if not self.enabled:
            return local
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, local.cpu())
        full = torch.empty(total, *local.shape[1:], dtype=local.dtype)
        for rank, part in enumerate(parts):
            full[rank::self.world] = part
        return full

    # -- checkpoints --------------------------------------------------------------------------

    def rng_states(self) -> Any:
        """This process's RNG state, or under torchrun every rank's (a list, by rank)."""
        if not self.enabled:
            return rng_state()
        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, rng_state())
        return states

    def set_rng_states(self, states: Any) -> None:
        """Restore what rng_states() saved; a list from another world size restores rank 0's
        state and then gives each rank its own stream."""
        if isinstance(states, dict):
            set_rng_state(states)
        elif len(states) == self.world:
            set_rng_state(states[self.rank])
        else:
            set_rng_state(states[0])
            if self.enabled:
                torch.manual_seed(int(torch.randint(2**62, (1,))) + self.rank)


class _LossModule(nn.Module):
    """The training forward pass (to the loss) as a module, so DistributedDataParallel can wrap
    it: DDP needs the forward to go through its own __call__ to prepare the all-reduce."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, Shard], torch.Tensor]):
        super().__init__()
        self.model, self.fn = model, loss

    def forward(self, shard: Shard) -> torch.Tensor:
        return self.fn(self.model, shard)


# ---------------------------------------------------------------------------------------------
# Joining and leaving the process group
# ---------------------------------------------------------------------------------------------


def from_environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


@contextmanager
def start(device: str = "auto", timeout: float = 300.0) -> Iterator[Context]:
    """Join torchrun's process group for the duration of a run (no-op on one process).

    A collective that fails (a peer died: connection closed) or times out (a peer stalled)
    raises a MinitfError here, instead of a bare backend traceback or a hang.
    """
    rank, world, local_rank = from_environment()
    if world <= 1:
        yield Context()
        return
    if timeout <= 0:
        raise MinitfError(f"--dist-timeout must be positive, got {timeout}")
    owner = not dist.is_initialized()
    if owner:
        gpu = device != "cpu" and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(seconds=timeout))
    context = Context(dist.get_rank(), dist.get_world_size(), local_rank, timeout)
    try:
        yield context
        # Leave together: gloo aborts a process that tears down its connections while a peer
        # still holds them, and rank 0 may still be testing the best checkpoint and writing.
        dist.barrier()
    except MinitfError:
        raise
    except (dist.DistError, RuntimeError) as exc:
        if not _is_collective_failure(exc):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise MinitfError(
            f"rank {context.rank} of {context.world}: a collective operation with the other "
            f"processes failed or timed out (--dist-timeout {timeout:g} s). Another rank "
            f"probably died or stalled; see its output. Continue from the last checkpoint "
            f"with --resume. ({type(exc).__name__}: {first})") from None
    if owner:  # only after success: after a failure, tearing down could wait on the dead peer
        dist.destroy_process_group()


def _is_collective_failure(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("gloo", "nccl", "connection closed", "connection reset",
                                   "timed out", "timeout", "processgroup", "broken pipe"))
