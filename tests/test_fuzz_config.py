"""Fuzzed config.json: mutated copies of a tiny config and of MiniLM's real one must load into
a BertConfig that builds a model, or be refused with a MinitfError naming the file."""

from __future__ import annotations

import json
import random
from dataclasses import fields, replace
from pathlib import Path

from fuzzing import Case, fuzz, mutate_json

from minitf.model.bert import BertForSequenceClassification
from minitf.model.config import BertConfig
from minitf.model.weights import resolve_dtype
from minitf.paths import packaged_model_dir

TINY = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=16,
                  id2label={0: "neg", 1: "pos"})


# Settings BertConfig reads or refuses, tried with hostile values where a config lacks them.
KEYS = (*(f.name for f in fields(BertConfig)), "model_type", "position_embedding_type",
        "is_decoder", "add_cross_attention", "label2id", "dtype", "torch_dtype")


def base_configs() -> list[dict]:
    """The tiny config as minitf writes it, and the real MiniLM config.json when installed."""
    docs = [{"architectures": ["BertForSequenceClassification"], **TINY.to_dict()}]
    real = packaged_model_dir()
    if real is not None:
        docs.append(json.loads((real / "config.json").read_text()))
    return docs


def shrunk(config: BertConfig) -> BertConfig:
    """The same settings with sizes cut down to a few thousand parameters, so that every
    accepted config can be built for real in milliseconds (sizes are bounded by validate)."""
    heads = config.num_attention_heads
    hidden = heads * max(1, min(config.head_dim, 64 // heads))
    return replace(config, vocab_size=max(min(config.vocab_size, 64), config.pad_token_id + 1),
                   hidden_size=hidden, num_hidden_layers=min(config.num_hidden_layers, 2),
                   intermediate_size=min(config.intermediate_size, 64),
                   max_position_embeddings=min(config.max_position_embeddings, 64),
                   type_vocab_size=min(config.type_vocab_size, 4))


def test_fuzz_config(tmp_path: Path, fuzz_cases: int | None) -> None:
    docs = base_configs()

    def make_case(rng: random.Random) -> Case:
        what, content = mutate_json(rng, rng.choice(docs), KEYS)
        return Case(what, {"config.json": content})

    def check(config: BertConfig, directory: Path) -> None:
        assert isinstance(config, BertConfig)
        resolve_dtype(None, config, {}, directory)  # the dtype is one minitf loads, or refused
        if config.num_attention_heads <= 256:  # more heads cannot be shrunk (none drawn)
            BertForSequenceClassification(shrunk(config), attn_backend="sdpa")  # it builds

    fuzz("config", make_case, BertConfig.from_pretrained, check, tmp_path, fuzz_cases)
