"""Fuzzed command-line numbers: every numeric flag of finetune, pretrain, predict, attention
and tokenizer train, given a hostile value (nan, inf, -1, 0, 10^8, 2^63, ...), must run or be
refused (exit 2, `minitf <command>: error: ...` or argparse's usage error), never a traceback,
a hang, or an allocation that follows the number: the cases run in a child process whose
address space is capped (RLIMIT_AS), on a tiny model and a few rows, one step at most."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows, write_csv
from fuzzing import Case, fuzz, run_in_child
from pretrain_fakes import char_tokenizer, tiny_corpus

from minitf import cli
from minitf.errors import MinitfError

QUICK_CLI_CASES = 12  # each runs a command for real: a few seconds in all
VALUES = ("nan", "inf", "-inf", "-1", "0", "1", "2", "3", "0.5", "-0", "1e-300", "1e9",
          "1024", "65536", "100000000", "9223372036854775808", "1e999", "", "x")
FLAGS = {
    "finetune": ("--lora", "--lora-alpha", "--lora-dropout", "--max-length", "--batch-size",
                 "--epochs", "--lr", "--weight-decay", "--warmup-ratio", "--max-grad-norm",
                 "--validation-fraction", "--test-fraction", "--max-train-samples", "--seed",
                 "--patience", "--save-every", "--stop-after-steps", "--dist-timeout"),
    "pretrain": ("--layers", "--hidden", "--heads", "--intermediate", "--max-length",
                 "--mlm-probability", "--init-std", "--max-steps", "--dropout", "--batch-size",
                 "--max-eval-blocks", "--eval-every", "--validation-fraction", "--lr"),
    "predict": ("--max-length", "--batch-size"),
    "attention": ("--pad-to", "--max-length", "--dpi", "--layer", "--head"),
    "tokenizer": ("--vocab-size", "--character-coverage"),
}


def commands(root: Path) -> dict[str, list[str]]:
    """Each command with settings that make it quick (the fuzzed flag comes last and wins)."""
    model, train = tiny_model_dir(root / "model"), write_csv(root / "t.csv", toy_rows(24))
    corpus, tok = tiny_corpus(root / "corpus.txt", lines=40), char_tokenizer(root / "tok")
    short = ["--progress", "off", "--stop-after-steps", "1"]
    classifier = tiny_model_dir(root / "classifier")  # with label names, for predict
    config = json.loads((classifier / "config.json").read_text())
    config["id2label"] = {"0": "neg", "1": "pos"}
    (classifier / "config.json").write_text(json.dumps(config))
    return {
        "finetune": ["finetune", "--model", str(model), "--train", str(train), "--epochs", "1",
                     "--max-length", "16", "--batch-size", "8", *short],
        "pretrain": ["pretrain", "--train", str(corpus), "--tokenizer", str(tok), "--layers",
                     "1", "--hidden", "16", "--heads", "2", "--intermediate", "32",
                     "--max-length", "16", "--batch-size", "4", "--max-steps", "1", *short],
        "predict": ["predict", "--model", str(classifier), "--data", str(train), "--max-length",
                    "16"],
        "attention": ["attention", "--model", str(model), "--text", "good film", "--dpi", "40"],
        "tokenizer": ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "40"],
    }


def fuzz_flags(tmp_path: Path, cases: int | None) -> None:
    """The fuzz loop (run in a child process by the test below)."""
    from minitf.tasks import classify
    classify.load_tokenizer = FakeTokenizer.from_pretrained  # the tiny model's vocabulary
    base = commands(tmp_path)

    def make_case(rng: random.Random) -> Case:
        command = rng.choice(sorted(FLAGS))
        flag, value = rng.choice(FLAGS[command]), rng.choice(VALUES)
        extra = ["--html"] if command == "attention" and flag == "--pad-to" else []
        return Case(f"{command} {flag} {value}", {}, {"argv": (command, flag, value, *extra)})

    def run(directory: Path, argv: tuple[str, ...]) -> int:
        command, flag, value, *extra = argv
        out = ["--output", str(directory / "out")] if command != "predict" else []
        if extra:  # attention --html FILE
            out = ["--html", str(directory / "page.html")]
        args = [*base[command], *out, f"{flag}={value}"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(args)
            except SystemExit as exc:  # argparse: not a number
                code = exc.code
        text = err.getvalue()
        if code == 2 and ("error:" in text) and "Traceback" not in text:
            raise MinitfError(f"{directory}: refused: {text.strip()[-200:]}")
        stopped = code == 130 and "--stop-after-steps" in base[command]  # as asked: resumable
        assert code == 0 or stopped, f"exit {code}: {text[-500:]}"
        return code

    fuzz("cli", make_case, run, lambda result, directory: None, tmp_path,
         QUICK_CLI_CASES if cases is None else cases, time_limit=60)


def test_fuzz_cli_numbers(tmp_path: Path, fuzz_cases: int | None) -> None:
    run_in_child(__file__, "fuzz_flags", tmp_path, fuzz_cases)
