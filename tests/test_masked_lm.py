"""BertForMaskedLM against transformers' on a small random config: both ways, tied weights."""

import json

import pytest
import torch

from minitf import BertForMaskedLM, BertForSequenceClassification, BertModel, MinitfError
from minitf.model.config import BertConfig

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

HF_CONFIG = dict(vocab_size=70, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=32)
IDS = torch.tensor([[2, 7, 9, 11, 3, 0, 0], [2, 5, 8, 13, 21, 34, 3]])
MASK = (IDS != 0).long()
LABELS = torch.full_like(IDS, -100)
LABELS[0, 2], LABELS[1, 1], LABELS[1, 5] = 40, 6, 69


@pytest.fixture(scope="module")
def hf_mlm_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("hf_mlm")
    model = transformers.BertForMaskedLM(transformers.BertConfig(**HF_CONFIG))
    with torch.no_grad():  # non-zero biases, so that a dropped bias would show
        model.cls.predictions.bias.normal_()
    model.save_pretrained(directory)
    return directory


def hf_forward(directory, labels=None):
    model = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    assert type(model).__name__ == "BertForMaskedLM"
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK, labels=labels)


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_a_transformers_checkpoint_loads_with_the_same_logits_and_loss(hf_mlm_dir):
    ours = BertForMaskedLM.from_pretrained(hf_mlm_dir, attn_backend="reference")
    theirs = hf_forward(hf_mlm_dir, LABELS)
    with torch.no_grad():
        full = ours(IDS, MASK).logits                                  # (B, N, V)
        masked = ours(IDS, MASK, labels=LABELS)
    real = MASK.bool()
    assert full.shape == (2, 7, 70)
    assert max_diff(full[real], theirs.logits[real]) <= 1e-5
    assert masked.logits.shape == (3, 70)
    torch.testing.assert_close(masked.logits, full[LABELS != -100], atol=1e-6, rtol=0)
    assert abs(masked.loss.item() - theirs.loss.item()) <= 1e-5


def test_what_minitf_saves_transformers_loads(tmp_path):
    torch.manual_seed(3)
    ours = BertForMaskedLM(BertConfig(**HF_CONFIG)).eval()
    with torch.no_grad():
        ours.cls.predictions.bias.normal_()
    ours.save_pretrained(tmp_path / "mlm")
    config = json.loads((tmp_path / "mlm" / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["dtype"] == "float32"
    theirs = hf_forward(tmp_path / "mlm", LABELS)
    with torch.no_grad():
        mine_full = ours(IDS, MASK).logits
        mine = ours(IDS, MASK, labels=LABELS)
    real = MASK.bool()
    assert max_diff(theirs.logits[real], mine_full[real]) <= 1e-5
    assert abs(mine.loss.item() - theirs.loss.item()) <= 1e-5
    # And back: minitf reloads its own directory to the same tensors.
    again = BertForMaskedLM.from_pretrained(tmp_path / "mlm")
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_the_decoder_stays_tied_after_loading_and_after_a_step(hf_mlm_dir):
    model = BertForMaskedLM.from_pretrained(hf_mlm_dir)
    decoder = model.cls.predictions.decoder.weight
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert decoder is embeddings
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    model(IDS, MASK, labels=LABELS).loss.backward()
    optimizer.step()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert not torch.equal(embeddings, BertForMaskedLM.from_pretrained(hf_mlm_dir)
                           .bert.embeddings.word_embeddings.weight)


def test_no_labelled_position_gives_a_zero_loss_that_backpropagates(hf_mlm_dir):
    model = BertForMaskedLM.from_pretrained(hf_mlm_dir)
    out = model(IDS, MASK, labels=torch.full_like(IDS, -100))
    assert out.logits.shape == (0, 70) and out.loss.item() == 0.0
    out.loss.backward()


def test_labels_of_another_shape_are_refused(hf_mlm_dir):
    model = BertForMaskedLM.from_pretrained(hf_mlm_dir)
    with pytest.raises(MinitfError, match="labels has shape"):
        model(IDS, MASK, labels=LABELS[:, :3])


def test_an_encoder_checkpoint_needs_allow_missing_head(tmp_path, hf_mlm_dir):
    with pytest.warns(UserWarning, match="no pooler weights"):
        encoder = BertModel.from_pretrained(hf_mlm_dir, attn_backend="sdpa")
    encoder.save_pretrained(tmp_path / "b")
    with pytest.raises(MinitfError, match="allow_missing_head=True"):
        BertForMaskedLM.from_pretrained(tmp_path / "b")
    model = BertForMaskedLM.from_pretrained(tmp_path / "b", allow_missing_head=True)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification])
def test_a_masked_lm_checkpoint_loads_as_an_encoder_with_a_fresh_pooler(hf_mlm_dir, cls):
    kwargs = {"allow_missing_head": True} if cls is BertForSequenceClassification else {}
    with pytest.warns(UserWarning, match="no pooler weights.*newly initialised"):
        model = cls.from_pretrained(hf_mlm_dir, **kwargs)
    bert = model if cls is BertModel else model.bert
    assert bert.pooler is not None and bert.pooler.dense.weight.std() > 0
    theirs = transformers.BertModel.from_pretrained(hf_mlm_dir).eval()
    with torch.no_grad():
        ours = bert(IDS, MASK).last_hidden_state
        ref = theirs(input_ids=IDS, attention_mask=MASK).last_hidden_state
    real = MASK.bool()
    assert max_diff(ours[real], ref[real]) <= 1e-5


def test_older_head_names_load(tmp_path, hf_mlm_dir):
    """transformers 4 and the original BERT checkpoints also store the decoder (tied) and call
    the bias cls.predictions.decoder.bias."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(hf_mlm_dir / "model.safetensors")
    tensors["cls.predictions.decoder.bias"] = tensors.pop("cls.predictions.bias")
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text((hf_mlm_dir / "config.json").read_text())
    save_file({k: v.clone() for k, v in tensors.items()}, tmp_path / "old" / "model.safetensors")
    a = BertForMaskedLM.from_pretrained(tmp_path / "old").state_dict()
    b = BertForMaskedLM.from_pretrained(hf_mlm_dir).state_dict()
    for name in b:
        assert torch.equal(a[name], b[name]), name
