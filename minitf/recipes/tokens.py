"""`minitf finetune --task segment|tag|ner`: a label per character (or word), on the same engine.

What differs from classifying a text (minitf/recipes/finetune.py), and only that, lives here:

    1. data      a token file per split (minitf/data/tokens.py: words, word-tags or conll; the
                 format follows from --task, --format overrides), cut into windows of
                 --max-length with overlap; held-out sentences by --validation/--test-fraction
    2. model     BertForTokenClassification: the encoder without its pooler + a fresh linear
                 head on every position, labels in config.json's id2label; --freeze and its
                 frozen-prefix cache (the training windows' hidden states below the first
                 trained layer, computed once), or LoRA adapters (--lora R, --adapter DIR: the
                 adapters + the classifier train; saved merged, and in PEFT's TOKEN_CLS format)
    5. loss      cross-entropy over the labelled positions (the first piece of each unit)
    6. evaluate  windows stitched back into sentences, then the field's scores
                 (minitf/tasks/token_metrics.py): word F1 / OOV recall, tag accuracy, entity F1;
                 best/ is the checkpoint with the best --select-metric (auto: the task's score,
                 SELECT_METRICS below)
    7. lexicon   segment / tag: every checkpoint holds the training words (lexicon.txt); after
                 training, the decoder's bonus for a lexicon word is picked on the validation
                 sentences among LEXICON_WEIGHTS and written to best/config.json
                 (minitf_lexicon_weight; 0 when the lexicon does not help; with no validation
                 sentences the decoder's default, DEFAULT_LEXICON_WEIGHT)

The optimizer, schedule, loop, checkpoints, resume and the output folder are the same as for
classification. The validation windows are not cached (each evaluation runs the whole model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from minitf.data import tokens as T
from minitf.data.examples import Encoded, batch_plan
from minitf.data.lexicon import LEXICON_FILE, Lexicon, training_lexicon, write_lexicon
from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.model.bert import (
    BertForTokenClassification,
    num_parameters,
    token_classification_loss,
)
from minitf.model.freeze import FreezePlan, classifier_logits, freeze, train_mode
from minitf.model.lora import lora_modules
from minitf.model.precision import pick_device
from minitf.model.weights import model_files
from minitf.paths import resolve_model_dir
from minitf.recipes import finetune as F
from minitf.run_folder import RunFolder
from minitf.tasks import classify as inference
from minitf.tasks import token_metrics as M
from minitf.tasks.peft_format import ADAPTER_DIR, merged_model_files, setup_lora
from minitf.tasks.tokens import DEFAULT_LEXICON_WEIGHT, TokenTagger
from minitf.train import distributed
from minitf.train.checkpoint import Outputs
from minitf.train.freeze import PrefixCache
from minitf.train.loop import Schedule, Task, Trainer
from minitf.train.progress import Progress

TASK_FORMATS = {"segment": "words", "tag": "word-tags", "ner": "conll"}
# What --select-metric may name per task (keys of score()); auto: the first, the task's score:
# word F1 (segment), joint segmentation + tag F1 (tag), entity F1 (ner).
# The lexicon weights tried on validation (minitf/tasks/decode.py; 0: the lexicon off).
LEXICON_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
SELECT_METRICS = {"segment": ("f1", "accuracy", "loss"),
                  "tag": ("joint_f1", "tag_accuracy", "f1", "accuracy", "loss"),
                  "ner": ("f1", "accuracy", "loss")}


def finetune_tokens(cfg: F.FinetuneConfig, tokenizer: Any, ctx: distributed.Context,
                    folder: RunFolder) -> F.FinetuneResult:
    progress = Progress(cfg.progress if ctx.main else "off")
    check_token_config(cfg)
    out, state = F.open_output(cfg, folder)
    device = ctx.local_device(pick_device(cfg.device))
    torch.manual_seed(cfg.seed)

    # 1. Data: sentences, labels, windows.
    splits = load_token_splits(cfg, progress.say)
    model_dir = resolve_model_dir(cfg.model)
    tokenizer = tokenizer or inference.load_tokenizer(model_dir)
    fingerprint = training_fingerprint(splits["train"])
    if state is not None and state["fingerprint"] != fingerprint:
        raise MinitfError(f"{cfg.train} changed since the checkpoint was written; --resume "
                          "needs the same training data")
    labels = splits["train"].labels
    label2id = {name: i for i, name in enumerate(labels)}
    windows = T.encode_windows(splits["train"].items, tokenizer, cfg.max_length, label2id)
    tokenizer.model_max_length = cfg.max_length  # saved: predictions use the trained windows
    progress.say(f"train: {len(windows)} windows of at most {cfg.max_length} tokens")

    # 2. Model: frozen prefix (+ its cache) or adapters.
    model, plan = build_token_model(cfg, model_dir, out if state else None, labels, device,
                                    progress.say)
    cache = build_token_cache(cfg, model, plan, windows, tokenizer, device, progress.say)
    tagger = TokenTagger(model, tokenizer, cfg.max_length, cfg.eval_batch_size, device=device)

    # 3.-6. Optimizer, schedule, the loop.
    step = F.build_step(cfg, model, len(windows), device, ctx)
    lexicon = training_lexicon(splits["train"])
    save = checkpoint_files(cfg, model, tokenizer, lexicon if tagger.kinds is not None else None)
    task = Task(model=model, batches=_batches(cfg, windows),
                loss=_loss(windows, tokenizer, plan, cache, device), save=save,
                evaluate=(lambda: score(cfg.task, tagger, splits["validation"], lexicon))
                if "validation" in splits else None,
                train_mode=lambda: train_mode(model, plan), describe=describe)
    outputs = Outputs(out, enabled=ctx.main)
    trainer = Trainer(task, step, token_schedule(cfg), ctx, outputs, progress, device,
                      extra_state=lambda: {"config": asdict(cfg), "fingerprint": fingerprint})
    if state is not None:
        trainer.load_state_dict(state)
    loop = trainer.run()
    result = F.FinetuneResult(out, loop.history, interrupted=loop.interrupted,
                              stop_signal=loop.stop_signal, train_seconds=loop.train_seconds,
                              label_names=labels)
    if loop.interrupted:
        return result

    # 7. The lexicon's weight, then the best checkpoint tested once.
    if tagger.kinds is not None and ctx.main:
        weights = pick_lexicon_weight(cfg, out / "best", splits.get("validation"), lexicon)
        outputs.log({"type": "lexicon", **weights})
        progress.say(describe_lexicon(weights))
    if "test" in splits and ctx.main:
        result.test = test_best(cfg, out, splits["test"], lexicon)
        outputs.log({"type": "test", "best_epoch": loop.best["epoch"] if loop.best else None,
                     **result.test})
        progress.say("test (best checkpoint): " + describe(result.test))
    outputs.plot()
    return result


def training_fingerprint(train: T.Sentences) -> str:
    """What --resume compares: a hash of the training sentences and their labels."""
    return hashlib.sha1("\n".join(f"{s.text}\t{' '.join(s.tags)}"
                                   for s in train.items).encode()).hexdigest()


def test_best(cfg: F.FinetuneConfig, out: Path, test: T.Sentences, lexicon: Collection[str]
              ) -> dict[str, Any]:
    best = TokenTagger.from_pretrained(out / "best", max_length=cfg.max_length,
                                       batch_size=cfg.eval_batch_size)
    return score(cfg.task, best, test, lexicon)


def check_token_config(cfg: F.FinetuneConfig) -> None:
    F.check_config(cfg)
    fmt = cfg.format or TASK_FORMATS[cfg.task]
    if fmt not in T.FORMATS:
        raise MinitfError(f"--task {cfg.task} reads a token format ({', '.join(T.FORMATS)}), "
                          f"not --format {fmt}")
    if cfg.regression:
        raise MinitfError(f"--regression does not apply to --task {cfg.task}")
    if cfg.select_metric not in ("auto", *SELECT_METRICS[cfg.task]):
        raise MinitfError(f"--select-metric {cfg.select_metric} does not exist for --task "
                          f"{cfg.task}; choose auto ({SELECT_METRICS[cfg.task][0]}) or one of "
                          f"{', '.join(SELECT_METRICS[cfg.task])}")


def token_schedule(cfg: F.FinetuneConfig) -> Schedule:
    """F.schedule, with the best checkpoint chosen by the token task's metric."""
    metric = SELECT_METRICS[cfg.task][0] if cfg.select_metric == "auto" else cfg.select_metric
    return dataclasses.replace(F.schedule(cfg), select_metric=metric,
                               higher_is_better=metric != "loss")


def load_token_splits(cfg: F.FinetuneConfig, say: Any) -> dict[str, T.Sentences]:
    fmt = cfg.format or TASK_FORMATS[cfg.task]
    read = {name: T.read_sentences(path, fmt, cfg.encoding)
            for name, path in (("train", cfg.train), ("validation", cfg.validation),
                               ("test", cfg.test)) if path}
    train = read["train"]
    if not train.labels:
        raise MinitfError(f"{cfg.train}: no labelled sentence to train on")
    rng = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train), generator=rng).tolist()
    for name, fraction in (("test", cfg.test_fraction), ("validation", cfg.validation_fraction)):
        if name not in read and fraction > 0:
            take = max(1, round(fraction * len(order)))
            held, order = sorted(order[:take]), order[take:]
            read[name] = T.Sentences([train.items[i] for i in held], fmt, train.source,
                                     train.labels)
    kept = sorted(order[:cfg.max_train_samples] if cfg.max_train_samples else order)
    read["train"] = T.Sentences([train.items[i] for i in kept], fmt, train.source, train.labels)
    for name in ("validation", "test"):
        if name in read:
            T.check_known_labels(read[name], train.labels)
    for name, data in read.items():
        say(f"{name}: {len(data)} sentences from {data.source}")
    say(f"labels ({len(train.labels)}): {' '.join(train.labels[:20])}"
        + (" ..." if len(train.labels) > 20 else ""))
    return read


def build_token_model(cfg: F.FinetuneConfig, model_dir: Path, resumed: Path | None,
                      labels: list[str], device: torch.device, say: Any
                      ) -> tuple[BertForTokenClassification, FreezePlan]:
    """The token classifier on `device` and what trains: a frozen prefix (--freeze), or
    adapters on the base model (--lora R, or continued from --adapter DIR; resumed from
    last/adapter). Resumed without adapters: last/ itself."""
    adapter = None
    if cfg.lora or cfg.adapter:
        adapter = resumed / "last" / ADAPTER_DIR if resumed else cfg.adapter
    directory = resumed / "last" if resumed and adapter is None else model_dir
    model = load_token_classifier(directory, labels, cfg).to(device)
    plan = freeze(model, cfg.freeze) if not (cfg.lora or adapter) else setup_lora(
        model, cfg.lora, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, cfg.lora_layers,
        adapter)
    trainable, total = num_parameters(model, trainable_only=True), num_parameters(model)
    say(f"model: {directory}; freeze: {plan.policy}; parameters: {trainable:,} trainable of "
        f"{total:,} ({trainable / total:.1%})")
    return model, plan


def build_token_cache(cfg: F.FinetuneConfig, model: BertForTokenClassification,
                      plan: FreezePlan, windows: list[T.Window], tokenizer: Any,
                      device: torch.device, say: Any) -> PrefixCache | None:
    """The frozen prefix's outputs for every training window, computed once (--freeze with
    the cache, or the layers below the lowest adapter); None when nothing is frozen."""
    if not (plan.frozen and cfg.cache):
        return None
    started = time.perf_counter()
    ids = [torch.tensor(w.input_ids) for w in windows]
    data = Encoded(ids, [torch.zeros_like(t) for t in ids], torch.zeros(len(ids)),
                   tokenizer.pad_token_id)
    cache = PrefixCache(model, data, plan.frozen_layers, cfg.eval_batch_size, device)
    say(f"cached the frozen prefix (embeddings + {plan.frozen_layers} layers) of the training "
        f"windows: {cache.nbytes / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")
    return cache


def load_token_classifier(directory: str | Path, labels: list[str], cfg: F.FinetuneConfig
                          ) -> BertForTokenClassification:
    model = BertForTokenClassification.from_pretrained(
        directory, num_labels=len(labels), attn_backend=cfg.attn_backend,
        allow_missing_head=True)
    if cfg.max_length > model.config.max_position_embeddings:
        raise MinitfError(f"--max-length {cfg.max_length} exceeds the model's "
                          f"max_position_embeddings ({model.config.max_position_embeddings})")
    model.config.id2label = dict(enumerate(labels))
    return model


def _batches(cfg: F.FinetuneConfig, windows: list[T.Window]) -> Any:
    lengths = torch.tensor([len(w.input_ids) for w in windows])
    return lambda epoch: batch_plan(lengths, cfg.batch_size, epoch, cfg.seed)


def _loss(windows: list[T.Window], tokenizer: Any, plan: FreezePlan, cache: PrefixCache | None,
          device: torch.device) -> Any:
    def loss(model: Any, shard: distributed.Shard) -> torch.Tensor:
        rows = [windows[i] for i in shard.rows]
        width = max(len(w.input_ids) for w in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full_like(ids, T.IGNORE)
        mask = torch.zeros_like(ids)
        for r, w in enumerate(rows):
            ids[r, :len(w.input_ids)] = torch.tensor(w.input_ids)
            labels[r, :len(w.labels)] = torch.tensor(w.labels)
            mask[r, :len(w.input_ids)] = 1
        batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        logits = classifier_logits(model, batch, plan, cache, shard.rows)  # frozen: from cache
        # The mean over the global batch's labelled positions, exact under torchrun too: this
        # rank's sum, over the count of every rank's (known from the windows).
        total = token_classification_loss(logits.float(), labels.to(device), reduction="sum")
        return shard.mean(total, sum(windows[i].labelled for i in shard.batch or shard.rows))
    return loss


def checkpoint_files(cfg: F.FinetuneConfig, model: BertForTokenClassification, tokenizer: Any,
                     lexicon: Lexicon | None) -> Any:
    """Task.save: the model's Hugging Face directory (with adapters: merged, and best/adapter
    in PEFT's format), and the lexicon beside it when there is one (segment / tag)."""
    save = (merged_model_files(model, tokenizer, cfg.model) if lora_modules(model)
            else model_files(model, tokenizer))

    def write(directory: Path) -> None:
        save(directory)
        if lexicon is not None:
            write_lexicon(Path(directory) / LEXICON_FILE, lexicon)
    return write


def pick_lexicon_weight(cfg: F.FinetuneConfig, best: Path, validation: T.Sentences | None,
                        lexicon: Lexicon) -> dict[str, Any]:
    """The LEXICON_WEIGHTS' validation scores (the model run once, decoded for each weight);
    the best weight goes into best/config.json (ties: the smaller weight). Without validation
    sentences nothing is written: the decoder uses DEFAULT_LEXICON_WEIGHT."""
    metric = SELECT_METRICS[cfg.task][0]
    write_lexicon(best / LEXICON_FILE, lexicon)   # (a run resumed after it finished lacks it)
    tagger = TokenTagger.from_pretrained(best, max_length=cfg.max_length,
                                         batch_size=cfg.eval_batch_size)
    items = [s for s in validation.items if s.units] if validation else []
    scores: dict[float, float] = {}
    if items:
        rows = tagger.scores(items)
        for weight in LEXICON_WEIGHTS:
            tagger.lexicon_weight = weight
            scores[weight] = score_decoded(cfg.task, tagger, items, rows, lexicon)[metric]
    if not scores:
        return {"metric": metric, "scores": scores, "chosen": DEFAULT_LEXICON_WEIGHT}
    chosen = max(scores, key=lambda w: (scores[w], -w))
    config = json.loads((best / "config.json").read_text(encoding="utf-8"))
    config["minitf_lexicon_weight"] = chosen
    write_text(best / "config.json", json.dumps(config, indent=2) + "\n")
    return {"metric": metric, "scores": scores, "chosen": chosen}


def score(task: str, tagger: TokenTagger, data: T.Sentences, lexicon: Collection[str]
          ) -> dict[str, Any]:
    """The task's scores on `data` (empty sentences skipped), plus position accuracy."""
    items = [s for s in data.items if s.units]
    return score_decoded(task, tagger, items, tagger.scores(items), lexicon)


def score_decoded(task: str, tagger: TokenTagger, items: list[T.Sentence],
                  rows: list[list[torch.Tensor]], lexicon: Collection[str]) -> dict[str, Any]:
    """score(), from the sentences' logits (tagger.scores)."""
    predicted = tagger.decode(rows, items)
    gold = [s.tags for s in items]
    right = sum(p == g for ps, gs in zip(predicted, gold, strict=True)
                for p, g in zip(ps, gs, strict=True))
    total = sum(len(g) for g in gold)
    # The loss of the stitched logits: each position once, as scored.
    index = {name: i for i, name in enumerate(tagger.labels)}
    logits = torch.stack([r for sentence in rows for r in sentence]) if total else None
    targets = torch.tensor([index[t] for g in gold for t in g])
    loss = float(torch.nn.functional.cross_entropy(logits, targets)) if total else 0.0
    out: dict[str, Any] = {"loss": loss, "accuracy": right / total if total else 0.0}
    if task == "ner":
        return {**out, **M.entity_scores(gold, predicted)}
    words = M.segmentation_scores(gold, predicted, [s.text for s in items], lexicon)
    out.update({"f1": words["f1"], "precision": words["precision"],
                "recall": words["recall"], "oov_recall": words["oov_recall"],
                "iv_recall": words["iv_recall"]})
    if task == "tag":
        tags = M.tagging_scores(gold, predicted)
        out.update({"tag_accuracy": tags["accuracy"], "joint_f1": tags["joint_f1"]})
    return out


def describe_lexicon(weights: dict[str, Any]) -> str:
    """pick_lexicon_weight's result, as a progress line."""
    if not weights["scores"]:
        return (f"lexicon weight {weights['chosen']:g} (the default: no validation sentences to "
                "pick one)")
    return (f"lexicon weight {weights['chosen']:g} (validation {weights['metric']} by weight: "
            + ", ".join(f"{w:g}: {v:.4f}" for w, v in weights["scores"].items()) + ")")


def describe(metrics: dict[str, Any]) -> str:
    names = ("f1", "oov_recall", "iv_recall", "tag_accuracy", "joint_f1", "accuracy")
    return ", ".join(f"{n} {metrics[n]:.4f}" for n in names if metrics.get(n) is not None)
