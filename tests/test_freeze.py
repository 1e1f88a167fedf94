"""Freezing policies, the split forward pass and the prefix cache, on a tiny random BERT."""

import pytest
import torch
import torch.nn.functional as F
from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification, num_parameters
from minitf.model.freeze import classifier_logits, freeze, parse_policy, train_mode
from minitf.train.freeze import PrefixCache
from minitf.train.optim import build_optimizer

POLICIES = ["none", "embeddings", "layers:1", "layers:2", "all-but-head"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")
    model = BertForSequenceClassification.from_pretrained(directory, num_labels=2,
                                                          allow_missing_head=True)
    rows = toy_rows(64)
    ex = D.Examples([t for t, _ in rows], [y for _, y in rows])
    ex, ids = D.label_ids(ex, ["neg", "pos"])
    data = D.encode(ex, FakeTokenizer.from_pretrained(directory), ids, max_length=32)
    return model, data


def test_parse_policy():
    assert parse_policy("none", 6).frozen_layers is None
    assert parse_policy("embeddings", 6).frozen_layers == 0
    assert parse_policy("layers:4", 6).frozen_layers == 4
    assert parse_policy("all-but-head", 6).frozen_layers == 6
    with pytest.raises(MinitfError, match="only 6 encoder layers"):
        parse_policy("layers:7", 6)
    with pytest.raises(MinitfError, match="unknown freezing policy"):
        parse_policy("layers:x", 6)


def test_freeze_marks_the_prefix_only(setup):
    model, _ = setup
    freeze(model, "layers:1")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
                          for n in frozen)
    assert any(n.startswith("bert.embeddings.") for n in frozen)
    assert num_parameters(model, trainable_only=True) == sum(
        p.numel() for n, p in model.named_parameters() if n not in frozen)
    freeze(model, "all-but-head")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                         "classifier.weight", "classifier.bias"}
    freeze(model, "none")
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("policy", POLICIES)
def test_split_forward_equals_the_model(setup, policy):
    model, data = setup
    plan = freeze(model, policy)
    model.eval()
    indices = list(range(0, 64, 3))
    batch = data.collate(indices)
    expected = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
    torch.testing.assert_close(classifier_logits(model, batch, plan), expected,
                               rtol=1e-5, atol=1e-6)
    if plan.frozen:
        cache = PrefixCache(model, data, plan.frozen_layers, batch_size=7)
        torch.testing.assert_close(classifier_logits(model, batch, plan, cache, indices),
                                   expected, rtol=1e-5, atol=1e-6)
    freeze(model, "none")


def test_cls_only_last_layer_matches_the_full_layer(setup):
    model, data = setup
    model.eval()
    batch = data.collate([1, 2, 3, 40])
    x = model.hidden_states(batch["input_ids"], batch["attention_mask"], layers=1)
    mask = batch["attention_mask"]
    encoder = model.bert.encoder
    full, _ = encoder(x, mask, start=1)
    cls, _ = encoder(x, mask, start=1, cls_only=True)
    assert cls.shape == (4, 1, 32)
    torch.testing.assert_close(cls, full[:, :1], rtol=1e-5, atol=1e-6)


def test_the_classifier_forward_goes_through_the_split_encoder(setup, monkeypatch):
    """classifier_logits is the model's forward, not a copy: break the encoder, break both."""
    model, data = setup
    batch = data.collate([1, 2])
    plan = parse_policy("layers:1", 2)
    monkeypatch.setattr(model.bert.encoder.layer[1].output, "forward",
                        lambda x, residual: torch.zeros_like(residual))
    model.eval()
    out = classifier_logits(model, batch, plan)
    torch.testing.assert_close(out, model.head(torch.zeros(2, 1, 32)))


def test_cache_stores_unpadded_prefix_outputs(setup):
    model, data = setup
    cache = PrefixCache(model, data, 1, batch_size=5)
    assert cache.hidden.shape == (int(data.lengths.sum()), 32)
    hidden, mask = cache.collate([7, 3])
    model.eval()
    with torch.no_grad():
        batch = data.collate([7, 3])
        direct = model.hidden_states(batch["input_ids"], batch["attention_mask"], layers=1)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], direct[real], rtol=1e-5, atol=1e-6)
    assert PrefixCache(model, data, 2).hidden.shape == (64, 32)  # all frozen: [CLS] only


def test_frozen_parameters_get_no_gradient_and_no_optimizer_state(setup):
    model, data = setup
    plan = freeze(model, "layers:1")
    optimizer = build_optimizer(model, 1e-3)
    train_mode(model, plan)
    assert not model.bert.embeddings.training and model.bert.encoder.layer[1].training
    batch = data.collate(list(range(16)))
    F.cross_entropy(classifier_logits(model, batch, plan), batch["labels"]).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        assert (p.grad is None) != p.requires_grad, name
        assert (p in optimizer.state) == p.requires_grad, name
    freeze(model, "none")
