"""The encoder on a small random configuration: shapes, masking, determinism, bad inputs."""

import pytest
import torch

from minitf import BertConfig, BertForSequenceClassification, BertModel, MinitfError
from minitf.model.bert import classification_loss

CONFIG = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=24)


def random_batch(batch=3, seq=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CONFIG.vocab_size, (batch, seq), generator=g)
    lengths = torch.tensor([seq, seq - 3, 2])[:batch]
    mask = (torch.arange(seq)[None] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, CONFIG.pad_token_id), mask


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BertModel(CONFIG, attn_backend="reference").eval()


def test_outputs_have_the_documented_shapes(model):
    ids, mask = random_batch()
    out = model(ids, attention_mask=mask)
    assert out.last_hidden_state.shape == (3, 10, 32)
    assert out.pooler_output.shape == (3, 32)
    assert out.attentions is None


def test_padding_never_changes_the_real_positions(model):
    ids, mask = random_batch()
    padded = model(ids, attention_mask=mask).last_hidden_state
    for row, length in enumerate(mask.sum(1).tolist()):
        alone = model(ids[row : row + 1, :length]).last_hidden_state[0]
        torch.testing.assert_close(padded[row, :length], alone, atol=1e-5, rtol=0)


def test_more_padding_on_the_right_changes_nothing(model):
    ids, mask = random_batch()
    extra = torch.zeros(3, 5, dtype=ids.dtype)
    longer = model(torch.cat([ids, extra], 1), torch.cat([mask, extra], 1)).last_hidden_state
    torch.testing.assert_close(longer[:, :10][mask.bool()],
                               model(ids, mask).last_hidden_state[mask.bool()],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "auto"])
def test_backends_agree_with_the_reference(model, backend):
    ids, mask = random_batch()
    other = BertModel(CONFIG, attn_backend=backend).eval()
    other.load_state_dict(model.state_dict())
    real = mask.bool()
    torch.testing.assert_close(other(ids, mask).last_hidden_state[real],
                               model(ids, mask).last_hidden_state[real], atol=1e-5, rtol=0)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(model):
    ids, mask = random_batch()
    assert torch.equal(model(ids, mask).last_hidden_state, model(ids, mask).last_hidden_state)
    model.train()
    try:
        a, b = model(ids, mask).last_hidden_state, model(ids, mask).last_hidden_state
    finally:
        model.eval()
    assert not torch.equal(a, b)


def test_output_attentions_gives_rows_that_sum_to_one(model):
    ids, mask = random_batch()
    out = model(ids, mask, output_attentions=True)
    assert len(out.attentions) == CONFIG.num_hidden_layers
    weights = out.attentions[0]  # (B, H, N, N)
    assert weights.shape == (3, 4, 10, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 10))
    assert (weights[2, :, :, 2:] == 0).all()  # the third sequence has 2 real tokens


def test_token_type_ids_change_the_result(model):
    ids, mask = random_batch()
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    assert not torch.allclose(model(ids, mask).last_hidden_state,
                              model(ids, mask, types).last_hidden_state)


def test_classifier_gives_logits_and_a_loss_that_trains():
    torch.manual_seed(0)
    config = BertConfig(**{**CONFIG.__dict__, "id2label": {0: "a", 1: "b", 2: "c"}})
    classifier = BertForSequenceClassification(config)
    ids, mask = random_batch()
    labels = torch.tensor([0, 1, 2])
    out = classifier(ids, mask, labels=labels)
    assert out.logits.shape == (3, 3) and out.loss.ndim == 0
    out.loss.backward()
    assert classifier.classifier.weight.grad is not None
    assert classifier.bert.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("make_input, words", [
    (lambda: (torch.tensor([[1, 2, 50]]),), "token id 50 is outside the vocabulary"),
    (lambda: (torch.tensor([[1, -1]]),), "token id -1 is outside the vocabulary"),
    (lambda: (torch.ones(1, 25, dtype=torch.long),), "exceeds max_position_embeddings"),
    (lambda: (torch.ones(2, 3),), "integer tensor"),
    (lambda: (torch.ones(3, dtype=torch.long),), "shape (batch, seq)"),
    (lambda: (torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4)), "attention_mask has shape"),
    (lambda: (torch.ones(1, 3, dtype=torch.long), None, torch.full((1, 3), 2)),
     "token_type_ids must be in [0, 2)"),
])
def test_bad_inputs_get_a_clear_error(model, make_input, words):
    with pytest.raises(MinitfError) as info:
        model(*make_input())
    assert words in str(info.value)


def test_unknown_backend_is_refused_when_the_model_is_built():
    with pytest.raises(MinitfError, match="unknown attention backend 'flash'"):
        BertModel(CONFIG, attn_backend="flash")


def test_the_layers_after_attention_run_on_real_tokens_only(model):
    ids, mask = random_batch()  # 3 × 10 positions, 10 + 7 + 2 = 19 real tokens
    seen = []
    layer = model.encoder.layer[1]
    modules = (layer.attention.self.query, layer.attention.self.key, layer.attention.output,
               layer.intermediate, layer.output)
    hooks = [m.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].shape[:-1])) for m in modules]
    try:
        model(ids, mask)
        model(ids)  # no padding: all 30 positions, (B, N) for Q/K/V, rows after
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [(3, 10), (3, 10), (19,), (19,), (19,)] + [(3, 10)] * 2 + [(30,)] * 3


def test_padding_positions_of_the_output_are_zero(model):
    ids, mask = random_batch()
    hidden = model(ids, mask).last_hidden_state
    assert (hidden[~mask.bool()] == 0).all() and (hidden[mask.bool()] != 0).any()


def test_classification_loss_is_cross_entropy_or_regression():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2])
    expected = -(torch.log_softmax(logits, -1)[[0, 1], [0, 2]])
    torch.testing.assert_close(classification_loss(logits, labels), expected.mean())
    torch.testing.assert_close(classification_loss(logits, labels, "sum"), expected.sum())
    scores = torch.tensor([[0.5], [2.0]])  # num_labels == 1: regression on float targets
    torch.testing.assert_close(classification_loss(scores, torch.tensor([1, 0])),
                               torch.tensor((0.25 + 4.0) / 2))


def test_the_classifier_forward_reads_the_last_layer_at_cls_only():
    torch.manual_seed(0)
    classifier = BertForSequenceClassification(CONFIG).eval()
    ids, mask = random_batch()
    seen = []
    hook = classifier.bert.encoder.layer[-1].intermediate.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    try:
        fast = classifier(ids, mask).logits
        full = classifier(ids, mask, output_attentions=True)  # full layers for the maps
    finally:
        hook.remove()
    assert seen == [3, 19]  # 3 [CLS] rows, then all 19 real tokens
    torch.testing.assert_close(fast, full.logits, atol=1e-6, rtol=1e-5)
    assert full.attentions[-1].shape == (3, 4, 10, 10)
    pooled = classifier.bert.pooler(classifier.bert(ids, mask).last_hidden_state)
    torch.testing.assert_close(fast, classifier.classifier(pooled), atol=1e-6, rtol=1e-5)


def test_a_model_without_pooler_has_no_pooler_output():
    model = BertModel(CONFIG, add_pooling_layer=False)
    assert model.pooler is None and not any(n.startswith("pooler.") for n in model.state_dict())
    assert model(*random_batch()).pooler_output is None


def test_left_padding_is_refused_where_cls_is_read():
    classifier = BertForSequenceClassification(CONFIG).eval()
    ids, mask = random_batch()
    with pytest.raises(MinitfError, match="position 0 .* is padding"):
        classifier(ids, mask.flip(1))
