"""`minitf pretrain` under torchrun (2 CPU processes, gloo) gives the one-process run: the
masks are drawn per (seed, epoch, block), not per rank, and each block's loss weighs the same
on every rank; --validation FILE is evaluated split between the ranks and gathered."""

import json

import pytest
import torch
from pretrain_fakes import char_tokenizer, tiny_corpus
from safetensors.torch import load_file
from test_distributed import TOLERANCE, torchrun

from minitf import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def metrics(output):
    return [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_pretrain_like_one(tmp_path):
    tok = char_tokenizer(tmp_path / "tok")
    train = tiny_corpus(tmp_path / "train.txt")
    validation = tiny_corpus(tmp_path / "validation.txt", lines=30, seed=7)
    args = ["pretrain", "--train", str(train), "--validation", str(validation),
            "--tokenizer", str(tok), "--layers", "1", "--hidden", "32", "--heads", "2",
            "--intermediate", "64", "--max-length", "16", "--batch-size", "8", "--max-steps", "6",
            "--eval-every", "3", "--dropout", "0", "--lr", "1e-3", "--progress", "log"]
    assert cli.main([*args, "--output", str(tmp_path / "one")]) == 0
    result = torchrun([*args, "--output", str(tmp_path / "two")])
    assert result.returncode == 0, result.stderr[-3000:]

    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], **TOLERANCE, msg=name)
    evals = [[r["validation"] for r in metrics(tmp_path / out) if "validation" in r]
             for out in ("one", "two")]
    assert len(evals[0]) == len(evals[1]) == 2  # steps 3 and 6
    for a, b in zip(*evals, strict=True):
        assert a["masked_tokens"] == b["masked_tokens"] > 0  # the whole --validation file
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["accuracy"] == a["accuracy"]
