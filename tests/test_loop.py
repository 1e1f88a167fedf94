"""The shared training engine (minitf/train/loop.py, step.py) on a tiny linear task: what a
second recipe relies on — max steps, evaluation every N steps, a time budget, patience,
resume mid-epoch, the GradScaler state — independent of the fine-tuning recipe."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.train.checkpoint import Outputs, load_state
from minitf.train.distributed import Context
from minitf.train.loop import Schedule, Task, Trainer
from minitf.train.optim import build_optimizer, linear_schedule
from minitf.train.progress import Progress
from minitf.train.step import TrainStep

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def make_trainer(out: Path, schedule: Schedule, evaluate: bool = True, seed: int = 0,
                 resume: bool = False):
    """y = x·w + noise, 40 rows in batches of 8, a linear model with dropout (so the RNG
    state matters for resume)."""
    torch.manual_seed(seed)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    model = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 1))
    if resume:
        model.load_state_dict(torch.load(out / "last" / "model.pt"))

    def batches(epoch):
        order = torch.randperm(40, generator=torch.Generator().manual_seed(epoch)).tolist()
        return [order[i:i + 8] for i in range(0, 40, 8)]

    def loss(model, shard):
        rows = shard.rows
        return shard.mean(((model(x[rows])[:, 0] - y[rows]) ** 2).sum())

    def validation():
        with torch.no_grad():
            return {"loss": float(((model.eval()(x)[:, 0] - y) ** 2).mean())}

    def save(directory):
        torch.save(model.state_dict(), directory / "model.pt")

    optimizer = build_optimizer(model, 0.05, 0.0)
    step = TrainStep(optimizer, linear_schedule(optimizer, 2, 30), 1.0, CPU)
    task = Task(model, batches, loss, save, evaluate=validation if evaluate else None)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(task, step, schedule, Context(), Outputs(out), Progress("off"), CPU)
    if resume:
        trainer.load_state_dict(load_state(out / "last"))
    return trainer, model


def records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_max_steps_and_evaluation_every_n_steps(tmp_path):
    trainer, _ = make_trainer(tmp_path, Schedule(max_steps=12, eval_every=3,
                                                 eval_each_epoch=False, select_metric="loss",
                                                 higher_is_better=False))
    result = trainer.run()
    assert not result.interrupted and result.global_step == 12
    got = [(r["type"], r["step"]) for r in records(tmp_path)]
    # 5 batches per epoch: epoch records at 5 and 10 (no validation), evaluations every 3
    assert got == [("eval", 3), ("epoch", 5), ("eval", 6), ("eval", 9), ("epoch", 10),
                   ("eval", 12)]
    evals = [r for r in records(tmp_path) if r["type"] == "eval"]
    assert all("validation" in r for r in evals)
    assert evals[0]["epoch"] == pytest.approx(3 / 5) and evals[-1]["epoch"] == pytest.approx(2.4)
    assert all("validation" not in r for r in records(tmp_path) if r["type"] == "epoch")
    assert evals[-1]["validation"]["loss"] < evals[0]["validation"]["loss"]  # it learns
    best = min(evals, key=lambda r: r["validation"]["loss"])
    assert result.best["step"] == best["step"]
    assert load_state(tmp_path / "last")["loop"]["global_step"] == 12


def test_an_evaluation_due_at_an_epoch_end_is_made_there(tmp_path):
    trainer, _ = make_trainer(tmp_path, Schedule(max_steps=10, eval_every=5,
                                                 eval_each_epoch=False))
    trainer.run()
    got = [(r["type"], r["step"], "validation" in r) for r in records(tmp_path)]
    assert got == [("epoch", 5, True), ("epoch", 10, True)]


@pytest.mark.parametrize("stop", [2, 5, 7])
def test_resume_mid_epoch_is_bit_identical(tmp_path, stop):
    schedule = dict(epochs=3, eval_every=4, select_metric="loss", higher_is_better=False)
    full, full_model = make_trainer(tmp_path / "full", Schedule(**schedule))
    full.run()
    first, _ = make_trainer(tmp_path / "part", Schedule(**schedule, stop_after_steps=stop))
    assert first.run().interrupted
    second, model = make_trainer(tmp_path / "part", Schedule(**schedule), resume=True)
    result = second.run()
    assert not result.interrupted and result.global_step == 15
    for a, b in zip(full_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    session = ("seconds", "samples", "samples_per_s")
    strip = [{k: v for k, v in r.items() if k not in session} for r in records(tmp_path / "full")]
    assert strip == [{k: v for k, v in r.items() if k not in session}
                     for r in records(tmp_path / "part")]


def test_a_time_budget_ends_the_run(tmp_path):
    trainer, _ = make_trainer(tmp_path, Schedule(epochs=10_000, minutes=0.5 / 60))
    result = trainer.run()
    assert not result.interrupted and 0.5 <= result.train_seconds < 30
    assert result.global_step < 50_000
    assert records(tmp_path)[-1]["type"] in ("eval", "epoch")


def test_patience_counts_evaluations_without_improvement(tmp_path):
    # an evaluation that never improves: the first is best, then `patience` more
    trainer, _ = make_trainer(tmp_path, Schedule(epochs=20, patience=2, select_metric="n"))
    trainer.task.evaluate = lambda: {"n": 1.0, "loss": 0.0}
    result = trainer.run()
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best["epoch"] == 1


def test_a_run_needs_an_end():
    with pytest.raises(MinitfError, match="no end"):
        Schedule().check()


def test_grad_scaler_state_is_saved_and_restored():
    """fp16 needs a GPU; the GradScaler's state travels through TrainStep.state_dict the same
    way on any device, so this checks it with a CPU scaler."""
    model = nn.Linear(3, 1)
    optimizer = build_optimizer(model, 0.1, 0.0)
    step = TrainStep(optimizer, linear_schedule(optimizer, 0, 10), 1.0, CPU)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    for _ in range(3):
        step(lambda: model(torch.ones(2, 3)).sum())
    state = step.state_dict()
    assert state["scaler"]["scale"] == 1024.0 * 2 ** 3  # grew once per good step
    again = TrainStep(build_optimizer(nn.Linear(3, 1), 0.1, 0.0),
                      linear_schedule(optimizer, 0, 10), 1.0, CPU)
    again.scaler = torch.amp.GradScaler("cpu")
    again.load_state_dict(state)
    assert again.scaler.get_scale() == 1024.0 * 2 ** 3


def test_a_nan_loss_leaves_the_weights_untouched():
    model = nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(model, 0.1, 0.0)
    step = TrainStep(optimizer, linear_schedule(optimizer, 0, 10), 1.0, CPU)
    from minitf.train.step import NonFiniteLoss
    with pytest.raises(NonFiniteLoss):
        step(lambda: model(torch.ones(2, 3)).sum() * float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
