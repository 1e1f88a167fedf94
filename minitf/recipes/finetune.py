"""`minitf finetune`: fine-tune a BERT classifier on a labelled CSV/TSV/JSONL file.

The recipe of the BERT paper (Devlin et al., 2019, §4 and appendix A.3), top to bottom:

    1. data      read, map labels to ids, hold out validation (and test) rows, tokenize once
    2. model     BertForSequenceClassification = pre-trained encoder + a fresh linear head;
                 optionally freeze a prefix (minitf/train/freeze.py) and cache its outputs
    3. optimizer AdamW, weight decay 0.01 except on biases and LayerNorm weights
    4. schedule  linear warmup over the first 10% of steps, then linear decay to 0
    5. loop      length-bucketed batches, cross-entropy, gradient clipping at 1.0
    6. each epoch evaluate on validation; keep the best checkpoint and the last one
    7. the end   test the best checkpoint once; metrics.jsonl and a plot in --output

Outputs in --output: best/ and last/ (Hugging Face model directories; last/ also holds the
training state for --resume), metrics.jsonl, training.png.

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

from minitf import evaluate
from minitf.errors import MinitfError
from minitf.evaluate import evaluate_encoded
from minitf.model import BertForSequenceClassification, num_parameters
from minitf.paths import DEFAULT_MODEL, resolve_model_dir
from minitf.train import data as D
from minitf.train import distributed
from minitf.train.checkpoint import Outputs, check_writable, load_state
from minitf.train.freeze import FreezePlan, PrefixCache, classifier_logits, freeze, train_mode
from minitf.train.metrics import format_report, majority_baseline
from minitf.train.optim import build_optimizer, linear_schedule
from minitf.train.progress import Progress, StopRequest

# Settings that must match for --resume to continue the same run.
RESUME_KEYS = ("train", "validation", "validation_fraction", "test_fraction", "max_train_samples",
               "epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm",
               "max_length", "freeze", "seed")


@dataclass
class FinetuneConfig:
    train: str
    output: str
    model: str = DEFAULT_MODEL
    validation: str | None = None
    test: str | None = None
    validation_fraction: float = 0.1   # held out of --train when no --validation is given
    test_fraction: float = 0.0         # held out of --train when no --test is given
    max_train_samples: int | None = None
    text_column: str | None = None
    pair_column: str | None = None
    label_column: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    skip_bad_rows: bool = False
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 128
    freeze: str = "none"
    cache: bool = True
    seed: int = 0
    patience: int = 0                   # epochs without improvement before stopping; 0 = off
    select_metric: str = "accuracy"     # or macro_f1
    resume: bool = False
    overwrite: bool = False
    save_every: int = 0                 # also save last/ every N steps; 0 = at epoch ends only
    device: str = "auto"
    precision: str = "auto"             # auto: bf16 autocast on CUDA when supported, else fp32
    attn_backend: str = "auto"
    eval_batch_size: int = 128
    progress: str = "auto"              # auto: a bar on a terminal, log lines otherwise; "off"
    stop_after_steps: int | None = None  # stop (and save) like Ctrl-C after this many steps
    dist_timeout: float = 300.0         # under torchrun: seconds a collective waits for peers


@dataclass
class FinetuneResult:
    output: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    interrupted: bool = False
    train_seconds: float = 0.0
    label_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# 1. Data
# ---------------------------------------------------------------------------------------------


@dataclass
class Splits:
    train: D.Examples
    validation: D.Examples | None
    test: D.Examples | None
    labels: list[str]
    ids: dict[str, list[int]]


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
    labels = D.label_names(train)
    if len(labels) < 2:
        raise MinitfError(f"{cfg.train}: a classifier needs at least 2 classes; found only "
                          f"{labels}")
    ids = {}
    sets = {"train": train, "validation": validation, "test": test}
    for name, examples in sets.items():
        if examples is not None:
            sets[name], ids[name] = D.label_ids(examples, labels, cfg.skip_bad_rows)
    for name, examples in sets.items():
        if examples is not None:
            skipped = f", {examples.skipped} bad rows skipped" if examples.skipped else ""
            say(f"{name}: {len(examples)} examples from {examples.source}{skipped}")
    say(f"classes: {', '.join(labels)}")
    return Splits(sets["train"], sets["validation"], sets["test"], labels, ids)


def data_fingerprint(examples: D.Examples, ids: list[int]) -> str:
    digest = hashlib.sha1()
    pairs = examples.pairs or [None] * len(ids)
    for text, pair, label in zip(examples.texts, pairs, ids, strict=True):
        digest.update(f"{text}\x00{pair}\x00{label}\x01".encode("utf-8", "replace"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# 2.-7. The recipe
# ---------------------------------------------------------------------------------------------


def finetune(cfg: FinetuneConfig, tokenizer: Any = None) -> FinetuneResult:
    """Run the recipe. `tokenizer` defaults to minitf's Tokenizer from the model directory.
    Under torchrun every process runs it, data-parallel (minitf/train/distributed.py)."""
    with distributed.start(cfg.device, cfg.dist_timeout) as ctx:
        return _finetune(cfg, tokenizer, ctx)


def _finetune(cfg: FinetuneConfig, tokenizer: Any, ctx: distributed.Context) -> FinetuneResult:
    progress = Progress(cfg.progress if ctx.main else "off")  # rank 0 alone prints and writes
    say = progress.say
    out = check_writable(cfg.output)
    outputs = Outputs(out, enabled=ctx.main)
    state = None
    if cfg.resume:
        state = load_state(out / "last")
        mismatched = [f"--{k.replace('_', '-')}: checkpoint {state['config'][k]!r}, now "
                      f"{getattr(cfg, k)!r}" for k in RESUME_KEYS
                      if state["config"].get(k) != getattr(cfg, k)]
        if mismatched:
            raise MinitfError(f"{out / 'last'} was trained with other settings; --resume "
                              "continues the same run only:\n  " + "\n  ".join(mismatched))
    elif (out / "last").exists() and not cfg.overwrite:
        raise MinitfError(f"{out} already holds a fine-tuning run; pass --resume to continue "
                          "it, --overwrite to start again there, or choose another --output")
    check_config(cfg)
    ctx.check_batch_size(cfg.batch_size)
    device = ctx.local_device(pick_device(cfg.device))
    torch.manual_seed(cfg.seed)

    # 1. Data, tokenized once.
    splits = load_splits(cfg, say)
    model_dir = resolve_model_dir(cfg.model)
    if tokenizer is None:
        tokenizer = evaluate.load_tokenizer(model_dir)
    if state is not None and state["fingerprint"] != data_fingerprint(splits.train,
                                                                       splits.ids["train"]):
        raise MinitfError(f"{cfg.train} changed since the checkpoint was written; --resume "
                          "needs the same training data")

    # 2. Model: the pre-trained encoder with a classifier for our labels, then freezing.
    model = load_classifier(out / "last" if state else model_dir, splits.labels, cfg.attn_backend)
    if cfg.max_length > model.config.max_position_embeddings:
        raise MinitfError(f"--max-length {cfg.max_length} exceeds the model's "
                          f"max_position_embeddings ({model.config.max_position_embeddings})")
    model.to(device)
    plan = freeze(model, cfg.freeze)
    trainable, total = num_parameters(model, trainable_only=True), num_parameters(model)
    say(f"model: {model_dir} ({model.config.num_hidden_layers} layers, hidden "
        f"{model.config.hidden_size}); freeze: {plan.policy}; parameters: {trainable:,} "
        f"trainable of {total:,} ({trainable / total:.1%})")
    encoded = {name: D.encode(examples, tokenizer, splits.ids[name], cfg.max_length)
               for name, examples in (("train", splits.train), ("validation", splits.validation),
                                      ("test", splits.test)) if examples is not None}
    check_token_ids(encoded, model.config.vocab_size)

    # 3.-4. Optimizer and schedule, over the trainable parameters only.
    steps_per_epoch = math.ceil(len(encoded["train"]) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, device)
    trainable_params = [p for p in model.parameters() if p.requires_grad]
    scheduler = linear_schedule(optimizer, round(cfg.warmup_ratio * total_steps), total_steps)
    history: list[dict[str, Any]] = []
    epoch, step, best, bad_epochs = 0, 0, None, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, step = state["position"]
        history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
        outputs.truncate_metrics(state["metrics_lines"])
        say(f"resuming from {out / 'last'} at epoch {epoch + 1}, step {step}")
    else:
        outputs.truncate_metrics(0)

    # The frozen prefix, computed once for training and validation data.
    caches: dict[str, PrefixCache] = {}
    cache_seconds = 0.0  # building the training data's cache: what each epoch saves
    if plan.frozen and cfg.cache:
        for name in ("train", "validation"):
            if name in encoded:
                started = time.perf_counter()
                # Under torchrun: all training rows (a rank's rows change every epoch) and the
                # validation rows this rank evaluates.
                rows = encoded[name] if name == "train" else ctx.local_rows(encoded[name])
                caches[name] = PrefixCache(model, rows, plan.frozen_layers,
                                           cfg.eval_batch_size, device)
                cache_seconds += (time.perf_counter() - started) * (name == "train")
        say(f"cached the frozen prefix (embeddings + {plan.frozen_layers} layers): "
            f"{sum(c.nbytes for c in caches.values()) / 2**20:.0f} MiB; the training data's "
            f"took {cache_seconds:.1f} s")

    result = FinetuneResult(out, history, label_names=splits.labels)
    amp = autocast_settings(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp["dtype"] == torch.float16 else None
    fingerprint = data_fingerprint(splits.train, splits.ids["train"])

    def training_state(position: tuple[int, int], loss_sum: float, seen: int) -> dict[str, Any]:
        return {"config": asdict(cfg), "position": position, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": ctx.rng_states(), "history": history,
                "best": best, "bad_epochs": bad_epochs, "metrics_lines": outputs.lines,
                "fingerprint": fingerprint, "epoch_loss": (loss_sum, seen)}

    # 5. The loop. Under torchrun `forward` is DistributedDataParallel: gradients all-reduced.
    forward = ctx.data_parallel(model, classifier_logits, plan, device)
    loss_sum, seen = state["epoch_loss"] if state is not None else (0.0, 0)
    if state is not None:
        ctx.set_rng_states(state["rng"])
    global_step = epoch * steps_per_epoch + step
    started = time.perf_counter()
    with StopRequest() as stop:
        while epoch < cfg.epochs:
            batches = D.batch_plan(encoded["train"].lengths, cfg.batch_size, epoch, cfg.seed)
            train_mode(model, plan)
            bar = progress.bar(len(batches), step, f"epoch {epoch + 1}/{cfg.epochs}")
            epoch_started, epoch_samples = time.perf_counter(), 0
            while step < len(batches):
                indices = batches[step]
                shard = ctx.shard(indices)  # this process's rows (on one process: all of them)
                batch = {k: v.to(device) for k, v in encoded["train"].collate(shard.rows).items()}
                with torch.autocast(device.type, dtype=amp["dtype"], enabled=amp["enabled"]):
                    logits = forward(batch, caches.get("train"), shard.rows)
                loss = shard.loss(logits.float(), batch["labels"])  # the global batch's mean
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable_params, cfg.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step, global_step = step + 1, global_step + 1
                epoch_samples += len(indices)
                value = ctx.mean_loss(loss)  # one sync per step: the loss shown, the NaN check
                if not math.isfinite(value):
                    raise MinitfError(
                        f"the loss became {value} at epoch {epoch + 1}, step {step}; training "
                        f"stopped. The last good checkpoint is {out / 'last'} (if any was "
                        "written). Try a lower --lr, or check the data")
                loss_sum, seen = loss_sum + value * len(indices), seen + len(indices)
                rate = epoch_samples / (time.perf_counter() - epoch_started)
                bar.update(loss=value, lr=scheduler.get_last_lr()[0], rate=rate)
                stopping = ctx.any(stop.requested) or global_step == cfg.stop_after_steps
                if stopping or (cfg.save_every and global_step % cfg.save_every == 0):
                    if step < len(batches):
                        outputs.save_last(model, tokenizer,
                                          training_state((epoch, step), loss_sum, seen))
                if stopping and step < len(batches):
                    bar.close()
                    say(f"stopped at epoch {epoch + 1}, step {step}; saved {out / 'last'}; "
                        "continue with --resume")
                    result.interrupted = True
                    result.train_seconds = time.perf_counter() - started
                    return result
            bar.close()
            epoch_seconds = time.perf_counter() - epoch_started

            # 6. Evaluate, keep the best, save the last.
            record = {"type": "epoch", "epoch": epoch + 1, "step": global_step,
                      "train_loss": loss_sum / max(seen, 1), "lr": scheduler.get_last_lr()[0],
                      "seconds": epoch_seconds, "samples_per_s": epoch_samples / epoch_seconds}
            improved = True
            if "validation" in encoded:
                metrics = ctx.evaluate(model, encoded["validation"], splits.labels, plan,
                                           caches.get("validation"), cfg.eval_batch_size, device)
                record["validation"] = metrics
                score = metrics[cfg.select_metric]
                improved = best is None or score > best["score"]
                if improved:
                    best = {"score": score, "epoch": epoch + 1}
                say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, validation "
                    f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, macro-F1 "
                    f"{metrics['macro_f1']:.4f}{'  (best so far)' if improved else ''}  "
                    f"[{epoch_seconds:.0f} s, {record['samples_per_s']:.1f} samples/s]")
            else:
                say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} "
                    f"[{epoch_seconds:.0f} s, {record['samples_per_s']:.1f} samples/s]")
            if cache_seconds and epoch_samples == len(encoded["train"]):
                record["cache_speedup"] = (epoch_seconds + cache_seconds) / epoch_seconds
                say(f"  the cache saved ~{cache_seconds:.0f} s of prefix computation this epoch "
                    f"(~{record['cache_speedup']:.1f}× faster than recomputing it)")
            bad_epochs = 0 if improved else bad_epochs + 1
            history.append(record)
            outputs.log(record)
            if improved:
                outputs.save_best(model, tokenizer)
            epoch, step, loss_sum, seen = epoch + 1, 0, 0.0, 0
            outputs.save_last(model, tokenizer, training_state((epoch, 0), 0.0, 0))
            if ctx.any(stop.requested) or global_step == cfg.stop_after_steps:
                say(f"stopped after epoch {epoch}; saved {out / 'last'}; continue with --resume")
                result.interrupted = True
                result.train_seconds = time.perf_counter() - started
                return result
            if cfg.patience and bad_epochs >= cfg.patience:
                say(f"early stopping: no improvement in {cfg.patience} epochs")
                break
    result.train_seconds = time.perf_counter() - started

    # 7. Test the best checkpoint once.
    if "test" in encoded and ctx.main:  # rank 0 alone: it wrote best/
        best_model = load_classifier(out / "best", splits.labels, cfg.attn_backend).to(device)
        result.test = evaluate_encoded(best_model, encoded["test"], splits.labels,
                                       FreezePlan("none", None), None, cfg.eval_batch_size,
                                       device)
        result.baseline = majority_baseline(splits.ids["train"], splits.ids["test"],
                                            splits.labels)
        outputs.log({"type": "test", "best_epoch": best["epoch"] if best else None,
                     **result.test, "majority_baseline": {
                         k: result.baseline[k] for k in ("accuracy", "macro_f1", "predicted")}})
        say(f"test (best checkpoint, epoch {best['epoch'] if best else epoch}):\n"
            + format_report(result.test))
        say(f"majority-class baseline (always {result.baseline['predicted']!r}): accuracy "
            f"{result.baseline['accuracy']:.4f}, macro-F1 {result.baseline['macro_f1']:.4f}")
    outputs.plot()
    say(f"saved: {out / 'best'} (best), {out / 'last'} (last), {out / 'metrics.jsonl'}")
    return result


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def check_config(cfg: FinetuneConfig) -> None:
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise MinitfError(f"--{name.replace('_', '-')} must be at least 1")
    if not cfg.lr > 0:
        raise MinitfError(f"--lr must be positive, got {cfg.lr}")
    if cfg.max_length < 3:
        raise MinitfError(f"--max-length must be at least 3 ([CLS] text [SEP]), got "
                          f"{cfg.max_length}")
    if cfg.select_metric not in ("accuracy", "macro_f1"):
        raise MinitfError(f"select_metric must be accuracy or macro_f1, not {cfg.select_metric!r}")
    if not 0 <= cfg.warmup_ratio <= 1:
        raise MinitfError(f"--warmup-ratio must be in [0, 1], got {cfg.warmup_ratio}")


def load_classifier(directory: str | Path, labels: list[str], attn_backend: str = "auto"
                    ) -> BertForSequenceClassification:
    """A classifier for `labels`: the checkpoint's head if it has one for these labels, else a
    fresh head on the pre-trained encoder. The label names go into config.json."""
    model = BertForSequenceClassification.from_pretrained(
        directory, num_labels=len(labels), attn_backend=attn_backend, allow_missing_head=True)
    model.config.id2label = dict(enumerate(labels))
    return model


def check_token_ids(encoded: dict[str, D.Encoded], vocab_size: int) -> None:
    for name, data in encoded.items():
        top = max(int(t.max()) for t in data.input_ids)
        if top >= vocab_size:
            raise MinitfError(f"{name} data has token id {top}, outside the model's vocabulary "
                              f"({vocab_size}); the tokenizer does not belong to this model")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MinitfError("--device cuda: no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def autocast_settings(precision: str, device: torch.device) -> dict[str, Any]:
    """Mixed precision: on GPU by default, bf16 where supported (no loss scaling needed), else
    fp16. On CPU fp32 by default; bf16 autocast on request (fast on CPUs with AVX512-BF16 or
    AMX, slow elsewhere; the numbers then differ from fp32 at bf16 precision)."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise MinitfError(f"--precision {precision}: choose auto, fp32, bf16 or fp16")
    if device.type == "cpu" and precision == "bf16":
        return {"enabled": True, "dtype": torch.bfloat16}
    if device.type == "cpu" and precision == "fp16":
        raise MinitfError("--precision fp16 needs a GPU; on CPU use fp32 or bf16")
    if device.type != "cuda" or precision == "fp32":
        return {"enabled": False, "dtype": torch.bfloat16}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"enabled": True, "dtype": torch.bfloat16 if precision == "bf16" else torch.float16}
