"""`minitf finetune --unlabelled FILE`: self-training (PET's distillation step; UDA's soft
pseudo-labels), for the classifier head and the prompt path (--prompt) alike.

    round 0   the teacher: the ordinary recipe (minitf/recipes/finetune.py) on the labels
              → OUTPUT/teacher; or with --teacher tfidf, TF-IDF character 1-3-grams + logistic
              regression fitted on the same labelled rows (minitf/tasks/tfidf.py; a pair is
              one text, its two sides joined by a tab), nothing written
    round k   soft labels: the previous model's class probabilities on every unlabelled text;
              a student, started again from --model, trains on the labelled rows (one-hot
              targets) and the unlabelled ones (soft targets: cross-entropy against the
              probabilities) → OUTPUT/student-k; it is the teacher of round k + 1

Why a TF-IDF teacher: with a few hundred labels a small model is a worse classifier than
TF-IDF, and its soft labels teach a student less than TF-IDF's do. Taught by TF-IDF, the
student beat its teacher on the Chinese reviews (with or without pre-training:
benchmarks/results/pretrain-curve-2026-12-07-cpu.md).

Defaults: one round (--self-train-rounds 1), plain probabilities (temperature 1, no
confidence threshold), the same settings (epochs, lr, batch size, ...) for teacher and
student; validation picks each run's best epoch, the test file is scored once per run. The
final model is OUTPUT/student-N/best (printed at the end). Unlabelled texts that also occur
in --test are counted and warned about (training on the test texts, even unlabelled, flatters
the test score).

--resume continues a killed self-training where it stopped: each run (teacher, student-k)
that left a checkpoint (last/) is resumed (a finished one is only tested again), the soft labels
are recomputed from the previous run's best/ (the same probabilities: evaluation is
deterministic), and the runs not yet started start. Not under torchrun yet.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from minitf.data import examples as D
from minitf.data.text import TABLE_SUFFIXES, read_documents
from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.run_folder import RunFolder
from minitf.tasks import classify as inference
from minitf.train.distributed import from_environment

TEACHER, STUDENT = "teacher", "student-{}"
RECORD = "self-training.json"   # the run's teacher kind, checked by --resume


def self_train(cfg: Any, finetune: Any, load_splits: Any, tokenizer: Any = None) -> Any:
    """Teacher, then cfg.self_train_rounds students (see the module docstring); returns the
    last student's FinetuneResult. `finetune` and `load_splits` are minitf.recipes.finetune's
    (passed in: that module imports this one)."""
    if from_environment()[1] > 1:
        raise MinitfError("--unlabelled under torchrun is not supported yet: run the "
                          "self-training in one process")
    if cfg.regression:
        raise MinitfError("--unlabelled: self-training needs classes (soft labels), not "
                          "--regression")
    unlabelled = read_unlabelled(cfg)
    warn_overlap(cfg, unlabelled)
    with RunFolder(cfg.output, "finetune") as folder:
        folder.check(cfg.resume, cfg.overwrite, holds=(TEACHER, STUDENT.format(1)))
        out = folder.open()
        check_same_teacher(cfg, out)
        say = print if cfg.progress != "off" else (lambda *a: None)
        say(f"self-training: a {cfg.teacher} teacher on the labels, then "
            f"{cfg.self_train_rounds} student round(s) with {len(unlabelled)} unlabelled texts "
            f"from {cfg.unlabelled}")
        base = replace(cfg, unlabelled=None, teacher="model")   # each run: the plain recipe
        result, previous = None, None
        if cfg.teacher == "tfidf":
            probs = tfidf_soft_labels(base, load_splits, unlabelled)
        else:
            result, previous = finetune(one_run(base, out / TEACHER), tokenizer), out / TEACHER
        for k in range(1, cfg.self_train_rounds + 1):
            if result is not None and result.interrupted:
                return result
            if previous is not None:
                probs = soft_labels(previous / "best", unlabelled, cfg)
            result = finetune(one_run(base, out / STUDENT.format(k)), tokenizer,
                              soft=(unlabelled, probs))
            previous = out / STUDENT.format(k)
        say(f"self-training done: the final model is {previous / 'best'}")
        return result


def check_same_teacher(cfg: Any, out: Path) -> None:
    """--resume continues a self-training only with the teacher it started with (recorded in
    OUTPUT/self-training.json)."""
    record = out / RECORD
    if cfg.resume and record.is_file():
        started = json.loads(record.read_text(encoding="utf-8")).get("teacher", "model")
        if started != cfg.teacher:
            raise MinitfError(f"--resume: {out} was self-trained with --teacher {started}; "
                              f"resume with --teacher {started}, or start again with "
                              "--overwrite")
    write_text(record, json.dumps({"teacher": cfg.teacher}) + "\n")


def one_run(base: Any, directory: Path) -> Any:
    """The settings of one run of the self-training, written to `directory`: with --resume,
    continued from its checkpoint if it left one, else started."""
    return replace(base, output=str(directory),
                   resume=base.resume and (directory / "last").is_dir())


def read_unlabelled(cfg: Any) -> D.Examples:
    """The unlabelled texts: a CSV/TSV/JSONL table (its text column; labels, if any, are
    ignored) or plain text, one per line. Empty and binary files are refused (text.py)."""
    path = Path(cfg.unlabelled)
    if path.suffix.lower() in TABLE_SUFFIXES:
        examples = D.read_examples(path, cfg.text_column, cfg.pair_column, format=cfg.format,
                                   encoding=cfg.encoding, encoding_errors=cfg.encoding_errors,
                                   skip_bad_rows=cfg.skip_bad_rows, require_labels=False)
    else:
        texts = read_documents(path, encoding=cfg.encoding,
                               encoding_errors=cfg.encoding_errors,
                               skip_bad_rows=cfg.skip_bad_rows)
        examples = D.Examples(texts, [None] * len(texts))
    if not len(examples):
        raise MinitfError(f"--unlabelled {path}: no texts in it; give a file with one text "
                          "per line, or a CSV/TSV/JSONL file with a text column")
    return D.Examples(examples.texts, [None] * len(examples), pairs=examples.pairs,
                      source=str(path))


def warn_overlap(cfg: Any, unlabelled: D.Examples) -> int:
    """How many unlabelled texts are also --test texts (warned about when any)."""
    if not cfg.test:
        return 0
    test = set(D.read_examples(cfg.test, cfg.text_column, cfg.pair_column,
                               format=cfg.format, encoding=cfg.encoding,
                               encoding_errors=cfg.encoding_errors, skip_bad_rows=True,
                               require_labels=False).texts)
    shared = sum(text in test for text in unlabelled.texts)
    if shared:
        warnings.warn(f"--unlabelled {cfg.unlabelled}: {shared} of its {len(unlabelled)} "
                      f"texts are also in --test {cfg.test}; the test score will be "
                      "optimistic (remove them for a fair number)", stacklevel=2)
    return shared


def soft_labels(model_dir: Path, unlabelled: D.Examples, cfg: Any) -> torch.Tensor:
    """The model's class probabilities (n, num_labels) on the unlabelled texts."""
    model, tokenizer, _ = inference.load_for_inference(model_dir, cfg.attn_backend)
    data = inference.encode_examples(model, unlabelled, tokenizer, None, cfg.max_length)
    logits = inference.predict_logits(model, data, batch_size=cfg.eval_batch_size)
    return logits.float().softmax(-1)


def tfidf_soft_labels(cfg: Any, load_splits: Any, unlabelled: D.Examples) -> torch.Tensor:
    """TF-IDF + logistic regression fitted on the labelled training rows (those the student
    trains on: after --validation-fraction and --max-train-samples), its class probabilities
    (n, num_labels) on the unlabelled texts, classes in the student's order."""
    from minitf.tasks.tfidf import TfidfClassifier

    splits = load_splits(cfg, say=lambda *a: None)
    model = TfidfClassifier().fit(joined(splits.train), splits.targets["train"],
                                  len(splits.labels))
    return model.predict_proba(joined(unlabelled)).float()


def joined(examples: D.Examples) -> list[str]:
    """The texts, a pair's two sides joined by a tab (one bag of character n-grams)."""
    if examples.pairs is None:
        return list(examples.texts)
    return [f"{a}\t{b}" for a, b in zip(examples.texts, examples.pairs, strict=True)]


def with_soft_examples(train: D.Encoded, soft: D.Encoded, probs: torch.Tensor,
                       num_labels: int) -> D.Encoded:
    """The labelled rows (one-hot targets) followed by the unlabelled ones (soft targets):
    one Encoded whose labels are (n, num_labels) probabilities."""
    hard = torch.nn.functional.one_hot(train.labels.long(), num_labels).float()
    return D.Encoded(train.input_ids + soft.input_ids,
                     train.token_type_ids + soft.token_type_ids,
                     torch.cat([hard, probs.float()]), train.pad_token_id)
