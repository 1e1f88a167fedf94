"""Loading and saving Hugging Face-layout directories: checked copies, refusals, atomic saves."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from minitf import BertForSequenceClassification, BertModel, MinitfError
from minitf.model import weights as weights_module

transformers = pytest.importorskip("transformers")

HF_CONFIG = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=32)
IDS = torch.tensor([[2, 7, 9, 11, 3, 0], [2, 5, 3, 0, 0, 0]])
MASK = (IDS != 0).long()


@pytest.fixture(scope="module")
def hf_base_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("hf_base")
    transformers.BertModel(transformers.BertConfig(**HF_CONFIG)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def hf_classifier_dir(tmp_path_factory):
    torch.manual_seed(1)
    directory = tmp_path_factory.mktemp("hf_cls")
    config = transformers.BertConfig(**HF_CONFIG, id2label={0: "neg", 1: "neu", 2: "pos"},
                                     label2id={"neg": 0, "neu": 1, "pos": 2})
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def copy_dir(src, dst, **replace_tensors):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(src / "model.safetensors")
    tensors.update(replace_tensors)
    save_file({k: v for k, v in tensors.items() if v is not None}, dst / "model.safetensors")
    return dst


def hf_hidden(directory):
    model = transformers.BertModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).last_hidden_state


def test_a_transformers_base_checkpoint_loads_and_matches(hf_base_dir):
    ours = BertModel.from_pretrained(hf_base_dir, attn_backend="reference")
    with torch.no_grad():
        mine = ours(IDS, MASK).last_hidden_state
    real = MASK.bool()
    torch.testing.assert_close(mine[real], hf_hidden(hf_base_dir)[real], atol=1e-5, rtol=0)


def test_a_transformers_classifier_loads_with_its_labels(hf_classifier_dir):
    ours = BertForSequenceClassification.from_pretrained(hf_classifier_dir)
    theirs = transformers.BertForSequenceClassification.from_pretrained(hf_classifier_dir).eval()
    assert ours.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS, MASK).logits,
                                   theirs(input_ids=IDS, attention_mask=MASK).logits,
                                   atol=1e-5, rtol=0)
    # The encoder alone loads from a task checkpoint too: the `bert.` prefix is understood.
    BertModel.from_pretrained(hf_classifier_dir)


def test_what_minitf_saves_transformers_loads(tmp_path, hf_classifier_dir):
    ours = BertForSequenceClassification.from_pretrained(hf_classifier_dir)
    ours.save_pretrained(tmp_path / "saved")
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert theirs.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=IDS, attention_mask=MASK).logits,
                                   ours(IDS, MASK).logits, atol=1e-5, rtol=0)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "saved")
    for (name, a), (_, b) in zip(ours.state_dict().items(), reloaded.state_dict().items(),
                                     strict=True):
        assert torch.equal(a, b), name


def test_a_saved_base_model_loads_in_transformers(tmp_path, hf_base_dir):
    BertModel.from_pretrained(hf_base_dir).save_pretrained(tmp_path / "base")
    real = MASK.bool()
    torch.testing.assert_close(hf_hidden(tmp_path / "base")[real], hf_hidden(hf_base_dir)[real])


def test_legacy_names_prefix_and_buffers_are_understood(tmp_path, hf_base_dir):
    tensors = load_file(hf_base_dir / "model.safetensors")
    legacy = {}
    for name, tensor in tensors.items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                           "LayerNorm.beta")
        legacy["bert." + name] = tensor
    legacy["bert.embeddings.position_ids"] = torch.arange(32)[None]
    legacy["cls.predictions.bias"] = torch.zeros(60)  # a pre-training head: ignored
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "config.json").write_text((hf_base_dir / "config.json").read_text())
    save_file(legacy, tmp_path / "legacy" / "model.safetensors")
    a = BertModel.from_pretrained(tmp_path / "legacy")
    b = BertModel.from_pretrained(hf_base_dir)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_sharded_checkpoints_load(tmp_path, hf_base_dir):
    tensors = load_file(hf_base_dir / "model.safetensors")
    names = sorted(tensors)
    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    (shard_dir / "config.json").write_text((hf_base_dir / "config.json").read_text())
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, shard_dir / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = BertModel.from_pretrained(shard_dir)
    assert torch.equal(loaded.pooler.dense.weight, tensors["pooler.dense.weight"])
    (shard_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(MinitfError, match="lists shard 'model-00002-of-00002.safetensors'"):
        BertModel.from_pretrained(shard_dir)


def test_missing_unexpected_and_misshaped_tensors_are_all_named_at_once(tmp_path, hf_base_dir):
    broken = copy_dir(hf_base_dir, tmp_path / "broken",
                      **{"pooler.dense.bias": None, "encoder.layer.0.extra.weight": torch.zeros(1),
                         "embeddings.word_embeddings.weight": torch.zeros(61, 32)})
    with pytest.raises(MinitfError) as info:
        BertModel.from_pretrained(broken)
    message = str(info.value)
    assert "missing (1): pooler.dense.bias" in message
    assert "unexpected (1): encoder.layer.0.extra.weight" in message
    assert "embeddings.word_embeddings.weight: checkpoint (61, 32) vs model (60, 32)" in message


def test_a_base_checkpoint_needs_an_explicit_new_head(hf_base_dir):
    with pytest.raises(MinitfError, match="allow_missing_head=True"):
        BertForSequenceClassification.from_pretrained(hf_base_dir, num_labels=3)
    model = BertForSequenceClassification.from_pretrained(hf_base_dir, num_labels=3,
                                                          allow_missing_head=True)
    assert model.classifier.out_features == 3 and model.config.num_labels == 3


def test_a_classifier_with_other_labels_is_not_silently_reshaped(hf_classifier_dir):
    with pytest.raises(MinitfError, match="has 3 labels"):
        BertForSequenceClassification.from_pretrained(hf_classifier_dir, num_labels=2)


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "empty"])
def test_a_corrupt_safetensors_file_names_the_file(tmp_path, hf_base_dir, damage):
    bad = copy_dir(hf_base_dir, tmp_path / "bad")
    data = (bad / "model.safetensors").read_bytes()
    broken = {"truncated": data[: len(data) // 2], "garbage header": b"\xff" * 8 + data[8:],
              "empty": b""}[damage]
    (bad / "model.safetensors").write_bytes(broken)
    with pytest.raises(MinitfError, match="model.safetensors: cannot read safetensors"):
        BertModel.from_pretrained(bad)


def test_missing_files_and_pickles_are_refused_with_advice(tmp_path, hf_base_dir):
    with pytest.raises(MinitfError, match="not found"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MinitfError, match="no config.json"):
        BertModel.from_pretrained(empty)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((hf_base_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(MinitfError, match="weights/convert_bin.py"):
        BertModel.from_pretrained(pickled)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, hf_base_dir, monkeypatch):
    model = BertModel.from_pretrained(hf_base_dir)
    target = tmp_path / "ckpt"
    model.save_pretrained(target)
    (target / "vocab.txt").write_text("[PAD]\n")  # a file the model does not write is kept
    before = (target / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights_module, "save_safetensors", crash)
    with pytest.raises(OSError):
        model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind
    monkeypatch.undo()
    model.save_pretrained(target)
    assert (target / "vocab.txt").read_text() == "[PAD]\n"


@pytest.fixture(scope="module", params=[torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def hf_half_dir(request, tmp_path_factory):
    torch.manual_seed(2)
    directory = tmp_path_factory.mktemp("hf_half")
    transformers.BertModel(transformers.BertConfig(**HF_CONFIG)).to(request.param) \
        .save_pretrained(directory)
    return directory, request.param


def test_a_half_precision_checkpoint_keeps_its_dtype_unless_asked(tmp_path, hf_half_dir):
    directory, dtype = hf_half_dir
    stored = load_file(directory / "model.safetensors")
    model = BertModel.from_pretrained(directory)  # dtype=None: the checkpoint's, as transformers
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert torch.equal(model.pooler.dense.weight, stored["pooler.dense.weight"])
    assert transformers.BertModel.from_pretrained(directory).dtype == dtype
    for asked in (torch.float32, "fp32", "float32"):
        wide = BertModel.from_pretrained(directory, dtype=asked)
        assert wide.pooler.dense.weight.dtype == torch.float32
        assert torch.equal(wide.pooler.dense.weight, stored["pooler.dense.weight"].float())
    # Saved in the model's dtype, recorded as transformers records it.
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["dtype"] == \
        str(dtype).removeprefix("torch.")
    assert load_file(tmp_path / "again" / "model.safetensors")["pooler.dense.weight"].dtype \
        == dtype
    assert transformers.BertModel.from_pretrained(tmp_path / "again").dtype == dtype
    wide.save_pretrained(tmp_path / "wide")
    assert BertModel.from_pretrained(tmp_path / "wide").pooler.dense.weight.dtype == torch.float32


def test_dtype_names_and_bad_dtypes(hf_base_dir):
    assert BertModel.from_pretrained(hf_base_dir).embeddings.LayerNorm.weight.dtype \
        == torch.float32
    for asked, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16),
                         (torch.bfloat16, torch.bfloat16)):
        assert BertModel.from_pretrained(hf_base_dir, dtype=asked).pooler.dense.bias.dtype == dtype
    with pytest.raises(MinitfError, match="dtype 'int8' is not supported"):
        BertModel.from_pretrained(hf_base_dir, dtype="int8")
