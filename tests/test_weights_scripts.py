"""The scripts in weights/: convert a pickle checkpoint, install a directory by name."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minitf import BertConfig, BertModel

ROOT = Path(__file__).resolve().parent.parent
CONFIG = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16)


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def test_convert_bin_writes_safetensors_that_load(tmp_path):
    torch.manual_seed(0)
    model = BertModel(CONFIG)
    CONFIG.save(tmp_path)
    torch.save({"bert." + k: v for k, v in model.state_dict().items()},
               tmp_path / "pytorch_model.bin")
    result = run(ROOT / "weights" / "convert_bin.py", tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = BertModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.pooler.dense.weight, model.pooler.dense.weight)


def test_install_refuses_an_incomplete_directory(tmp_path):
    CONFIG.save(tmp_path)
    result = run(ROOT / "weights" / "install.py", tmp_path, "--name", "pytest-incomplete")
    assert result.returncode == 2 and "missing vocab.txt" in result.stderr
    assert not (ROOT / "weights" / "pytest-incomplete").exists()


def test_install_links_a_directory_that_then_loads_by_name(tmp_path):
    CONFIG.save(tmp_path)
    BertModel(CONFIG).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    target = ROOT / "weights" / "pytest-linked"
    try:
        result = run(ROOT / "weights" / "install.py", tmp_path, "--name", "pytest-linked", "--link")
        assert result.returncode == 0, result.stderr
        assert BertModel.from_pretrained("pytest-linked").config == CONFIG
    finally:
        if target.is_symlink():
            target.unlink()


def test_a_missing_model_name_says_how_to_install(monkeypatch):
    from minitf import MinitfError
    from minitf.paths import resolve_model_dir

    with pytest.raises(MinitfError, match="weights/README.md"):
        resolve_model_dir("no-such-model")
