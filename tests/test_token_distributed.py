"""`minitf finetune --task segment` under torchrun (2 CPU processes, gloo) gives the one-process
run: the loss is the mean over the global batch's labelled positions on every rank (each rank's
sum over the count of all of them), not an average of per-rank means."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_distributed import TOLERANCE, environment
from token_fakes import make_corpus

from minitf import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def without_dropout(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model_dir / "config.json").write_text(json.dumps(config))


def test_two_processes_tag_like_one(tmp_path):
    import subprocess
    import sys

    corpus = make_corpus(tmp_path, train_size=60, layers=1)
    without_dropout(corpus / "model")   # dropout masks are per-rank draws
    args = ["finetune", "--task", "segment", "--model", str(corpus / "model"),
            "--train", str(corpus / "train.words"), "--validation", str(corpus / "dev.words"),
            "--max-length", "12", "--batch-size", "8", "--epochs", "2", "--lr", "3e-3",
            "--progress", "log"]
    assert cli.main([*args, "--output", str(tmp_path / "one")]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "-m", "minitf", *args, "--output", str(tmp_path / "two")],
        env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for checkpoint in ("last", "best"):
        one = load_file(str(tmp_path / "one" / checkpoint / "model.safetensors"))
        two = load_file(str(tmp_path / "two" / checkpoint / "model.safetensors"))
        assert one.keys() == two.keys()
        for name in one:
            torch.testing.assert_close(two[name], one[name], **TOLERANCE, msg=name)
    logs = [[json.loads(x) for x in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]
            for out in ("one", "two")]
    assert [r["type"] for r in logs[0]] == [r["type"] for r in logs[1]]
    for a, b in zip(*logs, strict=True):
        if a["type"] == "lexicon":   # the weight picked on validation after training
            assert b["chosen"] == a["chosen"]
            continue
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["validation"]["f1"] == pytest.approx(a["validation"]["f1"])
