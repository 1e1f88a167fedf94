"""`minitf finetune --task segment|tag|ner --lora R` on a tiny random BERT: merged best/ and
last/ that transformers loads, adapters in PEFT's TOKEN_CLS format that PEFT puts onto
transformers' BertForTokenClassification (logits ≤ 1e-5), exact resume, and --adapter."""

import json

import pytest
import torch
from safetensors.torch import load_file
from token_fakes import make_corpus, train

from minitf.model.bert import BertForTokenClassification
from minitf.tasks.peft_format import ADAPTER_DIR, load_peft_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("token-lora"))


def batch():
    torch.manual_seed(3)
    ids = torch.randint(5, 30, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits_of(model, b):
    with torch.no_grad():
        return model.eval()(**b).logits[b["attention_mask"].bool()]


@pytest.mark.parametrize("task", ["segment", "ner"])
def test_adapters_load_into_peft_and_merged_checkpoints_into_transformers(corpus, tmp_path,
                                                                          task):
    result = train(corpus, task, tmp_path / "out", lora=4, lora_layers="1-2")
    labels = result.label_names
    b, base = batch(), corpus / "model"
    for name in ("best", "last"):
        directory = tmp_path / "out" / name
        unmerged = BertForTokenClassification.from_pretrained(
            base, num_labels=len(labels), allow_missing_head=True, attn_backend="reference")
        load_peft_adapter(unmerged, directory / ADAPTER_DIR)
        reference = logits_of(unmerged, b)
        merged = transformers.BertForTokenClassification.from_pretrained(
            directory, attn_implementation="eager")
        assert (logits_of(merged, b) - reference).abs().max() <= 1e-5
        assert list(merged.config.id2label.values()) == labels
        hf = transformers.BertForTokenClassification.from_pretrained(
            base, num_labels=len(labels), attn_implementation="eager")
        with_adapter = peft.PeftModel.from_pretrained(hf, directory / ADAPTER_DIR)
        assert (logits_of(with_adapter, b) - reference).abs().max() <= 1e-5
    config = json.loads((tmp_path / "out" / "best" / ADAPTER_DIR / "adapter_config.json")
                        .read_text())
    assert config["task_type"] == "TOKEN_CLS" and config["modules_to_save"] == ["classifier"]
    assert config["layers_to_transform"] == [1, 2]
    # The base weights did not move; the adapted linears did, once merged.
    before = load_file(base / "model.safetensors")
    after = load_file(tmp_path / "out" / "best" / "model.safetensors")
    for key in ("encoder.layer.0.attention.self.query.weight",
                "encoder.layer.1.attention.self.key.weight", "embeddings.word_embeddings.weight"):
        assert torch.equal(before[key], after["bert." + key]), key
    key = "encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(before[key], after["bert." + key])
    if task == "segment":
        assert result.test["f1"] > 0.5, result.test  # the adapters learned something


def test_resume_with_adapters_is_bit_identical(corpus, tmp_path):
    settings = {"lora": 4, "lora_layers": "1-2"}
    train(corpus, "segment", tmp_path / "full", **settings)
    assert train(corpus, "segment", tmp_path / "cut", stop_after_steps=9, **settings).interrupted
    train(corpus, "segment", tmp_path / "cut", resume=True, **settings)
    for name in ("last/model.safetensors", f"last/{ADAPTER_DIR}/adapter_model.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "cut" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_finetune_continues_from_a_peft_adapter(corpus, tmp_path):
    train(corpus, "tag", tmp_path / "first", lora=4, lora_layers="2")
    start = load_file(tmp_path / "first" / "best" / ADAPTER_DIR / "adapter_model.safetensors")
    # A tiny learning rate: the continued adapters stay where --adapter put them.
    train(corpus, "tag", tmp_path / "more", epochs=1, lr=1e-9,
          adapter=str(tmp_path / "first" / "best" / ADAPTER_DIR))
    end = load_file(tmp_path / "more" / "last" / ADAPTER_DIR / "adapter_model.safetensors")
    assert start.keys() == end.keys()
    assert any("lora_B" in k and start[k].abs().max() > 0 for k in start)  # not a fresh B = 0
    for key in start:
        torch.testing.assert_close(end[key], start[key], rtol=0, atol=1e-6)
