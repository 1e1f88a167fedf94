"""`minitf finetune`: fine-tune a BERT classifier (or regressor) on a labelled CSV/TSV/JSONL file.

The recipe of the BERT paper (Devlin et al., 2019, §4 and appendix A.3), top to bottom:

    1. data      read, map labels to ids (or numbers, --regression), hold out validation (and
                 test) rows, tokenize once
    2. model     BertForSequenceClassification = pre-trained encoder + a fresh linear head;
                 optionally freeze a prefix (minitf/model/freeze.py) and cache its outputs,
                 or train LoRA adapters instead (--lora, minitf/model/lora.py; cached below them)
    3. optimizer AdamW, weight decay 0.01 except on biases and LayerNorm weights
    4. schedule  linear warmup over the first 10% of steps, then linear decay to 0
    5. loop      length-bucketed batches, cross-entropy (MSE for regression), clipping at 1.0
    6. each epoch evaluate on validation; keep the best checkpoint and the last one
    7. the end   test the best checkpoint once; metrics.jsonl and a plot in --output

Steps 5 and 6 are the shared engine (minitf/train/loop.py, step.py): this module says what to
train on and how to measure it, the engine runs it, saves it, resumes it, stops it.

Outputs in --output: best/ and last/ (Hugging Face model directories; last/ also holds the
training state for --resume), metrics.jsonl, training.png. With adapters best/ and last/ hold
the merged weights, and best/adapter/ and last/adapter/ the adapters in PEFT's format.

Python:  from minitf.recipes.finetune import FinetuneConfig, finetune  (CLI: minitf/cli/finetune.py)
         result = finetune(FinetuneConfig(model="minilm", train="train.csv", output="out"))
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification, num_parameters
from minitf.model.freeze import FreezePlan, classifier_logits, freeze, train_mode
from minitf.model.lora import lora_modules
from minitf.model.precision import pick_device
from minitf.model.weights import model_files
from minitf.paths import resolve_model_dir
from minitf.recipes import options as O
from minitf.recipes.self_train import self_train, with_soft_examples
from minitf.run_folder import RunFolder
from minitf.tasks import classify as inference
from minitf.tasks import prompt
from minitf.tasks.metrics import format_report, majority_baseline, mean_baseline
from minitf.tasks.peft_format import ADAPTER_DIR, merged_model_files, setup_lora
from minitf.train import distributed
from minitf.train.checkpoint import Outputs
from minitf.train.freeze import PrefixCache
from minitf.train.loop import Schedule, Task, Trainer
from minitf.train.optim import build_optimizer, linear_schedule
from minitf.train.progress import Progress
from minitf.train.step import TrainStep


@dataclass
class FinetuneConfig:
    """The recipe's settings: each field is an option of minitf/recipes/options.py (its flag,
    help, check and whether --resume must match come from there)."""

    train: str = O.TRAIN.field()
    output: str = O.OUTPUT.field()
    task: str = O.TASK.field()
    model: str = O.MODEL.field()
    validation: str | None = O.VALIDATION.field()
    test: str | None = O.TEST.field()
    validation_fraction: float = O.VALIDATION_FRACTION.field()
    test_fraction: float = O.TEST_FRACTION.field()
    max_train_samples: int | None = O.MAX_TRAIN_SAMPLES.field()
    text_column: str | None = O.TEXT_COLUMN.field()
    pair_column: str | None = O.PAIR_COLUMN.field()
    label_column: str | None = O.LABEL_COLUMN.field()
    format: str | None = O.FORMAT.field()
    encoding: str = O.ENCODING.field()
    encoding_errors: str = O.ENCODING_ERRORS.field()
    skip_bad_rows: bool = O.SKIP_BAD_ROWS.field()
    regression: bool = O.REGRESSION.field()
    epochs: int = O.EPOCHS.field()
    batch_size: int = O.BATCH_SIZE.field()
    lr: float = O.LR.field()
    weight_decay: float = O.WEIGHT_DECAY.field()
    warmup_ratio: float = O.WARMUP_RATIO.field()
    max_grad_norm: float = O.MAX_GRAD_NORM.field()
    max_length: int = O.MAX_LENGTH.field()
    freeze: str = O.FREEZE.field()
    cache: bool = O.CACHE.field()
    lora: int = O.LORA.field()
    lora_alpha: float | None = O.LORA_ALPHA.field()
    lora_dropout: float = O.LORA_DROPOUT.field()
    lora_targets: str = O.LORA_TARGETS.field()
    lora_layers: str = O.LORA_LAYERS.field()
    prompt: str | None = O.PROMPT.field()
    verbalizer: str | None = O.VERBALIZER.field()
    unlabelled: str | None = O.UNLABELLED.field()
    teacher: str = O.TEACHER.field()
    self_train_rounds: int = O.SELF_TRAIN_ROUNDS.field()
    adapter: str | None = O.ADAPTER.field(help="a PEFT LoRA adapter directory to continue "
                                          "training", group=O.LORA.group)
    seed: int = O.SEED.field()
    patience: int = O.PATIENCE.field()
    select_metric: str = O.SELECT_METRIC.field()
    resume: bool = O.RESUME.field()
    overwrite: bool = O.OVERWRITE.field()
    save_every: int = O.SAVE_EVERY.field()
    stop_after_steps: int | None = O.STOP_AFTER_STEPS.field()
    device: str = O.DEVICE.field()
    precision: str = O.TRAINING_PRECISION.field()
    attn_backend: str = O.ATTN_BACKEND.field()
    progress: str = O.PROGRESS.field()
    dist_timeout: float = O.DIST_TIMEOUT.field()
    eval_batch_size: int = 128         # not a flag: examples per evaluation forward pass

    @property
    def metric(self) -> str:
        if self.select_metric == "auto":
            return "loss" if self.regression else "accuracy"
        return self.select_metric


@dataclass
class FinetuneResult:
    output: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    interrupted: bool = False
    stop_signal: int = 0  # what interrupted it: signal.SIGINT (Ctrl-C) or SIGTERM
    train_seconds: float = 0.0
    label_names: list[str] = field(default_factory=list)


def finetune(cfg: FinetuneConfig, tokenizer: Any = None,
             soft: tuple[D.Examples, torch.Tensor] | None = None) -> FinetuneResult:
    """Run the recipe. `tokenizer` defaults to the model directory's (inference.load_tokenizer).
    Under torchrun every process runs it, data-parallel (minitf/train/distributed.py).
    cfg.unlabelled: self-training (minitf/recipes/self_train.py), which calls this with
    `soft`: unlabelled examples and their class probabilities, trained on besides the labels."""
    if cfg.unlabelled:
        check_config(cfg)
        return self_train(cfg, finetune, load_splits, tokenizer)
    with distributed.start(cfg.device, cfg.dist_timeout) as ctx, \
            RunFolder(cfg.output, "finetune", ctx.main) as folder:
        if cfg.task != "classify":  # a label per position: minitf/recipes/tokens.py
            from minitf.recipes.tokens import finetune_tokens
            return finetune_tokens(cfg, tokenizer, ctx, folder)
        return _finetune(cfg, tokenizer, ctx, folder, soft)


def _finetune(cfg: FinetuneConfig, tokenizer: Any, ctx: distributed.Context,
              folder: RunFolder, soft: tuple[D.Examples, torch.Tensor] | None = None
              ) -> FinetuneResult:
    progress = Progress(cfg.progress if ctx.main else "off")  # rank 0 alone prints and writes
    check_config(cfg)
    out, state = open_output(cfg, folder)
    ctx.check_batch_size(cfg.batch_size)
    device = ctx.local_device(pick_device(cfg.device))
    torch.manual_seed(cfg.seed)

    # 1. Data, tokenized once.
    splits = load_splits(cfg, progress.say)
    model_dir = resolve_model_dir(cfg.model)
    if tokenizer is None:
        tokenizer = inference.load_tokenizer(model_dir)
    fingerprint = data_fingerprint(splits.train, splits.targets["train"])
    if state is not None and state["fingerprint"] != fingerprint:
        raise MinitfError(f"{cfg.train} changed since the checkpoint was written; --resume "
                          "needs the same training data")

    # 2. Model: the pre-trained encoder with a head for our labels, frozen prefix, cache.
    # With adapters: the base model, then the adapters (resumed: last/adapter, exact).
    adapter = (out / "last" / ADAPTER_DIR if state else cfg.adapter) if cfg.lora or cfg.adapter \
        else None
    model, plan = build_model(cfg, out / "last" if state and not adapter else model_dir,
                              splits.labels, device, progress.say, adapter, tokenizer)
    encoded = encode_splits(splits, tokenizer, cfg.max_length, model)
    if soft is not None:  # a self-training student: + the unlabelled rows, soft targets
        unlabelled = inference.encode_examples(model, soft[0], tokenizer, None, cfg.max_length)
        encoded["train"] = with_soft_examples(encoded["train"], unlabelled, soft[1],
                                              len(splits.labels))
    caches = build_caches(cfg, model, plan, encoded, ctx, device, progress.say)

    # 3.-4. Optimizer and schedule, over the trainable parameters only.
    step = build_step(cfg, model, len(encoded["train"]), device, ctx)

    # 5.-6. The loop: train, evaluate every epoch, keep best/ and last/ (minitf/train/loop.py).
    task = training_task(cfg, model, plan, encoded, caches, splits.labels, tokenizer, ctx,
                         device)
    outputs = Outputs(out, enabled=ctx.main)
    trainer = Trainer(task, step, schedule(cfg), ctx, outputs, progress, device,
                      extra_state=lambda: {"config": asdict(cfg), "fingerprint": fingerprint})
    if state is not None:
        trainer.load_state_dict(state)
        progress.say(f"resuming from {out / 'last'} at epoch {state['position'][0] + 1}, "
                     f"step {state['position'][1]}")
    loop = trainer.run()
    result = FinetuneResult(out, loop.history, interrupted=loop.interrupted,
                            stop_signal=loop.stop_signal,
                            train_seconds=loop.train_seconds, label_names=splits.labels)
    if loop.interrupted:
        return result

    # 7. Test the best checkpoint once.
    if "test" in encoded and ctx.main:  # rank 0 alone: it wrote best/
        test_best(cfg, result, encoded["test"], splits, outputs, loop.best, device, progress.say,
                  tokenizer)
    outputs.plot()
    progress.say(f"saved: {out / 'best'} (best), {out / 'last'} (last), {out / 'metrics.jsonl'}")
    return result


def build_step(cfg: FinetuneConfig, model: torch.nn.Module, train_size: int,
               device: torch.device, ctx: distributed.Context) -> TrainStep:
    """AdamW over the trainable parameters, linear warmup then decay over every step."""
    total_steps = math.ceil(train_size / cfg.batch_size) * cfg.epochs
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, device)
    scheduler = linear_schedule(optimizer, round(cfg.warmup_ratio * total_steps), total_steps)
    return TrainStep(optimizer, scheduler, cfg.max_grad_norm, device, cfg.precision,
                     ctx.mean_loss)


# ---------------------------------------------------------------------------------------------
# 0. Settings and the output directory
# ---------------------------------------------------------------------------------------------


def check_config(cfg: FinetuneConfig) -> None:
    """Each option's own check (minitf/recipes/options.py), then the rules between options."""
    O.check_config(cfg)
    if cfg.task == "classify" and cfg.format in O.TOKEN_FORMATS:
        raise MinitfError(f"--format {cfg.format} is a token format: pass --task segment, tag "
                          "or ner with it")
    if cfg.task != "classify" and (cfg.prompt or cfg.verbalizer or cfg.unlabelled):
        raise MinitfError(f"--prompt, --verbalizer and --unlabelled classify texts; they do not "
                          f"apply to --task {cfg.task}")
    if cfg.teacher != "model" and not cfg.unlabelled:
        raise MinitfError(f"--teacher {cfg.teacher} chooses the teacher of self-training: give "
                          "--unlabelled FILE with it")
    if cfg.eval_batch_size < 1:
        raise MinitfError("eval_batch_size must be at least 1")
    if cfg.metric not in O.SELECT_METRICS:
        raise MinitfError(f"--select-metric {cfg.select_metric!r}: choose auto, "
                          f"{', '.join(O.SELECT_METRICS)}")
    allowed = ("loss", "pearson") if cfg.regression else ("accuracy", "macro_f1", "loss")
    if cfg.metric not in allowed and cfg.task == "classify":  # tokens: recipes/tokens.py
        raise MinitfError(f"--select-metric {cfg.metric} does not apply to "
                          f"{'regression' if cfg.regression else 'classification'}; choose "
                          f"one of {', '.join(allowed)}")
    if (cfg.prompt is None) != (cfg.verbalizer is None):
        raise MinitfError("--prompt and --verbalizer go together: the template says where the "
                          "[MASK] is, the verbalizer which word there means which class")
    if cfg.prompt is not None and cfg.regression:
        raise MinitfError("--prompt classifies by label words; it does not do --regression")
    if cfg.prompt is not None:  # the form now; the classes and the vocabulary once loaded
        prompt.check_template(cfg.prompt)
        prompt.parse_verbalizer(cfg.verbalizer)
    if (cfg.lora or cfg.adapter) and cfg.freeze != "none":
        raise MinitfError("--lora/--adapter freeze the base weights themselves (and cache the "
                          "layers below the adapted ones); drop --freeze")
    lora_settings = [f"--{name.replace('_', '-')}" for name in
                     ("lora_alpha", "lora_dropout", "lora_targets", "lora_layers")
                     if getattr(cfg, name) != getattr(FinetuneConfig, name)]
    if lora_settings and cfg.adapter:
        raise MinitfError(f"{', '.join(lora_settings)} with --adapter: a continued adapter "
                          "keeps the settings it was trained with; drop them")
    if lora_settings and not cfg.lora:
        raise MinitfError(f"{', '.join(lora_settings)} set without --lora R: give the rank "
                          "(e.g. --lora 8) to train adapters, or drop them")


def open_output(cfg: FinetuneConfig, folder: RunFolder) -> tuple[Path, dict[str, Any] | None]:
    """The output folder (minitf's, created, marked and locked: minitf/run_folder.py) and,
    with --resume, the state to continue."""
    folder.check(cfg.resume, cfg.overwrite, holds=("last",))
    out = folder.open()
    return out, O.resume_state(cfg, out)


def schedule(cfg: FinetuneConfig) -> Schedule:
    return Schedule(epochs=cfg.epochs, stop_after_steps=cfg.stop_after_steps,
                    save_every=cfg.save_every, patience=cfg.patience,
                    select_metric=cfg.metric, higher_is_better=O.SELECT_METRICS[cfg.metric])


# ---------------------------------------------------------------------------------------------
# 1. Data
# ---------------------------------------------------------------------------------------------


@dataclass
class Splits:
    train: D.Examples
    validation: D.Examples | None
    test: D.Examples | None
    labels: list[str]                          # class names; regression: [the label column]
    targets: dict[str, list[int] | list[float]]  # per split: class ids, or regression values


def load_splits(cfg: FinetuneConfig, say: Any = print) -> Splits:
    read = dict(text_column=cfg.text_column, pair_column=cfg.pair_column,
                label_column=cfg.label_column, format=cfg.format, encoding=cfg.encoding,
                encoding_errors=cfg.encoding_errors, skip_bad_rows=cfg.skip_bad_rows)
    train = D.read_examples(cfg.train, **read)
    validation = D.read_examples(cfg.validation, **read) if cfg.validation else None
    test = D.read_examples(cfg.test, **read) if cfg.test else None
    # Held-out rows come off the full file first, so --max-train-samples never changes them.
    if test is None and cfg.test_fraction > 0:
        train, test = D.split(train, cfg.test_fraction, cfg.seed + 1)
    if validation is None and cfg.validation_fraction > 0:
        train, validation = D.split(train, cfg.validation_fraction, cfg.seed)
    if cfg.max_train_samples and cfg.max_train_samples < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed + 2))
        train = train.subset(sorted(order[:cfg.max_train_samples].tolist()))
    labels = [cfg.label_column or "score"] if cfg.regression else class_names(cfg, train)
    sets = {"train": train, "validation": validation, "test": test}
    targets = {}
    for name, examples in sets.items():
        if examples is not None:
            sets[name], targets[name] = (
                D.label_values(examples, cfg.skip_bad_rows) if cfg.regression
                else D.label_ids(examples, labels, cfg.skip_bad_rows))
            skipped = (f", {sets[name].skipped} bad rows skipped" if sets[name].skipped
                       else "")
            say(f"{name}: {len(sets[name])} examples from {examples.source}{skipped}")
    say("regression target: " + labels[0] if cfg.regression else f"classes: {', '.join(labels)}")
    return Splits(sets["train"], sets["validation"], sets["test"], labels, targets)


def class_names(cfg: FinetuneConfig, train: D.Examples) -> list[str]:
    labels = D.label_names(train)
    if len(labels) < 2:
        raise MinitfError(f"{cfg.train}: a classifier needs at least 2 classes; found only "
                          f"{labels} (for numeric targets pass --regression)")
    if len(labels) > MAX_CLASSES:  # before a (classes, hidden) head is made
        raise MinitfError(f"{cfg.train}: {len(labels):,} distinct labels, more than "
                          f"{MAX_CLASSES:,} classes; is --label-column the text or an id? (for "
                          "numeric targets pass --regression)")
    return labels


MAX_CLASSES = 10_000


def data_fingerprint(examples: D.Examples, targets: list[int] | list[float]) -> str:
    digest = hashlib.sha1()
    pairs = examples.pairs or [None] * len(targets)
    for text, pair, label in zip(examples.texts, pairs, targets, strict=True):
        digest.update(f"{text}\x00{pair}\x00{label}\x01".encode("utf-8", "replace"))
    return digest.hexdigest()


def encode_splits(splits: Splits, tokenizer: Any, max_length: int, model: Any
                  ) -> dict[str, D.Encoded]:
    """Token ids of every split (tokenized once; in its prompt for a prompt classifier),
    checked against the model's vocabulary."""
    encoded, vocab_size = {}, model.config.vocab_size
    for name in ("train", "validation", "test"):
        examples = getattr(splits, name)
        if examples is None:
            continue
        encoded[name] = inference.encode_examples(model, examples, tokenizer,
                                                  splits.targets[name], max_length)
        top = max(int(t.max()) for t in encoded[name].input_ids)
        if top >= vocab_size:
            raise MinitfError(f"{name} data has token id {top}, outside the model's vocabulary "
                              f"({vocab_size}); the tokenizer does not belong to this model")
    return encoded


# ---------------------------------------------------------------------------------------------
# 2. Model, freezing and the cache
# ---------------------------------------------------------------------------------------------


def load_classifier(directory: str | Path, labels: list[str], attn_backend: str = "auto",
                    cfg: FinetuneConfig | None = None, tokenizer: Any = None
                    ) -> BertForSequenceClassification:
    """A classifier for `labels`: the checkpoint's head if it has one for these labels, else a
    fresh head on the pre-trained encoder. The label names go into config.json (a regression
    model has one "label", its target's name, and one output). With cfg.prompt: the masked-LM
    model as a prompt classifier (minitf/tasks/prompt.py), its head being the MLM head."""
    if cfg is not None and cfg.prompt is not None:
        return prompt.load_prompt_classifier(directory, tokenizer, cfg.prompt, cfg.verbalizer,
                                             labels, attn_backend)
    model = BertForSequenceClassification.from_pretrained(
        directory, num_labels=len(labels), attn_backend=attn_backend, allow_missing_head=True)
    model.config.id2label = dict(enumerate(labels))
    model.config.minitf_prompt = None  # from a prompt model's directory: now a head classifies
    return model


def build_model(cfg: FinetuneConfig, directory: Path, labels: list[str], device: torch.device,
                say: Any, adapter: str | Path | None = None, tokenizer: Any = None
                ) -> tuple[BertForSequenceClassification, FreezePlan]:
    model = load_classifier(directory, labels, cfg.attn_backend, cfg, tokenizer)
    if cfg.max_length > model.config.max_position_embeddings:
        raise MinitfError(f"--max-length {cfg.max_length} exceeds the model's "
                          f"max_position_embeddings ({model.config.max_position_embeddings})")
    model.to(device)
    plan = freeze(model, cfg.freeze) if not (cfg.lora or adapter) else setup_lora(
        model, cfg.lora, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, cfg.lora_layers,
        adapter)
    trainable, total = num_parameters(model, trainable_only=True), num_parameters(model)
    say(f"model: {directory} ({model.config.num_hidden_layers} layers, hidden "
        f"{model.config.hidden_size}); freeze: {plan.policy}; parameters: {trainable:,} "
        f"trainable of {total:,} ({trainable / total:.1%})")
    return model, plan


@dataclass
class Caches:
    """The frozen prefix's outputs, computed once, for the training and validation rows."""

    by_split: dict[str, PrefixCache] = field(default_factory=dict)
    train_seconds: float = 0.0  # building the training data's cache: what each epoch saves


def build_caches(cfg: FinetuneConfig, model: BertForSequenceClassification, plan: FreezePlan,
                 encoded: dict[str, D.Encoded], ctx: distributed.Context,
                 device: torch.device, say: Any) -> Caches:
    caches = Caches()
    if not (plan.frozen and cfg.cache):
        return caches
    for name in ("train", "validation"):
        if name in encoded:
            started = time.perf_counter()
            # Under torchrun: all training rows (a rank's rows change every epoch) and the
            # validation rows this rank evaluates.
            rows = encoded[name] if name == "train" else ctx.local_rows(encoded[name])
            caches.by_split[name] = PrefixCache(model, rows, plan.frozen_layers,
                                                cfg.eval_batch_size, device)
            if name == "train":
                caches.train_seconds = time.perf_counter() - started
    mib = sum(c.nbytes for c in caches.by_split.values()) / 2**20
    say(f"cached the frozen prefix (embeddings + {plan.frozen_layers} layers): {mib:.0f} MiB; "
        f"the training data's took {caches.train_seconds:.1f} s")
    return caches


# ---------------------------------------------------------------------------------------------
# 5.-6. What the engine trains: batches, loss, evaluation, saving
# ---------------------------------------------------------------------------------------------


def training_task(cfg: FinetuneConfig, model: BertForSequenceClassification, plan: FreezePlan,
                  encoded: dict[str, D.Encoded], caches: Caches, labels: list[str],
                  tokenizer: Any, ctx: distributed.Context, device: torch.device) -> Task:
    train = encoded["train"]
    lengths = train.lengths

    def batches(epoch: int) -> list[list[int]]:
        return D.batch_plan(lengths, cfg.batch_size, epoch, cfg.seed)

    def loss(model: BertForSequenceClassification, shard: distributed.Shard) -> torch.Tensor:
        batch = {k: v.to(device) for k, v in train.collate(shard.rows).items()}
        logits = classifier_logits(model, batch, plan, caches.by_split.get("train"), shard.rows)
        return shard.loss(logits.float(), batch["labels"])

    def evaluate() -> dict[str, Any]:
        data = encoded["validation"]  # each rank predicts its rows; every rank gets all
        local = inference.predict_logits(model, ctx.local_rows(data), plan,
                                         caches.by_split.get("validation"),
                                         cfg.eval_batch_size, device)
        return inference.logits_metrics(ctx.gather_rows(local, len(data)), data.labels, labels)

    def on_record(record: dict[str, Any]) -> str | None:
        """An epoch trained start to end in this process: what the cache saved."""
        if not (caches.train_seconds and record.get("samples") == len(train)):
            return None
        seconds = record["seconds"]
        record["cache_speedup"] = (seconds + caches.train_seconds) / seconds
        return (f"  the cache saved ~{caches.train_seconds:.0f} s of prefix computation this "
                f"epoch (~{record['cache_speedup']:.1f}× faster than recomputing it)")

    save = (merged_model_files(model, tokenizer, cfg.model) if lora_modules(model)
            else model_files(model, tokenizer))  # adapters: merged + best/adapter (PEFT)
    return Task(model=model, batches=batches, loss=loss, save=save,
                evaluate=evaluate if "validation" in encoded else None,
                train_mode=lambda: train_mode(model, plan), describe=describe,
                on_record=on_record)


def describe(metrics: dict[str, Any]) -> str:
    if "accuracy" in metrics:
        return (f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, "
                f"macro-F1 {metrics['macro_f1']:.4f}")
    return f"MSE {metrics['mse']:.4f}, MAE {metrics['mae']:.4f}, Pearson r {metrics['pearson']:.4f}"


# ---------------------------------------------------------------------------------------------
# 7. Test
# ---------------------------------------------------------------------------------------------


def test_best(cfg: FinetuneConfig, result: FinetuneResult, data: D.Encoded, splits: Splits,
              outputs: Outputs, best: dict[str, Any] | None, device: torch.device,
              say: Any, tokenizer: Any = None) -> None:
    """Evaluate best/ once on the test rows, next to the trivial baseline."""
    model = load_classifier(outputs.directory / "best", splits.labels, cfg.attn_backend, cfg,
                            tokenizer)
    result.test = inference.evaluate_encoded(model.to(device), data, splits.labels,
                                             batch_size=cfg.eval_batch_size, device=device)
    if cfg.regression:
        result.baseline = mean_baseline(splits.targets["train"], splits.targets["test"])
        keys, name = ("mse", "mae", "pearson", "predicted"), "mean-value"
    else:
        result.baseline = majority_baseline(splits.targets["train"], splits.targets["test"],
                                            splits.labels)
        keys, name = ("accuracy", "macro_f1", "predicted"), "majority-class"
    epoch = best["epoch"] if best else None
    outputs.log({"type": "test", "best_epoch": epoch, **result.test,
                 "baseline" if cfg.regression else "majority_baseline":
                     {k: result.baseline[k] for k in keys}})
    say(f"test (best checkpoint, epoch {epoch}):\n" + format_report(result.test))
    say(f"{name} baseline (always {result.baseline['predicted']!r}): "
        + format_report(result.baseline).splitlines()[0])
