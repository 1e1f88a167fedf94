"""Your files are safe: minitf writes only into folders that are its own (minitf-run.json),
never through a symlink, one run per folder (a lock naming the holder), files with the
user's umask; single-file writers need --overwrite; SIGTERM stops a run like Ctrl-C (last/
saved, exit 143) and --resume finishes it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows, write_csv
from pretrain_fakes import char_tokenizer, tiny_corpus

from minitf import cli
from minitf.errors import MinitfError
from minitf.recipes import finetune as FT
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.run_folder import MARKER, RunFolder, write_marker
from minitf.tasks import classify as inference

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    return {"model": tiny_model_dir(root / "model"),
            "train": write_csv(root / "train.csv", toy_rows(64, seed=1)),
            "tok": char_tokenizer(root / "tok"), "corpus": tiny_corpus(root / "corpus.txt")}


@pytest.fixture
def fake_tokenizer(monkeypatch):
    monkeypatch.setattr(inference, "load_tokenizer", FakeTokenizer.from_pretrained)


def finetune_cli(files, output, *extra):
    return cli.main(["finetune", "--model", str(files["model"]), "--train",
                     str(files["train"]), "--output", str(output), "--epochs", "1",
                     "--max-length", "32", "--batch-size", "16", "--lr", "2e-3",
                     "--progress", "off", *extra])


def pretrain_cfg(files, output, **overrides):
    settings = dict(train=[str(files["corpus"])], tokenizer=str(files["tok"]),
                    output=str(output), layers=1, hidden=32, heads=2, intermediate=64,
                    max_length=16, batch_size=8, max_steps=4, validation_fraction=0.1,
                    eval_every=2, progress="off", lr=1e-3)
    return PretrainConfig(**{**settings, **overrides})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def foreign_project(root: Path) -> Path:
    """The issue's reproduction: a user's folder with a precious file under best/."""
    (root / "best" / "data").mkdir(parents=True)
    (root / "best" / "data" / "precious.csv").write_text("precious\n")
    (root / "metrics.jsonl").write_text("mine\n")
    return root


def test_finetune_refuses_a_foreign_folder_and_touches_nothing(files, tmp_path, capsys,
                                                               fake_tokenizer):
    proj = foreign_project(tmp_path / "proj")
    before = snapshot(proj)
    for flags in ((), ("--overwrite",), ("--resume",)):
        assert finetune_cli(files, proj, *flags) == 2
        err = capsys.readouterr().err
        assert f"{proj} is not empty and was not made by minitf" in err, flags
        assert "best, metrics.jsonl" in err
        assert snapshot(proj) == before


def test_pretrain_refuses_a_foreign_folder_and_touches_nothing(files, tmp_path):
    proj = foreign_project(tmp_path / "proj")
    (proj / "config.json").write_text("{}")
    before = snapshot(proj)
    for flags in ({}, {"overwrite": True}):
        with pytest.raises(MinitfError, match="not empty and was not made by minitf"):
            pretrain(pretrain_cfg(files, proj, **flags))
        assert snapshot(proj) == before


def test_a_marked_folder_takes_overwrite_and_resume_and_keeps_the_users_files(
        files, tmp_path, capsys, fake_tokenizer):
    out = tmp_path / "out"
    assert finetune_cli(files, out) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "finetune" and marker["version"] and marker["time"]
    (out / "notes.txt").write_text("my notes\n")
    (out / "best" / "data").mkdir()
    (out / "best" / "data" / "precious.csv").write_text("precious\n")
    capsys.readouterr()
    assert finetune_cli(files, out) == 2
    assert "already holds a minitf run (last); pass --resume" in capsys.readouterr().err
    assert finetune_cli(files, out, "--overwrite") == 0  # best/ and last/ replaced
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert (out / "best" / "data" / "precious.csv").read_text() == "precious\n"
    assert not [p for p in out.rglob(".*") if p.name != ".minitf-run.lock"]  # no leftovers
    # an interrupted run in the same folder continues with --resume
    assert finetune_cli(files, out, "--overwrite", "--stop-after-steps", "2") == 130
    assert finetune_cli(files, out, "--resume") == 0
    predict = ["predict", "--model", str(out / "best"), "--data", str(files["train"]),
               "--max-length", "32", "--output", str(out / "notes.txt")]
    assert cli.main(predict) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert cli.main([*predict, "--overwrite"]) == 0
    assert len((out / "notes.txt").read_text().splitlines()) == 64


def test_export_and_the_explorer_page_refuse_to_replace_a_file_without_overwrite(
        files, tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"mine")
    command = ["export", "--model", str(files["model"]), "--output", str(out)]
    assert cli.main(command) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert cli.main([*command, "--overwrite"]) == 0
    assert out.read_bytes() != b"mine"
    page = tmp_path / "page.html"
    page.write_text("mine")
    assert cli.main(["attention", "--model", str(files["model"]), "--text", "a good film",
                     "--html", str(page)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert page.read_text() == "mine"


def test_symlinks_are_not_followed(files, tmp_path, fake_tokenizer, capsys):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("do not touch\n")
    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, "finetune")
    (out / "metrics.jsonl").symlink_to(elsewhere)
    assert finetune_cli(files, out) == 2
    assert "metrics.jsonl is a symlink" in capsys.readouterr().err
    assert elsewhere.read_text() == "do not touch\n"
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert finetune_cli(files, tmp_path / "link") == 2
    assert "is a symlink" in capsys.readouterr().err and not any(real.iterdir())


def test_a_second_run_in_the_same_folder_is_refused_with_the_first_ones_pid(files, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from minitf.run_folder import RunFolder; "
         f"RunFolder({str(out)!r}, 'pretrain').open(); print('locked', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MinitfError, match=rf"in use by another minitf run \(PID "
                                              rf"{holder.pid}, pretrain, started "):
            pretrain(pretrain_cfg(files, out))
    finally:
        holder.communicate("")  # the holder exits: its lock goes with it
    assert not pretrain(pretrain_cfg(files, out)).interrupted


def test_sigterm_saves_last_and_exits_143_then_resume_finishes(files, tmp_path, monkeypatch,
                                                               fake_tokenizer):
    calls = {"n": 0}
    real = FT.classifier_logits

    def terminated(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(FT, "classifier_logits", terminated)
    before = signal.getsignal(signal.SIGTERM)  # another library's may be installed already
    out = tmp_path / "out"
    assert finetune_cli(files, out) == 143
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    assert tuple(state["position"]) == (0, 3)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    monkeypatch.setattr(FT, "classifier_logits", real)
    assert finetune_cli(files, out, "--resume") == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1]


def test_outputs_are_written_with_the_users_umask(files, tmp_path, fake_tokenizer):
    previous = os.umask(0o022)
    try:
        assert finetune_cli(files, tmp_path / "ft") == 0
        pretrain(pretrain_cfg(files, tmp_path / "pt", max_steps=2))
    finally:
        os.umask(previous)
    for path in (tmp_path / "ft" / "best" / "model.safetensors", tmp_path / "ft" / "metrics.jsonl",
                 tmp_path / "ft" / "last" / "training_state.pt", tmp_path / "ft" / MARKER,
                 tmp_path / "pt" / "model.safetensors", tmp_path / "pt" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    for path in (tmp_path / "ft" / "best", tmp_path / "ft" / "last"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with RunFolder(tmp_path / "out", "finetune") as folder:
        folder.open()
        with pytest.raises(MinitfError, match=rf"PID {os.getpid()}, finetune"):
            RunFolder(tmp_path / "out", "finetune").open()
    with RunFolder(tmp_path / "out", "finetune") as again:
        assert again.open() == tmp_path / "out"
