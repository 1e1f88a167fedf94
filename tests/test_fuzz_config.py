"""Fuzzed config.json: mutated copies of a tiny config and of MiniLM's real one must load into
a BertConfig that builds a model, or be refused with a MinitfError naming the file."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path

import torch
from fuzzing import Case, fuzz, mutate_json

from minitf.config import BertConfig
from minitf.model import BertForSequenceClassification
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


def test_fuzz_config(tmp_path: Path, fuzz_cases: int | None) -> None:
    docs = base_configs()

    def make_case(rng: random.Random) -> Case:
        what, content = mutate_json(rng, rng.choice(docs), KEYS)
        return Case(what, {"config.json": content})

    def check(config: BertConfig, directory: Path) -> None:
        assert isinstance(config, BertConfig)
        with torch.device("meta"):  # every accepted config must build a model (no memory)
            BertForSequenceClassification(config, attn_backend="sdpa")

    fuzz("config", make_case, BertConfig.from_pretrained, check, tmp_path, fuzz_cases)
