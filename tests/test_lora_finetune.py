"""`minitf finetune --lora` end to end on a tiny random BERT: merged best/ and last/ that
transformers loads, PEFT adapters beside them, exact resume, and --adapter for predict/evaluate."""

import json

import pytest
import torch
from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows, write_csv
from safetensors.torch import load_file

from minitf import cli
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification
from minitf.recipes import finetune as FT
from minitf.tasks.peft_format import ADAPTER_DIR, load_peft_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-ft")
    model = tiny_model_dir(root / "model", layers=3)
    return {"model": model, "train": write_csv(root / "train.csv", toy_rows(64, seed=1)),
            "tok": FakeTokenizer.from_pretrained(model)}


def run(files, output, **settings):
    settings = {"max_length": 32, "batch_size": 16, "epochs": 2, "lr": 5e-3, "progress": "off",
                "lora": 4, "lora_layers": "1-2", **settings}
    cfg = FT.FinetuneConfig(train=str(files["train"]), output=str(output),
                            model=str(files["model"]), **settings)
    return FT.finetune(cfg, tokenizer=files["tok"])


def logits_of(model, files):
    batch = files["tok"](["good movie", "the plot was awful and sad", "a lovely film"])
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_merged_checkpoints_and_peft_adapters_give_the_same_logits(files, tmp_path):
    run(files, tmp_path / "out")
    base = files["model"]
    for name in ("best", "last"):
        directory = tmp_path / "out" / name
        unmerged = BertForSequenceClassification.from_pretrained(base, num_labels=2)
        load_peft_adapter(unmerged, directory / ADAPTER_DIR)
        reference = logits_of(unmerged, files)
        merged = transformers.BertForSequenceClassification.from_pretrained(directory)
        assert (logits_of(merged, files) - reference).abs().max() <= 1e-5
        assert merged.config.id2label == {0: "neg", 1: "pos"}
        hf = transformers.BertForSequenceClassification.from_pretrained(base, num_labels=2)
        with_adapter = peft.PeftModel.from_pretrained(hf, directory / ADAPTER_DIR)
        assert (logits_of(with_adapter, files) - reference).abs().max() <= 1e-5
    # The base weights did not move: layer 0 (no adapters) and the adapted linears' W.
    config = json.loads((tmp_path / "out" / "best" / ADAPTER_DIR / "adapter_config.json")
                        .read_text())
    assert config["target_modules"] == ["query", "value"]
    assert config["layers_to_transform"] == [1, 2]
    before, after = load_file(base / "model.safetensors"), load_file(
        tmp_path / "out" / "best" / "model.safetensors")
    for name in ("bert.encoder.layer.0.attention.self.query.weight",
                 "bert.encoder.layer.1.attention.self.key.weight"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["bert.encoder.layer.1.attention.self.query.weight"],
                           after["bert.encoder.layer.1.attention.self.query.weight"])


def test_resume_with_adapters_is_bit_identical(files, tmp_path):
    run(files, tmp_path / "full")
    assert run(files, tmp_path / "resumed", stop_after_steps=5).interrupted
    run(files, tmp_path / "resumed", resume=True)
    for name in ("best/model.safetensors", "last/model.safetensors",
                 f"last/{ADAPTER_DIR}/adapter_model.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_lora_settings_are_checked(files, tmp_path):
    with pytest.raises(MinitfError, match="--freeze"):
        run(files, tmp_path / "a", freeze="layers:1")
    with pytest.raises(MinitfError, match="has 3 encoder layers"):
        run(files, tmp_path / "b", lora_layers="2-3")
    run(files, tmp_path / "c", epochs=1)
    with pytest.raises(MinitfError, match="--lora"):
        run(files, tmp_path / "c", resume=True, lora=8)
    with pytest.raises(MinitfError, match="--lora-dropout, --lora-layers set without --lora R"):
        run(files, tmp_path / "d", lora=0, lora_dropout=0.2)


def test_predict_and_evaluate_with_an_adapter(files, tmp_path, capsys):
    run(files, tmp_path / "out", epochs=1)
    best = tmp_path / "out" / "best"
    test = write_csv(tmp_path / "test.csv", toy_rows(20, seed=3))
    outputs = []
    for model_args in (["--model", str(best)],
                       ["--model", str(files["model"]), "--adapter", str(best / ADAPTER_DIR)]):
        assert cli.main(["predict", *model_args, "--data", str(test)]) == 0
        predicted = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert cli.main(["evaluate", *model_args, "--data", str(test), "--json"]) == 0
        outputs.append((predicted, json.loads(capsys.readouterr().out)))
    (p1, e1), (p2, e2) = outputs
    assert [a["label"] for a in p1] == [a["label"] for a in p2]
    for a, b in zip(p1, p2, strict=True):
        for label, q in a["probabilities"].items():
            assert abs(q - b["probabilities"][label]) <= 1e-5
    assert e1["accuracy"] == e2["accuracy"]


def test_finetune_continues_from_a_peft_adapter(files, tmp_path):
    run(files, tmp_path / "first", epochs=1)
    adapter = tmp_path / "first" / "best" / ADAPTER_DIR
    with pytest.raises(MinitfError, match="--lora-layers with --adapter"):
        run(files, tmp_path / "second", epochs=1, lora=0, adapter=str(adapter))
    run(files, tmp_path / "second", epochs=1, lora=0, lora_layers="all", adapter=str(adapter))
    config = json.loads((tmp_path / "second" / "best" / ADAPTER_DIR / "adapter_config.json")
                        .read_text())
    assert config["r"] == 4 and config["layers_to_transform"] == [1, 2]
