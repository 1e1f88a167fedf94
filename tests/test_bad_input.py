"""Bad input never costs memory, time or a traceback: sizes are checked before anything is
allocated (LoRA rank, --pad-to, a file's claimed sizes), an adapter's target names are never a
regular expression, duplicate column names are an error, and each path below ends in one
MinitfError (exit 2, `minitf <command>: error: ...`) with nothing half-written."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows, write_csv
from pretrain_fakes import char_tokenizer

from minitf import cli
from minitf.data.text import read_documents, read_examples
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification
from minitf.model.lora import LoRALinear
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.tasks import classify as inference
from minitf.tasks.peft_format import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_peft_adapter,
    save_peft_adapter,
    setup_lora,
)
from minitf.tasks.peft_targets import compile_targets, matches

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    model = tiny_model_dir(root / "model")  # hidden 32, 2 layers
    net = BertForSequenceClassification.from_pretrained(model)
    setup_lora(net, 4)
    save_peft_adapter(net, root / "adapter")
    return {"root": root, "model": model, "adapter": root / "adapter",
            "train": write_csv(root / "train.csv", toy_rows(32, seed=1))}


@pytest.fixture
def fake_tokenizer(monkeypatch):
    monkeypatch.setattr(inference, "load_tokenizer", FakeTokenizer.from_pretrained)


def cli_error(capsys, *argv: str) -> str:
    """Run the command; it must exit 2 with one `minitf <command>: error:` message."""
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"minitf {argv[0]}: error: ") and "Traceback" not in err, err
    return err


def edited_adapter(files, tmp_path: Path, **changes) -> Path:
    directory = tmp_path / "adapter"
    shutil.copytree(files["adapter"], directory)
    file = directory / CONFIG_FILE
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))
    return directory


def predict_error(files, capsys, adapter: Path) -> str:
    return cli_error(capsys, "predict", "--model", str(files["model"]), "--adapter",
                     str(adapter), "--data", str(files["train"]), "--max-length", "32")


# ---- 5. sizes are checked before anything is allocated -------------------------------------


@pytest.mark.parametrize("r,message", [
    (3_000_000, "r must be a positive integer"), (10**9, "r must be a positive integer"),
    (5000, "r 5000 is larger than .* \\(32 features\\)"),
    (8, "lora_A.weight has shape \\(4, 32\\), but adapter_config.json says r 8")])
def test_adapter_rank_is_checked_against_the_model_and_the_file(files, tmp_path, capsys,
                                                                fake_tokenizer, r, message):
    err = predict_error(files, capsys, edited_adapter(files, tmp_path, r=r))
    assert re.search(message, err), err


def test_lora_rank_is_at_most_the_hidden_size(files, tmp_path, capsys, fake_tokenizer):
    base = ["finetune", "--model", str(files["model"]), "--train", str(files["train"]),
            "--max-length", "32", "--progress", "off"]
    err = cli_error(capsys, *base, "--output", str(tmp_path / "a"), "--lora", "100000000")
    assert "--lora 100000000: must be 0 (off) or a rank up to the hidden size" in err
    err = cli_error(capsys, *base, "--output", str(tmp_path / "b"), "--lora", "64")
    assert "--lora 64: the rank is at most the model's hidden size (32)" in err
    assert not (tmp_path / "b" / "best").exists()


def test_lora_linear_checks_before_allocating():
    base = nn.Linear(16, 8)
    for r in (0, 9, 10**12, 2.5):
        with pytest.raises(MinitfError, match="must be an integer from 1 to .* \\(8\\)"):
            LoRALinear(base, r=r, alpha=8)
    with pytest.raises(MinitfError, match="alpha nan: must be a finite number"):
        LoRALinear(base, r=4, alpha=math.nan)


def test_attention_pad_to_is_checked_before_padding(files, tmp_path, capsys):
    err = cli_error(capsys, "attention", "--model", str(files["model"]), "--text", "good film",
                    "--html", str(tmp_path / "page.html"), "--pad-to", "100000000")
    assert "100000000 tokens, but this model reads at most 64" in err
    assert not list(tmp_path.iterdir())


# ---- 6. adapter target names are never a regular expression --------------------------------


@pytest.mark.parametrize("pattern", ["(.+)+X", "([", "(a|(b))", "(query|value)+", "[qk]uery",
                                     "query{1000000}", "(?=x)"])
def test_unsafe_target_patterns_are_refused(files, tmp_path, capsys, fake_tokenizer, pattern):
    err = predict_error(files, capsys, edited_adapter(files, tmp_path, target_modules=pattern))
    assert "target_modules: the pattern" in err and "is not one minitf reads" in err


NAMES = [f"bert.encoder.layer.{i}.{p}" for i in (0, 1, 10) for p in
         ("attention.self.query", "attention.self.value", "attention.output.dense",
          "output.dense")] + ["bert.pooler.dense", "classifier", "bert.embeddings"]


@pytest.mark.parametrize("pattern", [
    r".*encoder\.layer\.(0|1)\.attention\.self\.(query|value)", r".*(query|value)$",
    r"^bert\.encoder\.layer\.\d+\.output\.dense$", r".*\.layer\.[0-9]+\.attention\..*",
    r"(?:query|value)", r".+dense", r"bert.encoder.layer.1.output.dense", r".*\.(0|10)\..*",
    r"classifier", r"", r".*\.1\..*", r"bert.encoder.layer.1.output.dens."])
def test_safe_target_patterns_select_what_re_would(pattern):
    tokens = compile_targets(pattern, "test")
    assert ([n for n in NAMES if matches(tokens, n)]
            == [n for n in NAMES if re.fullmatch(pattern, n)])


def test_many_wildcards_do_not_backtrack():
    tokens = compile_targets(".*" * 140 + "X", "test")
    assert not matches(tokens, "a" * 500)  # a table of 141 × 501, not 500^140 tries
    assert matches(tokens, "a" * 500 + "X")
    with pytest.raises(MinitfError, match="the pattern is 1000 characters long; at most 300"):
        compile_targets("a" * 1000, "test")


@pytest.mark.parametrize("change,message", [
    ({"lora_alpha": "x"}, "lora_alpha must be a finite number, got x"),
    ({"lora_alpha": None}, "lora_alpha must be a finite number"),
    ({"lora_alpha": math.nan}, "lora_alpha must be a finite number, got nan"),
    ({"lora_dropout": 2}, "lora_dropout must be a number in \\[0, 1\\)"),
    ({"r": True}, "r must be a positive integer"),
    ({"r": "8"}, "r must be a positive integer"),
    ({"target_modules": 5}, "target_modules must be a list of module names"),
    ({"target_modules": None}, "target_modules must be a list of module names"),
    ({"target_modules": ["query", 3]}, "target_modules must be a list"),
    ({"exclude_modules": {"a": 1}}, "exclude_modules must be a list"),
    ({"layers_to_transform": "a"}, "layers_to_transform must be a layer number"),
    ({"layers_to_transform": [0, 1.5]}, "layers_to_transform must be a layer number"),
    ({"modules_to_save": 5}, "modules_to_save must be a list of module names")])
def test_adapter_fields_of_the_wrong_type(files, tmp_path, capsys, fake_tokenizer, change,
                                          message):
    err = predict_error(files, capsys, edited_adapter(files, tmp_path, **change))
    assert re.search(message, err), err


def test_modules_to_save_is_a_literal_name(files, tmp_path):
    """PEFT puts modules_to_save into a regular expression; minitf compares whole name parts."""
    adapter = edited_adapter(files, tmp_path, modules_to_save=["(.+)+X", "classifier"])
    model = BertForSequenceClassification.from_pretrained(files["model"])
    spec, _ = load_peft_adapter(model, adapter)
    assert len(spec.modules) == 4  # query and value of 2 layers


def test_peft_string_target_modules_still_load(files, tmp_path):
    """PEFT's own string form (a pattern for the whole name) loads, with PEFT's logits."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification.from_pretrained(files["model"])
    pattern = r".*encoder\.layer\.(1)\.attention\.self\.(query|value)"
    hf = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4,
                                                 target_modules=pattern))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "lora_B" in name:
                p.normal_()
    hf.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())["target_modules"] \
        == pattern
    model = BertForSequenceClassification.from_pretrained(files["model"])
    spec, _ = load_peft_adapter(model, tmp_path / "adapter")
    assert spec.modules == ("bert.encoder.layer.1.attention.self.query",
                            "bert.encoder.layer.1.attention.self.value")
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4,
             dtype=torch.long), "token_type_ids": torch.zeros(1, 4, dtype=torch.long)}
    with torch.no_grad():
        theirs, ours = hf.eval()(**batch).logits, model.eval()(**batch).logits
    assert (theirs - ours).abs().max() <= 1e-5


# ---- 7. duplicate column names -------------------------------------------------------------


@pytest.mark.parametrize("suffix,header", [(".csv", "text,label,text"),
                                           (".tsv", "text\tlabel\tlabel")])
def test_duplicate_columns_are_an_error(tmp_path, suffix, header):
    sep = "\t" if suffix == ".tsv" else ","
    file = tmp_path / f"data{suffix}"
    file.write_text(header + "\n" + f"good film{sep}pos{sep}bad film\n")
    twice = "'text'" if suffix == ".csv" else "'label'"
    with pytest.raises(MinitfError, match=f"data{suffix}:1: the header names column\\(s\\) "
                       f"{twice} more than once"):
        read_examples(file)


def test_duplicate_columns_stop_finetune(files, tmp_path, capsys, fake_tokenizer):
    dup = tmp_path / "dup.csv"
    dup.write_text("text,label,text\n" + "".join(f"{t},{y},zz\n" for t, y in toy_rows(16)))
    err = cli_error(capsys, "finetune", "--model", str(files["model"]), "--train", str(dup),
                    "--output", str(tmp_path / "out"), "--progress", "off", "--max-length", "32")
    assert "'text' more than once" in err and not (tmp_path / "out" / "best").exists()


def test_jsonl_duplicate_keys_are_bad_rows(tmp_path):
    file = tmp_path / "data.jsonl"
    file.write_text('{"text": "good", "label": "pos"}\n'
                    '{"text": "good", "label": "pos", "text": "bad"}\n')
    with pytest.raises(MinitfError, match="data.jsonl:2: the key 'text' appears more than once"):
        read_examples(file)
    assert len(read_examples(file, skip_bad_rows=True)) == 1


# ---- 8. the right explanation, never a traceback -------------------------------------------


def test_a_huge_csv_field_is_called_too_large(tmp_path):
    file = tmp_path / "big.csv"
    file.write_text('text,label\n"' + "a" * 200_000 + '",pos\ngood,pos\n')
    with pytest.raises(MinitfError, match="big.csv:2: a field longer than 131,072 characters"):
        read_examples(file)


def test_pretraining_one_document_says_why(tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("一二三四五六七八九十" * 20 + "\n", encoding="utf-8")
    tok = char_tokenizer(tmp_path / "tok", chars=list("一二三四五六七八九十"))
    cfg = PretrainConfig(train=[str(corpus)], tokenizer=str(tok), output=str(tmp_path / "out"),
                         layers=1, hidden=32, heads=2, intermediate=64, max_length=16,
                         batch_size=8, max_steps=2, progress="off")
    with pytest.raises(MinitfError, match="1 document\\(s\\), so holding out "
                       "--validation-fraction 0.05 .* leaves none to train on"):
        pretrain(cfg)
    assert not (tmp_path / "out" / "best").exists()


@pytest.mark.parametrize("name,message", [
    ("~nosuchuser/x", "cannot expand '~' \\(no such user\\?\\)"),
    ("x" * 5000, "cannot look it up \\(File name too long\\)"),
    ("a/" + "x" * 5000, "cannot look it up \\(File name too long\\)")])
def test_odd_model_names(files, capsys, name, message):
    err = cli_error(capsys, "predict", "--model", name, "--data", str(files["train"]))
    assert re.search(message, err) and len(err) < 600, err


def test_id2label_must_number_the_labels(files, tmp_path, capsys, fake_tokenizer):
    model = tmp_path / "model"
    shutil.copytree(files["model"], model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "id2label": {"0": "a", "7": "b"}}))
    err = cli_error(capsys, "predict", "--model", str(model), "--data", str(files["train"]))
    assert "id2label keys must be the label ids 0 to 1, got [0, 7]" in err


def test_nan_weights_are_refused_naming_the_tensor(files, tmp_path, capsys, fake_tokenizer):
    from safetensors.torch import load_file, save_file
    model = tmp_path / "model"
    shutil.copytree(files["model"], model)
    tensors = load_file(model / "model.safetensors")
    tensors["bert.encoder.layer.1.output.dense.weight"][0, 0] = math.nan
    save_file(tensors, model / "model.safetensors")
    err = cli_error(capsys, "predict", "--model", str(model), "--data", str(files["train"]))
    assert "NaN or infinite values in 1 tensor(s): bert.encoder.layer.1.output.dense.weight" \
        in err


def test_nan_adapter_weights_are_refused_naming_the_tensor(files, tmp_path, capsys,
                                                           fake_tokenizer):
    from safetensors.torch import load_file, save_file
    adapter = edited_adapter(files, tmp_path)
    tensors = load_file(adapter / WEIGHTS_FILE)
    name = "base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight"
    tensors[name][1, 1] = math.inf
    save_file(tensors, adapter / WEIGHTS_FILE)
    err = predict_error(files, capsys, adapter)
    assert f"tensor {name} holds NaN or infinite values" in err


def test_max_grad_norm_nan_is_refused(files, tmp_path, capsys):
    for value in ("nan", "inf", "-1"):
        err = cli_error(capsys, "finetune", "--model", str(files["model"]), "--train",
                        str(files["train"]), "--output", str(tmp_path / "o"),
                        "--max-grad-norm", value)
        assert f"--max-grad-norm {float(value)}: must be a positive number, or 0" in err
    assert not (tmp_path / "o").exists()


def convert(directory: Path, capsys) -> str:
    """weights/convert_bin.py DIR (in this process): it must exit 2; its message."""
    spec = importlib.util.spec_from_file_location("convert_bin", REPO / "weights" /
                                                  "convert_bin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(directory)]) == 2
    return capsys.readouterr().err


def test_convert_bin_refuses_non_tensors_and_paths(tmp_path, capsys):
    torch.save({"a": torch.zeros(2), "b": 3}, tmp_path / "pytorch_model.bin")
    assert "not a state dict of tensors ('b' is a int)" in convert(tmp_path, capsys)
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "../x.bin"}}))
    assert "lists shard '../x.bin', not a file name" in convert(tmp_path, capsys)
    (tmp_path / "pytorch_model.bin.index.json").write_text("[]")
    assert "not a valid index" in convert(tmp_path, capsys)
    assert not (tmp_path / "model.safetensors").exists()


def blocked(tmp_path: Path) -> Path:
    """A destination that cannot be created: its 'folder' is a file (a root-proof stand-in
    for a read-only folder)."""
    (tmp_path / "file").write_text("mine\n")
    return tmp_path / "file" / "out"


def test_writers_into_an_impossible_place(files, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("good film\nbad film\n" * 50)
    err = cli_error(capsys, "tokenizer", "train", "--input", str(corpus), "--output",
                    str(blocked(tmp_path)), "--vocab-size", "40")
    assert str(tmp_path / "file") in err
    for target in (blocked(tmp_path), tmp_path):  # into a non-folder; onto a folder
        err = cli_error(capsys, "attention", "--model", str(files["model"]), "--text", "good",
                        "--html", str(target))
        assert str(target) in err
    err = cli_error(capsys, "export", "--model", str(files["model"]), "--output", str(tmp_path))
    assert f"--output {tmp_path} is a directory" in err
    err = cli_error(capsys, "export", "--model", str(files["model"]), "--output",
                    str(blocked(tmp_path)))
    assert str(tmp_path / "file") in err
    assert (tmp_path / "file").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_writers_into_a_read_only_folder(files, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        err = cli_error(capsys, "attention", "--model", str(files["model"]), "--text", "good",
                        "--html", str(folder / "page.html"))
        assert "cannot write" in err and not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


def test_read_documents_duplicate_columns(tmp_path):
    file = tmp_path / "docs.csv"
    file.write_text("text,text\na,b\n")
    with pytest.raises(MinitfError, match="'text' more than once"):
        read_documents(file)


@pytest.mark.parametrize("dpi", ["2", "100000000"])
def test_attention_dpi_is_bounded(files, tmp_path, capsys, dpi):
    err = cli_error(capsys, "attention", "--model", str(files["model"]), "--text", "good",
                    "-o", str(tmp_path / "a.png"), "--dpi", dpi)
    assert f"--dpi {dpi}: must be from 10 to 1200" in err and not list(tmp_path.iterdir())


def test_pretrain_shapes_are_bounded_before_building(tmp_path):
    tok = char_tokenizer(tmp_path / "tok")
    corpus = tmp_path / "c.txt"
    corpus.write_text("一二三\n" * 40, encoding="utf-8")
    settings = dict(train=[str(corpus)], tokenizer=str(tok), output=str(tmp_path / "out"),
                    layers=1, hidden=65536, heads=2, intermediate=64, max_length=16,
                    batch_size=8, max_steps=1, progress="off")
    with pytest.raises(MinitfError, match="billion parameters need about .* GiB to train"):
        pretrain(PretrainConfig(**settings))
    with pytest.raises(MinitfError, match="--layers 65536: must be from 1 to 128"):
        pretrain(PretrainConfig(**{**settings, "hidden": 32, "layers": 65536}))
    assert not (tmp_path / "out" / "best").exists()


def test_tokenizer_vocab_size_is_bounded(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("good film\n" * 20)
    err = cli_error(capsys, "tokenizer", "train", "--input", str(corpus), "--output",
                    str(tmp_path / "tok"), "--vocab-size", "9223372036854775808")
    assert "--vocab-size 9223372036854775808 is too large: at most 1,048,576" in err


def test_too_many_classes_are_refused(files, tmp_path, capsys, fake_tokenizer):
    data = tmp_path / "ids.csv"
    data.write_text("text,label\n" + "".join(f"good film,{i}\n" for i in range(10_001)))
    err = cli_error(capsys, "finetune", "--model", str(files["model"]), "--train", str(data),
                    "--output", str(tmp_path / "out"), "--progress", "off",
                    "--validation-fraction", "0")
    assert "10,001 distinct labels, more than 10,000 classes" in err
