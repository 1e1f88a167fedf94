"""The training loop every recipe shares: epochs of batches, evaluation, checkpoints, stops, resume.

A recipe describes its run as a `Task` — the model, the batches of each epoch, the loss of a
batch, an evaluation, how to save its model directory — and `Schedule` says when to evaluate,
save and stop. `Trainer(task, step, schedule, ...).run()` then does the rest:

    for each epoch (until Schedule.epochs):
        batches = task.batches(epoch)                a deterministic plan: resume re-makes it
        for each batch from the saved position:      and continues mid-epoch
            shard = this rank's rows of the batch    (all of them on one process)
            loss = step(task.loss(model, shard))     minitf/train/step.py
            every eval_every steps: evaluate         → metrics.jsonl, best/ when it improved
            Ctrl-C / stop_after_steps: save last/ and return (resumable)
            save_every steps: save last/
            max_steps / the time budget (minutes): evaluate, save, finish
        the epoch's end: evaluate, best/, last/, patience (early stopping)

Exact resume: last/ holds the model (the recipe's files), and training_state.pt the optimizer,
scheduler and GradScaler state, every rank's RNG state, the loop's position (epoch, batch,
global step), its running losses, history, best score and clock, and whatever the recipe adds
(its settings and a data fingerprint, to refuse a resume of another run). On CPU a resumed run
ends with the same weights bit for bit as one never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from minitf.errors import MinitfError
from minitf.train.checkpoint import Outputs
from minitf.train.distributed import Context, Shard
from minitf.train.progress import Progress, StopRequest
from minitf.train.step import NonFiniteLoss, TrainStep


@dataclass
class Task:
    """What a recipe supplies to the loop."""

    model: nn.Module
    # epoch → its global batches, each a list of row ids; a pure function of (epoch, seed)
    batches: Callable[[int], Sequence[Sequence[int]]]
    # (model, shard) → the loss to backpropagate: shard.mean(sum of this rank's row losses).
    # Under torchrun it runs inside DistributedDataParallel (`model` is the real model).
    loss: Callable[[nn.Module, Shard], Any]
    # writes the model's directory files (weights, config.json, tokenizer) into a directory
    save: Callable[[Path], None]
    # validation metrics (a JSON-able dict with the Schedule's select_metric); every rank calls it
    evaluate: Callable[[], dict[str, Any]] | None = None
    train_mode: Callable[[], None] | None = None      # default: model.train()
    describe: Callable[[dict[str, Any]], str] | None = None  # metrics → "loss 0.31, accuracy .."
    # called with each record before it is logged: may add fields; returns a line to print
    on_record: Callable[[dict[str, Any]], str | None] | None = None
    # throughput in the progress bar, epoch lines and epoch records ("<unit>_per_s"):
    # (unit, units per sample), e.g. ("tokens", 128) for pre-training blocks of 128 tokens
    throughput: tuple[str, int] = ("samples", 1)


@dataclass
class Schedule:
    """When to evaluate, save and stop. None / 0: that condition is off."""

    epochs: int | None = None         # finish after this many epochs
    max_steps: int | None = None      # finish after this many steps
    minutes: float | None = None      # finish after this much training time (a time budget)
    stop_after_steps: int | None = None  # interrupt (resumably, like Ctrl-C) after this many
    eval_every: int = 0               # also evaluate every N steps
    eval_each_epoch: bool = True      # evaluate at every epoch's end
    save_every: int = 0               # also save last/ every N steps
    patience: int = 0                 # finish after N evaluations without improvement
    select_metric: str | None = None  # the metric that picks best/; None: the latest is best
    higher_is_better: bool = True

    def check(self) -> None:
        if not (self.epochs or self.max_steps or self.minutes):
            raise MinitfError("the run has no end: give epochs, max steps or a time budget")
        for name in ("epochs", "max_steps", "minutes", "stop_after_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise MinitfError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass
class LoopState:
    """The loop's part of training_state.pt."""

    epoch: int = 0                # epochs completed
    step: int = 0                 # batches done in the current epoch
    global_step: int = 0
    seconds: float = 0.0          # training time before the current session
    epoch_loss: tuple[float, int] = (0.0, 0)   # Σ loss × rows, rows (this epoch)
    window_loss: tuple[float, int] = (0.0, 0)  # the same since the last record
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    bad_evals: int = 0
    metrics_lines: int = 0


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    interrupted: bool
    train_seconds: float
    global_step: int
    stop_signal: int = 0  # the signal that interrupted the run (SIGINT, SIGTERM), else 0


class Clock:
    """Training seconds, counted across resumed sessions (for --minutes and its schedule)."""

    def __init__(self) -> None:
        self.base, self.started = 0.0, None

    def start(self, base: float) -> None:
        self.base, self.started = base, time.perf_counter()

    @property
    def seconds(self) -> float:
        running = time.perf_counter() - self.started if self.started is not None else 0.0
        return self.base + running


class Trainer:
    """Runs a Task with a TrainStep under a Schedule (see the module docstring)."""

    def __init__(self, task: Task, step: TrainStep, schedule: Schedule, ctx: Context,
                 outputs: Outputs, progress: Progress, device: Any,
                 extra_state: Callable[[], dict[str, Any]] = dict, clock: Clock | None = None):
        schedule.check()
        self.task, self.step, self.schedule, self.ctx = task, step, schedule, ctx
        self.outputs, self.progress, self.device = outputs, progress, device
        self.extra_state, self.clock = extra_state, clock or Clock()
        self.state = LoopState()
        self._resumed_rng: Any = None
        self._batches_in_epoch = 0
        self.forward = ctx.data_parallel(task.model, task.loss, device)

    # -- resume -------------------------------------------------------------------------------

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a training_state.pt written by this loop (the model is the recipe's)."""
        self.state = LoopState(**state["loop"])
        self.step.load_state_dict(state)
        self._resumed_rng = state["rng"]
        self.outputs.truncate_metrics(self.state.metrics_lines)

    def state_dict(self) -> dict[str, Any]:
        """Collective under torchrun (every rank's RNG state): call it on every rank."""
        loop = asdict(self.state)
        loop["seconds"] = self.clock.seconds
        return {**self.extra_state(), **self.step.state_dict(), "loop": loop,
                "position": (self.state.epoch, self.state.step), "rng": self.ctx.rng_states()}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> LoopResult:
        if self._resumed_rng is None:
            self.outputs.truncate_metrics(0)
        else:
            self.ctx.set_rng_states(self._resumed_rng)
        self.clock.start(self.state.seconds)
        interrupted = False
        with StopRequest() as request:
            while not self._finished() and not interrupted:
                interrupted = self._epoch(request)
        if self.schedule.patience and self.state.bad_evals >= self.schedule.patience:
            self.progress.say(f"early stopping: no improvement in {self.schedule.patience} "
                              "evaluations")
        return LoopResult(self.state.history, self.state.best, interrupted,
                          self.clock.seconds, self.state.global_step,
                          request.signal if interrupted else 0)

    def _finished(self) -> bool:
        s, st = self.schedule, self.state
        return bool((s.epochs and st.epoch >= s.epochs)
                    or (s.max_steps and st.global_step >= s.max_steps)
                    or (s.patience and st.bad_evals >= s.patience)
                    # each rank has its own clock: all stop when the first runs out of time
                    or (s.minutes and self.ctx.any(self.clock.seconds >= s.minutes * 60)))

    def _epoch(self, request: StopRequest) -> bool:
        """The rest of the current epoch; True when interrupted (last/ saved)."""
        st = self.state
        batches = self.task.batches(st.epoch)
        (self.task.train_mode or self.task.model.train)()
        total = f"/{self.schedule.epochs}" if self.schedule.epochs else ""
        bar = self.progress.bar(len(batches), st.step, f"epoch {st.epoch + 1}{total}",
                                self.task.throughput[0])
        started, samples, stop = time.perf_counter(), 0, False
        self._batches_in_epoch = len(batches)
        try:
            while st.step < len(batches):
                rows = batches[st.step]
                value = self._train_on(rows)
                samples += len(rows)
                bar.update(loss=value, lr=self.step.lr, rate=samples * self.task.throughput[1]
                           / max(time.perf_counter() - started, 1e-9))
                stop = self.ctx.any(request.requested) or (
                    st.global_step == self.schedule.stop_after_steps)
                if st.step < len(batches) and self._between_batches(stop):
                    return True
                if st.step < len(batches) and self._finished():
                    self._finish_early()
                    return False
        finally:
            bar.close()
        self._end_epoch(time.perf_counter() - started, samples)
        if stop:
            self.progress.say(f"stopped after epoch {st.epoch}; saved "
                              f"{self.outputs.directory / 'last'}; continue with --resume")
        return stop

    def _train_on(self, rows: Sequence[int]) -> float:
        """One step on a global batch; the batch's mean loss."""
        st = self.state
        shard = self.ctx.shard(rows, st.epoch)
        try:
            value = self.step(lambda: self.forward(shard))
        except NonFiniteLoss as exc:
            raise MinitfError(
                f"the loss became {exc.value} at epoch {st.epoch + 1}, step {st.step + 1}; "
                f"training stopped. The last good checkpoint is "
                f"{self.outputs.directory / 'last'} (if any was written). Try a lower --lr, "
                "or check the data") from None
        st.step, st.global_step = st.step + 1, st.global_step + 1
        n = len(rows)
        st.epoch_loss = (st.epoch_loss[0] + value * n, st.epoch_loss[1] + n)
        st.window_loss = (st.window_loss[0] + value * n, st.window_loss[1] + n)
        return value

    def _between_batches(self, stop: bool) -> bool:
        """Mid-epoch: evaluate / save as scheduled; on a stop request save and say so."""
        s, st = self.schedule, self.state
        if s.eval_every and st.global_step % s.eval_every == 0:
            self._evaluate_record({"type": "eval"})
        if stop or (s.save_every and st.global_step % s.save_every == 0):
            self.save_last()
        if stop:
            self.progress.say(f"stopped at epoch {st.epoch + 1}, step {st.step}; saved "
                              f"{self.outputs.directory / 'last'}; continue with --resume")
        return stop

    def _finish_early(self) -> None:
        """max_steps or the time budget ended the run mid-epoch: a last evaluation and save."""
        if not (self.schedule.eval_every and self.state.global_step % self.schedule.eval_every
                == 0):
            self._evaluate_record({"type": "eval"})
        self.save_last()
        self.progress.say(f"finished at step {self.state.global_step} "
                          f"({self.clock.seconds / 60:.1f} min of training)")

    def _end_epoch(self, seconds: float, samples: int) -> None:
        st = self.state
        record = {"type": "epoch", "epoch": st.epoch + 1, "step": st.global_step,
                  "train_loss": st.epoch_loss[0] / max(st.epoch_loss[1], 1), "lr": self.step.lr,
                  "seconds": seconds, "samples": samples,  # samples: in this process
                  "samples_per_s": samples / max(seconds, 1e-9)}
        unit, per_sample = self.task.throughput
        if unit != "samples":
            record[f"{unit}_per_s"] = record["samples_per_s"] * per_sample
        s = self.schedule
        due = s.eval_each_epoch or (s.eval_every and st.global_step % s.eval_every == 0)
        self._evaluate_record(record, validate=bool(due))
        st.epoch, st.step, st.epoch_loss = st.epoch + 1, 0, (0.0, 0)
        self.save_last()

    # -- evaluation, records, checkpoints -------------------------------------------------------

    def _evaluate_record(self, record: dict[str, Any], validate: bool = True) -> None:
        """Evaluate (if the task can), log `record`, keep best/ when it improved."""
        st = self.state
        if record["type"] == "eval":
            record.update(epoch=st.epoch + st.step / max(self._batches_in_epoch, 1),
                          step=st.global_step, lr=self.step.lr,
                          train_loss=st.window_loss[0] / max(st.window_loss[1], 1))
        st.window_loss = (0.0, 0)
        validated = validate and self.task.evaluate is not None
        improved = self.task.evaluate is None  # no validation data: the latest is the best
        if validated:
            record["validation"] = self.task.evaluate()
            improved = self._improved(record["validation"])
            st.bad_evals = 0 if improved else st.bad_evals + 1
            (self.task.train_mode or self.task.model.train)()
        note = self.task.on_record(record) if self.task.on_record is not None else None
        self.progress.say(self._line(record, improved))
        if note:
            self.progress.say(note)
        st.history.append(record)
        self.outputs.log(record)
        st.metrics_lines = self.outputs.lines
        if improved:
            self.outputs.save_best(self.task.save)

    def _improved(self, metrics: dict[str, Any]) -> bool:
        s, st = self.schedule, self.state
        if not s.select_metric:
            return True
        score = metrics[s.select_metric]
        better = st.best is None or (score > st.best["score"] if s.higher_is_better
                                     else score < st.best["score"])
        if better:
            st.best = {"score": score, "epoch": st.epoch + 1, "step": st.global_step}
        return better

    def _line(self, record: dict[str, Any], improved: bool) -> str:
        where = (f"epoch {record['epoch']}" if record["type"] == "epoch"
                 else f"step {record['step']}")
        line = f"{where}: train loss {record['train_loss']:.4f}"
        if "validation" in record:
            describe = self.task.describe or describe_metrics
            line += f", validation {describe(record['validation'])}"
            line += "  (best so far)" if improved and self.schedule.select_metric else ""
        if "seconds" in record:
            unit, per_sample = self.task.throughput
            line += (f"  [{record['seconds']:.0f} s, "
                     f"{record['samples_per_s'] * per_sample:,.1f} {unit}/s]")
        return line

    def save_last(self) -> None:
        state = self.state_dict()  # on every rank: it gathers the RNG states
        self.outputs.save_last(self.task.save, state)


def describe_metrics(metrics: dict[str, Any]) -> str:
    """The scalar metrics, `name value`, in their order: "loss 0.3121, accuracy 0.8750"."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                     if isinstance(v, float) and k != "n")
