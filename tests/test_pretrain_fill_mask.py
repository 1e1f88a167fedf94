"""`minitf fill-mask` gives what transformers' fill-mask pipeline gives on the same model."""

from __future__ import annotations

import json

import pytest
from pretrain_fakes import char_tokenizer, tiny_corpus

from minitf.cli import main
from minitf.errors import MinitfError
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.tasks.fill_mask import FillMask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill")
    pretrain(PretrainConfig(
        train=[str(tiny_corpus(root / "c.txt"))], tokenizer=str(char_tokenizer(root / "tok")),
        output=str(root / "model"), layers=1, hidden=32, heads=2, intermediate=64,
        max_length=16, batch_size=8, max_steps=20, lr=3e-3, validation_fraction=0,
        progress="off"))
    return root / "model"


@pytest.mark.parametrize("text", ["今天天气很[MASK]。", "[MASK]们不在", "我[MASK]很[MASK]"])
def test_same_as_the_transformers_pipeline(model_dir, text):
    transformers = pytest.importorskip("transformers")
    pipe = transformers.pipeline("fill-mask", model=str(model_dir), device="cpu", top_k=5)
    expected = pipe(text)
    ours = FillMask.from_pretrained(model_dir)(text, top_k=5)
    if text.count("[MASK]") == 1:
        expected = [expected]
    assert len(ours) == len(expected)
    for row, theirs in zip(ours, expected, strict=True):
        assert [p.token_id for p in row] == [t["token"] for t in theirs]
        assert [p.token for p in row] == [t["token_str"] for t in theirs]
        assert [p.sequence for p in row] == [t["sequence"] for t in theirs]
        for p, t in zip(row, theirs, strict=True):
            assert p.score == pytest.approx(t["score"], abs=1e-5)


def test_cli_table_and_json(model_dir, capsys):
    assert main(["fill-mask", "--model", str(model_dir), "天气很[MASK]", "--top-k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "天气很[MASK]" and len(table) == 4
    assert main(["fill-mask", "--model", str(model_dir), "天[MASK]很[MASK]", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["masks"]) == 2 and len(record["masks"][0]) == 5
    assert abs(sum(p["score"] for p in record["masks"][0]) - 1) < 1  # probabilities


def test_no_mask_is_an_error(model_dir, capsys):
    with pytest.raises(MinitfError, match=r"no \[MASK\]"):
        FillMask.from_pretrained(model_dir)("天气很好")
    assert main(["fill-mask", "--model", str(model_dir), "天气很好"]) == 2
    assert "no [MASK]" in capsys.readouterr().err
