"""`minitf finetune --task segment|tag|ner` on a tiny random model and a toy corpus, then
`minitf segment` / `minitf tag` on what it wrote."""

import json
import random

import pytest
import torch

from minitf import BertForTokenClassification, MinitfError
from minitf.cli import main
from minitf.model.bert import BertModel
from minitf.model.config import BertConfig
from minitf.recipes.finetune import FinetuneConfig, finetune

WORDS = {"中国": "ns", "人民": "n", "北京": "ns", "大学": "n", "的": "u", "是": "v", "发展": "v",
         "经济": "n", "了": "u", "我们": "r", "和": "c", "新": "a", "世纪": "n", "改革开放": "v"}


def sentences(n, seed):
    rng = random.Random(seed)
    return [[rng.choice(list(WORDS)) for _ in range(rng.randint(3, 12))] for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    train, dev = sentences(240, 0), sentences(40, 1)
    for name, rows in (("train", train), ("dev", dev)):
        (root / f"{name}.words").write_text("\n".join(" ".join(s) for s in rows) + "\n\n",
                                            encoding="utf-8")
        (root / f"{name}.pd").write_text(
            "\n".join(" ".join(f"{w}/{WORDS[w]}" for w in s) for s in rows) + "\n",
            encoding="utf-8")
        conll = []
        for s in rows:   # places (ns) are entities, a character each
            for w in s:
                kind = "LOC" if WORDS[w] == "ns" else None
                conll += [f"{ch}\t{'O' if not kind else ('B-' if i == 0 else 'I-') + kind}"
                          for i, ch in enumerate(w)]
            conll.append("")
        (root / f"{name}.conll").write_text("\n".join(conll) + "\n", encoding="utf-8")
    chars = sorted({c for w in WORDS for c in w})
    model = root / "model"
    model.mkdir()
    (model / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                *chars]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(model)
    return root


def train(corpus, task, suffix, out, **changes):
    settings = {"epochs": 8, "batch_size": 16, "lr": 3e-3, "max_length": 16,
                "progress": "off", **changes}
    cfg = FinetuneConfig(task=task, train=str(corpus / f"train.{suffix}"),
                         validation=str(corpus / f"dev.{suffix}"),
                         test=str(corpus / f"dev.{suffix}"), model=str(corpus / "model"),
                         output=str(out), **settings)
    return finetune(cfg)


def test_segment_learns_the_toy_lexicon_and_segment_command_rebuilds_lines(corpus, tmp_path,
                                                                            capsys):
    result = train(corpus, "segment", "words", tmp_path / "seg")   # 16 tokens: windows
    assert result.test["f1"] > 0.95, result.test
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    model = BertForTokenClassification.from_pretrained(tmp_path / "seg" / "best")
    assert sorted(model.config.id2label.values()) == ["B", "E", "M", "S"]
    # the windows it trained on are what it predicts in, unless told otherwise
    settings = json.loads((tmp_path / "seg" / "best" / "tokenizer_config.json").read_text())
    assert settings["model_max_length"] == 16
    from minitf.tasks.tokens import TokenTagger
    assert TokenTagger.from_pretrained(tmp_path / "seg" / "best").max_length == 16
    assert TokenTagger.from_pretrained(tmp_path / "seg" / "best", max_length=40).max_length == 40
    lines = ["中国人民的北京大学改革开放新世纪的发展" * 3, "", "我们 和x中国"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["segment", "--model", str(tmp_path / "seg" / "best"), "--data",
                 str(tmp_path / "in.txt")]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].replace(" ", "") == lines[0] and out[1] == "" and len(out) == 4
    assert "北京 大学" in out[0]
    assert main(["segment", "--model", str(tmp_path / "seg" / "best"), "--json",
                 lines[2]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert all(lines[2][w["start"]:w["end"]] == w["text"] for w in record["words"])
    assert "".join(w["text"] for w in record["words"]) == lines[2].replace(" ", "")


def test_tag_task_joint_labels_and_tag_command(corpus, tmp_path, capsys):
    result = train(corpus, "tag", "pd", tmp_path / "tag")
    assert result.test["tag_accuracy"] > 0.9 and result.test["joint_f1"] > 0.9, result.test
    assert main(["tag", "--model", str(tmp_path / "tag" / "best"), "北京大学的发展"]) == 0
    assert capsys.readouterr().out.strip().split()[:2] == ["北京/ns", "大学/n"]


def test_ner_task_entity_scores_and_spans(corpus, tmp_path, capsys):
    result = train(corpus, "ner", "conll", tmp_path / "ner")
    assert result.test["per_type"]["LOC"]["f1"] > 0.9, result.test
    assert main(["tag", "--model", str(tmp_path / "ner" / "best"), "--json",
                 "我们的北京大学"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"text": "北京", "start": 3, "end": 5, "tag": "LOC"} in record["entities"]


def test_refusals(corpus, tmp_path):
    with pytest.raises(MinitfError, match="token format"):
        train(corpus, "segment", "words", tmp_path / "a", format="csv")
    with pytest.raises(MinitfError, match="is a token format"):
        finetune(FinetuneConfig(train=str(corpus / "train.words"), output=str(tmp_path / "b"),
                                format="words", progress="off"))
    (tmp_path / "dev.pd").write_text("北京/xx\n", encoding="utf-8")
    with pytest.raises(MinitfError, match=r"dev.pd:1: label 'B-xx' never occurs"):
        finetune(FinetuneConfig(task="tag", train=str(corpus / "train.pd"),
                                validation=str(tmp_path / "dev.pd"),
                                model=str(corpus / "model"), output=str(tmp_path / "c"),
                                progress="off"))


def test_interrupted_run_resumes_exactly(corpus, tmp_path):
    from safetensors.torch import load_file
    whole = train(corpus, "segment", "words", tmp_path / "whole", epochs=2)
    cut = train(corpus, "segment", "words", tmp_path / "cut", epochs=2, stop_after_steps=20)
    assert cut.interrupted
    train(corpus, "segment", "words", tmp_path / "cut", epochs=2, resume=True)
    a = load_file(tmp_path / "whole" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    assert not whole.interrupted
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_freeze_keeps_the_frozen_prefix_unchanged(corpus, tmp_path):
    train(corpus, "segment", "words", tmp_path / "frozen", epochs=1, freeze="embeddings")
    before = BertModel.from_pretrained(corpus / "model").embeddings.word_embeddings.weight
    after = BertForTokenClassification.from_pretrained(tmp_path / "frozen" / "last")
    assert torch.equal(after.bert.embeddings.word_embeddings.weight, before)
    assert not torch.equal(after.bert.encoder.layer[0].output.dense.weight,
                           BertModel.from_pretrained(corpus / "model")
                           .encoder.layer[0].output.dense.weight)
