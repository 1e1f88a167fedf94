"""The systems of `minitf demo --lang zh`'s table, one row each: what `make demo-zh` prints and
what benchmarks/pretrain.py's `curve` repeats over seeds (the same functions: one
implementation per computation).

    tfidf               TF-IDF char 1-3-grams + logistic regression (minitf/tasks/tfidf.py)
    tfidf+self-train    the same, one round of self-training on the other training texts
    scratch             the pre-trained shape from its initialisation, classifier head
    head                the pre-trained model, fine-tuned with a fresh pooler + classifier head
    prompt              the pre-trained model through its masked-LM head (minitf/tasks/prompt.py)
    head+self-train     `head` as the teacher; its probabilities on the other training texts
    prompt+self-train   (labels unused) as soft targets; a student from the pre-trained model
                        on both (minitf/recipes/self_train.py's pieces) for `student_epochs`
    prompt+tfidf-teacher  the same student, taught by `tfidf` instead: `minitf finetune
                        --prompt ... --unlabelled FILE --teacher tfidf --epochs student_epochs`
    scratch+tfidf-teacher the same with `scratch` as the student: what pre-training adds to it
    zero-shot           the prompt on the pre-trained model, no training (labels: 0)
    minilm              MiniLM (English vocabulary), top layer fine-tuned

A row: {"system", "name", "labels", "test_accuracy", "macro_f1", "seconds" (its wall time, a
self-training row's includes its teacher), "seed", "pretraining_steps", "pretraining_minutes"
(0 steps: not pre-trained; None: no BERT in it), "epochs", "student_epochs" (a student's, for
the rows that train one), "directory" (the fine-tuned model, None for the others)}.
"""

from __future__ import annotations

import csv
import io
import random
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.io import write_text

NAMES = {
    "tfidf": "TF-IDF char 1-3-grams + logistic regression",
    "tfidf+self-train": "TF-IDF + self-training",
    "scratch": "same shape, no pre-training (head)",
    "head": "pre-trained here, classifier head",
    "prompt": "pre-trained here, prompt",
    "head+self-train": "pre-trained here, head + self-training",
    "prompt+self-train": "pre-trained here, prompt + self-training",
    "prompt+tfidf-teacher": "pre-trained here, prompt, taught by TF-IDF",
    "scratch+tfidf-teacher": "same shape, no pre-training (head), taught by TF-IDF",
    "zero-shot": "pre-trained here, prompt, zero-shot (no labels)",
    "minilm": "MiniLM (English vocabulary, top layer)",
}
METHODS = ("head", "prompt", "head+self-train", "prompt+self-train", "prompt+tfidf-teacher")


@dataclass
class Setup:
    """What every row reads: the split, the two BERT directories and the recipe settings."""

    files: Any                      # minitf.data.corpora.ZhFiles
    out: Path                       # the demo's folder: fine-tuned models go to OUT/ft-...
    pretrained: Path                # the pre-trained masked-LM
    initial: Path                   # the same shape from its initialisation
    pretraining: dict[str, Any]     # {"steps", "minutes"} of `pretrained`
    cfg: Any                        # DemoZhConfig: lr, max_length, template, verbalizer, ...
    runs: dict[tuple, Any] = field(default_factory=dict)  # teachers already trained
    train: D.Examples | None = None

    def training_examples(self) -> D.Examples:
        if self.train is None:
            self.train = D.read_examples(self.files.train, "text", None, "label")
        return self.train


def pick_rows(train: D.Examples, count: int, seed: int | None) -> D.Examples:
    """The labelled rows: count 0 or ≥ the rows: all of them; seed None: the first `count`
    rows (the demo's few-label sets); a seed: the first `count` of that seeded order (the
    curve's seeds: different subsets)."""
    if not count or count >= len(train):
        return train
    if seed is None:
        return train.subset(range(count))
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    return train.subset(order[:count])


def label_subset(setup: Setup, count: int, seed: int | None) -> tuple[Path, D.Examples,
                                                                         D.Examples]:
    """(CSV of the labelled rows (pick_rows), those rows, the other training texts
    unlabelled)."""
    train = setup.training_examples()
    rows = pick_rows(train, count, seed)
    path = Path(setup.files.train)
    if len(rows) < len(train):
        path = setup.out / "data" / f"train-{count}-{'first' if seed is None else seed}.csv"
        if not path.is_file():
            write_text(path, csv_text(rows))
    taken = set(rows.texts)
    others = [t for t in train.texts if t not in taken]
    return path, rows, D.Examples(others, [None] * len(others))


def csv_text(rows: D.Examples, columns: tuple[str, ...] = ("text", "label")) -> str:
    """The rows as CSV: text,label, or with columns=("text",) the texts alone (unlabelled)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(rows.texts, rows.labels, strict=True) if len(columns) > 1
                     else ([text] for text in rows.texts))
    return out.getvalue()


def run_row(setup: Setup, system: str, count: int, epochs: int, seed: int | None = None
            ) -> dict[str, Any] | None:
    """One cell of the table: `system` trained on `count` labels (0: all) with `epochs`;
    None where it does not apply (self-training with no unlabelled text left)."""
    if system not in NAMES:
        raise MinitfError(f"no system {system!r} in the Chinese demo; choose from "
                          f"{', '.join(NAMES)}")
    started = time.perf_counter()
    path, rows, unlabelled = label_subset(setup, count, seed)
    if system.endswith(("+self-train", "+tfidf-teacher")) and not len(unlabelled):
        return None
    if system.startswith("tfidf"):
        metrics = tfidf_metrics(setup, rows, unlabelled if "self-train" in system else None)
        bert = None
    elif system == "zero-shot":
        metrics, bert = zero_shot(setup), setup.pretraining
    elif system.endswith("+tfidf-teacher"):
        metrics, bert = taught_by_tfidf(setup, system, path, unlabelled, count, seed)
    else:
        metrics, bert = fine_tuned(setup, system, path, unlabelled, count, epochs, seed)
    return {"system": system, "name": NAMES[system],
            "labels": 0 if system == "zero-shot" else len(rows),
            "test_accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "seconds": time.perf_counter() - started + metrics.get("teacher_seconds", 0.0),
            "seed": seed,
            "epochs": None if system.startswith(("tfidf", "zero")) else epochs,
            "student_epochs": (setup.cfg.student_epochs if "+" in system
                               and not system.startswith("tfidf") else None),
            "pretraining_steps": None if bert is None else bert["steps"],
            "pretraining_minutes": None if bert is None else bert["minutes"],
            "directory": metrics.get("directory")}


def tfidf_metrics(setup: Setup, rows: D.Examples, unlabelled: D.Examples | None
                  ) -> dict[str, float]:
    from minitf.tasks import tfidf

    labels = D.label_names(rows)
    rows, targets = D.label_ids(rows, labels)
    test, truth = D.label_ids(D.read_examples(setup.files.test, "text", None, "label"), labels)
    model = tfidf.self_trained(rows.texts, targets, unlabelled.texts if unlabelled else [],
                               len(labels))
    return accuracy_and_f1(model.predict(test.texts).tolist(), truth, len(labels))


def accuracy_and_f1(predicted: list[int], truth: list[int], num_labels: int) -> dict[str, float]:
    from minitf.tasks.metrics import classification_metrics

    metrics = classification_metrics(truth, predicted, [str(i) for i in range(num_labels)])
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def finetune_config(setup: Setup, system: str, path: Path, count: int, epochs: int,
                    seed: int | None) -> Any:
    from minitf.recipes.finetune import FinetuneConfig

    cfg = setup.cfg
    model = {"scratch": setup.initial, "minilm": "minilm"}.get(system, setup.pretrained)
    prompt = (dict(prompt=cfg.template, verbalizer=cfg.verbalizer)
              if system.startswith("prompt") else {})
    tag = f"{system.split('+')[0]}-{count or 'all'}" + ("" if seed is None else f"-seed{seed}")
    return FinetuneConfig(
        model=str(model), train=str(path), validation=str(setup.files.validation),
        test=str(setup.files.test), output=str(setup.out / f"ft-{tag}"), epochs=epochs,
        lr=cfg.finetune_lr, max_length=cfg.max_length, seed=cfg.seed if seed is None else seed,
        freeze=cfg.minilm_freeze if system == "minilm" else "none", progress="log",
        overwrite=True, **prompt)


def fine_tuned(setup: Setup, system: str, path: Path, unlabelled: D.Examples, count: int,
               epochs: int, seed: int | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Fine-tune (and, for X+self-train, distil into a student); (test metrics, pre-training
    of the model used)."""
    from minitf.recipes.finetune import finetune
    from minitf.recipes.self_train import soft_labels

    teacher = system.split("+")[0]
    cfg = finetune_config(setup, teacher, path, count, epochs, seed)
    key = (teacher, count, seed)
    reused = key in setup.runs  # a self-training row reuses its teacher's row (and time)
    if not reused:
        started = time.perf_counter()
        setup.runs[key] = (finetune(cfg), time.perf_counter() - started)
    (result, teacher_seconds), directory = setup.runs[key], cfg.output
    if system.endswith("+self-train"):
        probs = soft_labels(Path(cfg.output) / "best", unlabelled, cfg)
        directory = cfg.output + "-student"
        result = finetune(replace(cfg, output=directory, epochs=setup.cfg.student_epochs),
                          soft=(unlabelled, probs))
    bert = {"scratch": {"steps": 0, "minutes": 0.0}, "minilm": None}.get(system,
                                                                       setup.pretraining)
    return {**result.test, "directory": directory,
            "teacher_seconds": teacher_seconds if reused else 0.0}, bert


def taught_by_tfidf(setup: Setup, system: str, path: Path, unlabelled: D.Examples, count: int,
                    seed: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The self-training recipe with a TF-IDF teacher (minitf/recipes/self_train.py): TF-IDF
    fitted on the labelled rows soft-labels the other training texts, a student from the
    pre-trained model trains on both for `student_epochs`."""
    from minitf.recipes.finetune import finetune

    cfg = finetune_config(setup, system.split("+")[0], path, count, setup.cfg.student_epochs,
                          seed)
    texts = setup.out / "data" / f"unlabelled-{count}-{'first' if seed is None else seed}.csv"
    if not texts.is_file():
        write_text(texts, csv_text(unlabelled, columns=("text",)))
    directory = cfg.output + "-tfidf-teacher"
    result = finetune(replace(cfg, output=directory, unlabelled=str(texts), teacher="tfidf"))
    return {**result.test, "directory": directory + "/student-1"}, setup.pretraining


def zero_shot(setup: Setup) -> dict[str, Any]:
    """The prompt's test metrics with no training at all."""
    return zero_shot_metrics(setup.pretrained, setup.files.test, setup.cfg.template,
                             setup.cfg.verbalizer, setup.cfg.max_length)


def zero_shot_metrics(model: str | Path, test: str | Path, template: str, verbalizer: str,
                      max_length: int = 128) -> dict[str, Any]:
    """A masked-LM directory as a prompt classifier (minitf/tasks/prompt.py), untrained: its
    metrics on the labelled `test` file (columns text,label)."""
    from minitf.tasks import classify as inference
    from minitf.tasks import prompt as P

    tokenizer = inference.load_tokenizer(model)
    classifier = P.load_prompt_classifier(model, tokenizer, template, verbalizer)
    labels = classifier.prompt.labels
    examples, targets = D.label_ids(D.read_examples(test, "text", None, "label"), labels)
    data = P.encode(examples, tokenizer, classifier.prompt, targets, max_length)
    return inference.evaluate_encoded(classifier, data, labels)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several seeds → one per (system, labels): mean and sample sd (None with one
    seed) of the test accuracy, the seeds' accuracies, mean seconds; in first-seen order."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["labels"]), []).append(row)
    out = []
    for (system, labels), group in groups.items():
        accs = [r["test_accuracy"] for r in group]
        out.append({"system": system, "name": group[0]["name"], "labels": labels,
                    "mean": statistics.mean(accs),
                    "sd": statistics.stdev(accs) if len(accs) > 1 else None,
                    "accuracies": accs,
                    "seconds": statistics.mean(r["seconds"] for r in group)})
    return out


def format_table(rows: list[dict[str, Any]], counts: list[int]) -> str:
    """A markdown table: one line per system, one column per label count (0: all), cells
    `mean ± sd (seconds)` in %."""
    summary = summarise(rows)
    systems = list(dict.fromkeys(r["system"] for r in summary))
    cell = {(r["system"], r["labels"]): r for r in summary}
    n_all = max((r["labels"] for r in summary), default=0)
    heads = [f"{c:,} labels" if c else f"all ({n_all:,})" for c in counts]
    lines = ["| system | " + " | ".join(heads) + " |", "|---|" + "---|" * len(counts)]
    for system in systems:
        cells = []
        for c in counts:
            r = cell.get((system, c or n_all)) or (cell.get((system, 0))
                                                   if system == "zero-shot" else None)
            cells.append("-" if r is None else f"{100 * r['mean']:.1f}"
                         + ("" if r["sd"] is None else f" ± {100 * r['sd']:.1f}")
                         + f" ({r['seconds']:.0f} s)")
        name = next(r["name"] for r in summary if r["system"] == system)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
