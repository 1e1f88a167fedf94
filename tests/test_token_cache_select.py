"""Token tasks with the frozen-prefix cache (same training as without it), the best checkpoint
chosen by the task's score (--select-metric), ONNX export of a token classifier (ONNX Runtime
logits ≤ 1e-4) and `minitf segment --precision bf16|int8`."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from token_fakes import make_corpus, train

from minitf.cli import main
from minitf.errors import MinitfError
from minitf.model.bert import BertForTokenClassification
from minitf.model.config import BertConfig
from minitf.tasks.export import export_onnx

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("token-cache"))


@pytest.mark.parametrize("settings", [{"freeze": "layers:1"}, {"freeze": "all-but-head"},
                                      {"lora": 4, "lora_layers": "2"}])
def test_cache_trains_the_same_weights_as_recomputing_the_prefix(corpus, tmp_path, settings):
    cached = train(corpus, "segment", tmp_path / "cached", **settings)
    plain = train(corpus, "segment", tmp_path / "plain", cache=False, **settings)
    for c, p in zip(cached.history, plain.history, strict=True):
        assert c["train_loss"] == pytest.approx(p["train_loss"], rel=1e-5)
        assert c["validation"]["loss"] == pytest.approx(p["validation"]["loss"], rel=1e-5)
    a = load_file(tmp_path / "cached" / "last" / "model.safetensors")
    b = load_file(tmp_path / "plain" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        # A key bias adds the same score to every key of a query: softmax ignores it, its exact
        # gradient is 0 and Adam's normalised steps turn rounding noise into ±lr moves (both
        # runs leave it ~1e-6, nowhere near each other). Everything else agrees to ~1e-7.
        if not name.endswith("attention.self.key.bias"):
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    assert cached.history[-1]["train_loss"] < cached.history[0]["train_loss"]


def best_record(out, kind="test"):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in records if r.get("type") == kind)


@pytest.mark.parametrize("task, auto", [("segment", "f1"), ("tag", "joint_f1"), ("ner", "f1")])
def test_best_checkpoint_is_chosen_by_the_task_score(corpus, tmp_path, task, auto):
    # A low learning rate: the scores still move from epoch to epoch.
    for metric in ("auto", "loss"):
        out = tmp_path / metric
        result = train(corpus, task, out, epochs=3, lr=5e-4, select_metric=metric)
        scores = [r["validation"][auto if metric == "auto" else "loss"] for r in result.history]
        pick = (max if metric == "auto" else min)(scores)
        best_epoch = best_record(out)["best_epoch"]
        assert scores[best_epoch - 1] == pick, (scores, best_epoch)
        # validation = test here: best/ scores what its epoch scored, with the lexicon weight
        # then picked on validation (segment / tag: weight 0 scores what the epoch scored)
        expected = pick
        if task != "ner" and metric == "auto":
            lexicon = best_record(out, "lexicon")
            assert lexicon["scores"]["0.0"] == pytest.approx(pick, abs=1e-6)
            expected = lexicon["scores"][str(float(lexicon["chosen"]))]
            assert expected == max(lexicon["scores"].values())
        assert result.test[auto if metric == "auto" else "loss"] == pytest.approx(expected,
                                                                                 abs=1e-6)


@pytest.mark.parametrize("task, metric", [("segment", "macro_f1"), ("segment", "joint_f1"),
                                          ("ner", "tag_accuracy"), ("tag", "pearson")])
def test_a_metric_the_task_lacks_is_refused(corpus, tmp_path, task, metric):
    with pytest.raises(MinitfError, match=f"--select-metric {metric} does not exist for "
                                          f"--task {task}"):
        train(corpus, task, tmp_path / "out", select_metric=metric)
    assert not (tmp_path / "out" / "last").exists()


def test_classification_refuses_token_metrics(tmp_path):
    from minitf.recipes.finetune import FinetuneConfig, check_config
    with pytest.raises(MinitfError, match="does not apply to classification"):
        check_config(FinetuneConfig(train="x.csv", output=str(tmp_path), select_metric="f1"))


def test_onnx_export_of_a_token_classifier_matches_minitf(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64,
                        id2label={0: "B", 1: "M", 2: "E", 3: "S"})
    torch.manual_seed(0)
    BertForTokenClassification(config).save_pretrained(tmp_path / "model")
    model = BertForTokenClassification.from_pretrained(tmp_path / "model").eval()
    sess = ort.InferenceSession(str(export_onnx(tmp_path / "model", tmp_path / "m.onnx")),
                                providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for b, n in ((1, 3), (4, 21)):
        ids = torch.randint(1, 50, (b, n))
        mask = torch.ones_like(ids)
        mask[-1, max(1, n - 5):] = 0
        batch = {"input_ids": ids * mask, "attention_mask": mask,
                 "token_type_ids": torch.zeros_like(ids)}
        (logits,) = sess.run(None, {k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            ref = model(**batch).logits
        assert logits.shape == (b, n, 4)
        real = mask.bool()
        np.testing.assert_allclose(logits[real.numpy()], ref[real].numpy(), atol=1e-4, rtol=0)


def test_segment_command_at_bf16_and_int8_gives_the_fp32_words(corpus, tmp_path, capsys):
    result = train(corpus, "segment", tmp_path / "seg", epochs=6)
    assert result.test["f1"] > 0.9, result.test
    text = "中国人民的北京大学改革开放新世纪的发展"
    lines = {}
    for precision in ("fp32", "bf16", "int8"):
        assert main(["segment", "--model", str(tmp_path / "seg" / "best"), "--precision",
                     precision, text]) == 0
        lines[precision] = capsys.readouterr().out
    assert lines["bf16"] == lines["fp32"] and lines["int8"] == lines["fp32"], lines
    assert lines["fp32"].split() == ["中国", "人民", "的", "北京", "大学", "改革开放", "新", "世纪",
                                     "的", "发展"]


@pytest.mark.parametrize("task, metric, best", [("segment", "auto", 1), ("segment", "accuracy", 2),
                                                ("tag", "auto", 3), ("ner", "auto", 1),
                                                ("tag", "loss", 2)])
def test_select_metric_picks_the_epoch_of_that_score(corpus, tmp_path, monkeypatch, task,
                                                     metric, best):
    """Validation scores whose best epochs differ by metric (the real scores, then overridden
    per evaluation): best/ follows the one asked for; auto: f1 (segment, ner), joint_f1 (tag)."""
    from minitf.recipes import tokens as R
    real, calls = R.score, []
    fake = [{"f1": 0.9, "accuracy": 0.1, "joint_f1": 0.2, "loss": 0.5},
            {"f1": 0.1, "accuracy": 0.9, "joint_f1": 0.3, "loss": 0.1},
            {"f1": 0.5, "accuracy": 0.5, "joint_f1": 0.8, "loss": 0.9}]

    def score(*args):
        calls.append(1)
        return {**real(*args), **fake[min(len(calls), 3) - 1]}
    monkeypatch.setattr(R, "score", score)
    train(corpus, task, tmp_path / "out", epochs=3, select_metric=metric)
    assert best_record(tmp_path / "out")["best_epoch"] == best
