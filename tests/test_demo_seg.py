"""`make demo-seg` end to end on a tiny budget (minitf/recipes/demo_seg.py): real People's
Daily paragraphs, two pre-training steps, a few dozen fine-tuning paragraphs."""

from __future__ import annotations

import pytest

from minitf.cli import main as cli_main
from minitf.recipes.demo_seg import DemoSegConfig, demo_seg

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_demo_runs_end_to_end_and_keeps_the_text(tmp_path, capsys):
    out = tmp_path / "demo"
    rows = demo_seg(DemoSegConfig(output=str(out), pretrain_steps=2, segment_paragraphs=40,
                                  tag_paragraphs=40, test_paragraphs=15, peers=("fmm",)))
    names = [r["system"] for r in rows]
    assert names[0].startswith("minitf (pre-trained 2 steps")
    assert names[1].startswith("minitf tagger") and names[2].startswith("forward maximum")
    for row in rows:
        assert 0.0 <= row["f1"] <= 1.0 and 0.0 <= row["oov_recall"] <= 1.0
    assert 0.0 <= rows[1]["tag_accuracy"] <= 1.0
    assert rows[2]["f1"] > 0.8          # fmm with the training words: a real, strong baseline
    printed = capsys.readouterr().out
    assert "| system | word F1 |" in printed and "reference: " in printed
    assert (out / "results.md").read_text(encoding="utf-8").startswith("Word segmentation on 15")
    # what the demo trained loads as a segmenter; its words join back to the text
    assert cli_main(["segment", "--model", str(out / "segment" / "best"), "今天天气很好。"]) == 0
    assert capsys.readouterr().out.replace(" ", "").strip() == "今天天气很好。"


def test_command_line_refuses_the_classification_demo_flags(tmp_path, capsys):
    assert cli_main(["demo", "--task", "segment", "--data", str(tmp_path), "--output",
                     str(tmp_path / "x")]) != 0
    assert "--data: not with --task segment" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
