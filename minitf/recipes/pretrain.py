"""`minitf pretrain`: masked-language-model pre-training of a BERT, from scratch or continued.

The recipe (Devlin et al., 2019, §3.1 and appendix A.2; RoBERTa's packing), top to bottom:

    1. data      read the --train files (one document per line, or a CSV/TSV/JSONL text
                 column), tokenize, pack into full --max-length blocks (minitf/data/mlm.py);
                 validation: --validation, else a seeded share of the documents held out
    2. model     from scratch: BertForMaskedLM of a --config shape (Google's small BERTs)
                 with the --tokenizer's vocabulary; or --model DIR to continue pre-training
    3. masking   15% of the ordinary tokens, 80/10/10, re-drawn every epoch, seeded per block
    4. optimizer AdamW, linear warmup then linear decay to 0, gradient clipping
    5. length    --max-steps, --epochs or --time-budget MINUTES: the budget is turned into a
                 number of steps by timing a few steps first, so that the learning rate
                 decays to 0 as the budget runs out
    6. loop      the shared engine (minitf/train/loop.py): held-out masked loss, masked-token
                 accuracy and perplexity every --eval-every steps, checkpoints, Ctrl-C,
                 exact --resume, NaN stop, torchrun
    7. the end   the final model in --output itself: config.json, model.safetensors and the
                 tokenizer files, a Hugging Face BertForMaskedLM directory that
                 `minitf finetune --model DIR` and transformers load

`--max-steps 0` writes the initialised model (the from-scratch baseline of the same shape and
tokenizer) after one evaluation.

`--objective electra` swaps the model, the loss, the metrics and the output for ELECTRA's
replaced-token detection (minitf/recipes/pretrain_electra.py, minitf/model/electra.py); the
data, masking, schedule and engine stay these.

Python:  from minitf.recipes.pretrain import PretrainConfig, pretrain
         pretrain(PretrainConfig(train=["corpus.txt"], tokenizer="tok", output="out"))
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitf.data import mlm
from minitf.errors import MinitfError
from minitf.io import staged_files
from minitf.model.bert import BertForMaskedLM, num_parameters
from minitf.model.config import SHAPES, BertConfig
from minitf.model.electra import Electra
from minitf.model.init import sinusoid_positions_
from minitf.model.precision import pick_device
from minitf.model.weights import model_files
from minitf.recipes import options as O
from minitf.run_folder import RunFolder
from minitf.train import distributed
from minitf.train.checkpoint import Outputs
from minitf.train.loop import Schedule, Task, Trainer
from minitf.train.optim import build_optimizer, linear_schedule
from minitf.train.plots import plot_pretraining
from minitf.train.progress import Progress
from minitf.train.step import TrainStep

CALIBRATION_STEPS = 3   # timed steps (after one warm-up step) that turn a budget into steps


@dataclass
class PretrainConfig:
    """The recipe's settings: each field is an option of minitf/recipes/options.py (its flag,
    help, check and whether --resume must match come from there)."""

    train: list[str] = O.TRAIN.field(nargs="+", metavar="FILE", help="text files (one "
                                     "document per line) or CSV/TSV/JSONL files")
    output: str = O.OUTPUT.field(help="directory for the model, checkpoints and metrics")
    tokenizer: str | None = O.TOKENIZER.field()
    model: str | None = O.MODEL.field(None, help="a BERT directory to continue pre-training")
    config: str = O.SHAPE.field()
    layers: int | None = O.LAYERS.field()
    hidden: int | None = O.HIDDEN.field()
    heads: int | None = O.HEADS.field()
    intermediate: int | None = O.INTERMEDIATE.field()
    dropout: float = O.DROPOUT.field()
    init_std: float = O.INIT_STD.field()
    position_init: str = O.POSITION_INIT.field()
    validation: str | None = O.VALIDATION.field(help="held-out text (default: hold out "
                                                "--validation-fraction of the --train "
                                                "documents)")
    validation_fraction: float = O.VALIDATION_FRACTION.field(0.05)
    max_eval_blocks: int = O.MAX_EVAL_BLOCKS.field()
    text_column: str | None = O.TEXT_COLUMN.field(
        resume=True, help="the text column of CSV/TSV/JSONL files")
    max_length: int = O.MAX_LENGTH.field(help="tokens per block, [CLS] and [SEP] included")
    mlm_probability: float = O.MLM_PROBABILITY.field()
    objective: str = O.OBJECTIVE.field()
    batch_size: int = O.BATCH_SIZE.field(64, help="blocks per step")
    lr: float = O.LR.field(5e-4)
    weight_decay: float = O.WEIGHT_DECAY.field()
    warmup_ratio: float = O.WARMUP_RATIO.field(0.06)
    max_grad_norm: float = O.MAX_GRAD_NORM.field()
    epochs: int | None = O.EPOCHS.field(None, group=O.MAX_STEPS.group, type=int,
                                        help="passes over the training blocks")
    max_steps: int | None = O.MAX_STEPS.field()
    time_budget: float | None = O.TIME_BUDGET.field()
    eval_every: int | None = O.EVAL_EVERY.field()
    seed: int = O.SEED.field()
    resume: bool = O.RESUME.field()
    overwrite: bool = O.OVERWRITE.field()
    save_every: int = O.SAVE_EVERY.field(help="also checkpoint every N steps")
    device: str = O.DEVICE.field()
    precision: str = O.TRAINING_PRECISION.field(resume=False)
    attn_backend: str = O.ATTN_BACKEND.field()
    progress: str = O.PROGRESS.field()
    stop_after_steps: int | None = O.STOP_AFTER_STEPS.field()
    dist_timeout: float = O.DIST_TIMEOUT.field()
    eval_batch_size: int = 128          # not a flag: blocks per evaluation forward pass


@dataclass
class PretrainResult:
    output: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None   # the last validation metrics
    total_steps: int = 0
    interrupted: bool = False
    train_seconds: float = 0.0
    stop_signal: int = 0  # what interrupted it: signal.SIGINT (Ctrl-C) or SIGTERM


# ---------------------------------------------------------------------------------------------
# 2. Model and tokenizer
# ---------------------------------------------------------------------------------------------


def model_config(cfg: PretrainConfig, tokenizer: Any) -> BertConfig:
    if cfg.config not in SHAPES:
        raise MinitfError(f"--config {cfg.config!r}: choose one of {', '.join(SHAPES)}")
    layers, hidden, heads = SHAPES[cfg.config]
    layers, hidden, heads = cfg.layers or layers, cfg.hidden or hidden, cfg.heads or heads
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=cfg.intermediate or 4 * hidden,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=max(512, cfg.max_length), pad_token_id=tokenizer.pad_token_id,
        initializer_range=cfg.init_std)
    refuse_unaffordable(config)
    return config


def refuse_unaffordable(config: BertConfig) -> None:
    """Refuse a shape whose training state (weights, gradients, two Adam moments: 16 bytes a
    parameter) exceeds this machine's memory, before a tensor is made."""
    h, i = config.hidden_size, config.intermediate_size
    params = ((config.vocab_size + config.max_position_embeddings + 2) * h + h * h
              + config.num_hidden_layers * (4 * h * h + 2 * h * i + 9 * h + i))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 16 * params > memory:
        raise MinitfError(f"--layers {config.num_hidden_layers} --hidden {h} --intermediate {i}: "
                          f"{params / 1e9:.1f} billion parameters need about "
                          f"{16 * params / 2**30:,.0f} GiB to train (weights, gradients, Adam), "
                          f"more than this machine's {memory / 2**30:,.0f} GiB; choose a "
                          "smaller shape")


def load_model_and_tokenizer(cfg: PretrainConfig, resume_dir: Path | None
                             ) -> tuple[BertForMaskedLM | Electra, Any, str]:
    """(model, tokenizer, where the tokenizer came from): from scratch or from --model."""
    from minitf.paths import resolve_model_dir
    from minitf.tokenizers.wordpiece import load_tokenizer

    if (cfg.model is None) == (cfg.tokenizer is None) and cfg.model is None:
        raise MinitfError("give --tokenizer DIR (and --config) to pre-train from scratch, or "
                          "--model DIR to continue pre-training a BERT")
    tok_dir = resolve_model_dir(cfg.tokenizer or cfg.model)
    tokenizer = load_tokenizer(tok_dir)
    if cfg.objective == "electra":
        from minitf.recipes.pretrain_electra import load_electra
        model = load_electra(cfg, tokenizer, resume_dir)
    elif resume_dir is not None:
        model = BertForMaskedLM.from_pretrained(resume_dir, attn_backend=cfg.attn_backend)
    elif cfg.model is not None:
        model = BertForMaskedLM.from_pretrained(resolve_model_dir(cfg.model),
                                                attn_backend=cfg.attn_backend,
                                                allow_missing_head=True)
    else:
        torch.manual_seed(cfg.seed)
        model = BertForMaskedLM(model_config(cfg, tokenizer), attn_backend=cfg.attn_backend)
    if cfg.position_init == "sinusoid" and resume_dir is None and cfg.model is None:
        encoder = model.discriminator if cfg.objective == "electra" else model.bert
        sinusoid_positions_(encoder.embeddings.position_embeddings)  # ELECTRA's are shared
    check_compatible(tokenizer, model.config, str(tok_dir), cfg.max_length)
    return model, tokenizer, str(tok_dir)


def check_compatible(tokenizer: Any, config: BertConfig, source: str, max_length: int) -> None:
    """The tokenizer's ids must index the model's embeddings, and its [PAD] be the model's."""
    if tokenizer.vocab_size != config.vocab_size:
        raise MinitfError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the "
                          f"model's vocab_size is {config.vocab_size}; use the tokenizer the "
                          "model was trained with (the files in its directory)")
    if tokenizer.pad_token_id != config.pad_token_id:
        raise MinitfError(f"{source}: the tokenizer's [PAD] id is {tokenizer.pad_token_id} but "
                          f"the model's pad_token_id is {config.pad_token_id}; the tokenizer "
                          "does not belong to this model")
    if max_length > config.max_position_embeddings:
        raise MinitfError(f"--max-length {max_length} exceeds the model's "
                          f"max_position_embeddings ({config.max_position_embeddings}); use "
                          f"--max-length {config.max_position_embeddings} or less")


# ---------------------------------------------------------------------------------------------
# 3.-6. The run
# ---------------------------------------------------------------------------------------------


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run the recipe; under torchrun every process runs it, data-parallel."""
    with distributed.start(cfg.device, cfg.dist_timeout) as ctx, \
            RunFolder(cfg.output, "pretrain", ctx.main) as folder:
        return _pretrain(cfg, ctx, folder)


def _pretrain(cfg: PretrainConfig, ctx: distributed.Context,
              folder: RunFolder) -> PretrainResult:
    progress = Progress(cfg.progress if ctx.main else "off")
    out = folder.check(cfg.resume, cfg.overwrite, holds=("last", "config.json"))
    state = O.resume_state(cfg, out)
    check_settings(cfg)
    ctx.check_batch_size(cfg.batch_size)
    device = ctx.local_device(pick_device(cfg.device))
    model, tokenizer, tok_source = load_model_and_tokenizer(
        cfg, out / "last" if state else None)
    policy = mlm.MaskingPolicy.for_tokenizer(tokenizer, cfg.mlm_probability)
    corpus = mlm.load_corpus(cfg.train, tokenizer, policy, cfg.max_length, cfg.text_column,
                             cfg.validation, cfg.validation_fraction, cfg.max_eval_blocks,
                             cfg.seed, progress.say)
    if state is not None and state["fingerprint"] != corpus.fingerprint:
        raise MinitfError(f"the --train files changed since {out / 'last'} was written; "
                          "--resume needs the same corpus")
    out = folder.open()  # only now (created, marked, locked): bad input leaves nothing behind
    model.to(device)
    c = model.config
    progress.say(f"model: {c.num_hidden_layers} layers × {c.hidden_size} hidden, "
                 f"{c.num_attention_heads} heads, vocabulary {c.vocab_size} ({tok_source}); "
                 f"{num_parameters(model):,} parameters"
                 + (f", generator of {model.generator.config.num_hidden_layers} layers "
                    "included (ELECTRA)" if cfg.objective == "electra" else ""))
    outputs = Outputs(out, enabled=ctx.main)
    run_class = Run
    if cfg.objective == "electra":
        from minitf.recipes.pretrain_electra import ElectraRun as run_class
    run = run_class(cfg, model, tokenizer, policy, corpus, ctx, device, outputs, progress)
    if cfg.max_steps == 0:
        return run.write_initial()
    return run.train(state)


class Run:
    """One pre-training run: batches, loss, evaluation, the step budget and the engine."""

    def __init__(self, cfg: PretrainConfig, model: BertForMaskedLM, tokenizer: Any,
                 policy: mlm.MaskingPolicy, corpus: mlm.Corpus, ctx: distributed.Context,
                 device: torch.device, outputs: Outputs, progress: Progress):
        self.cfg, self.model, self.tokenizer, self.policy = cfg, model, tokenizer, policy
        self.corpus, self.ctx, self.device = corpus, ctx, device
        self.outputs, self.progress = outputs, progress
        self.n = len(corpus.train)
        self.steps_per_epoch = math.ceil(self.n / cfg.batch_size)

    # -- the engine's Task ------------------------------------------------------------------

    def describe(self, metrics: dict[str, Any]) -> str:
        return describe(metrics)

    def batches(self, epoch: int) -> list[list[int]]:
        """Global batches of block indices, shuffled per (seed, epoch)."""
        order = mlm.epoch_order(self.n, self.cfg.seed, epoch)
        size = self.cfg.batch_size
        return [order[i:i + size] for i in range(0, len(order), size)]

    def loss(self, model: BertForMaskedLM, shard: distributed.Shard) -> torch.Tensor:
        """shard.mean of the per-block mean cross-entropy over the block's masked tokens
        (each block weighs the same, so the loss is exact under data parallelism too)."""
        batch = self.policy.mask(self.corpus.train, shard.rows, self.cfg.seed, shard.epoch)
        return shard.mean(self.masked_losses(model, batch)[0].sum())

    def masked_losses(self, model: BertForMaskedLM, batch: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per block: mean masked cross-entropy (B,); and per masked token: loss (M,) and
        whether the argmax was right (M,)."""
        ids, labels = batch["input_ids"].to(self.device), batch["labels"].to(self.device)
        out = model(input_ids=ids, labels=labels)         # logits (M, V) at masked tokens only
        token_loss, logits = out.token_loss, out.logits   # the model's own loss, per token
        chosen = labels != mlm.IGNORE_INDEX                              # (B, L)
        targets = labels[chosen]                                         # (M,)
        row = chosen.nonzero()[:, 0]                                     # (M,) block of each
        sums = torch.zeros(len(ids), device=ids.device).index_add_(0, row, token_loss)
        per_block = sums / chosen.sum(1).clamp(min=1)
        return per_block, token_loss.detach(), logits.argmax(-1) == targets

    def evaluate(self) -> dict[str, Any]:
        """Masked loss, accuracy and perplexity on the validation blocks, with fixed masks."""
        blocks = self.corpus.validation
        if len(blocks) == 0:
            return {}
        rows = list(range(self.ctx.rank, len(blocks), self.ctx.world))
        sums = torch.zeros(len(rows), 4)  # per block: loss sum, correct, masked, top-token hits
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(rows), self.cfg.eval_batch_size):
                part = rows[i:i + self.cfg.eval_batch_size]
                batch = self.policy.mask(blocks, part, self.cfg.seed, 0, split=mlm.VALIDATION)
                with torch.autocast(self.device.type, **self.step_autocast):
                    _, token_loss, right = self.masked_losses(self.model, batch)
                chosen = batch["labels"] != mlm.IGNORE_INDEX
                row = chosen.nonzero()[:, 0]
                stats = torch.stack([token_loss.cpu(), right.float().cpu(), torch.ones_like(
                    token_loss.cpu()), (batch["labels"][chosen] == self.corpus.top_token).float()],
                    dim=1)
                sums[i:i + len(part)] = torch.zeros(len(part), 4).index_add_(0, row, stats)
        total = self.ctx.gather_rows(sums, len(blocks)).sum(0)
        loss = float(total[0] / total[2])
        return {"loss": loss, "accuracy": float(total[1] / total[2]),
                "perplexity": math.exp(min(loss, 50.0)), "masked_tokens": int(total[2]),
                "most_frequent_token_accuracy": float(total[3] / total[2])}

    # -- the schedule -----------------------------------------------------------------------

    @property
    def step_autocast(self) -> dict[str, Any]:
        from minitf.train.step import autocast_settings
        return autocast_settings(self.cfg.precision, self.device)

    def budget_steps(self, minutes: float) -> tuple[int, float, int]:
        """(steps, seconds left, evaluations) that fit a time budget: a warm-up pass and
        CALIBRATION_STEPS timed forward/backward passes (no update; the RNG is restored), and
        one evaluation; then up to 10 evaluations, taking at most ~10% of what is left, and
        the steps that fit into the rest."""
        clock = time.perf_counter()
        rng = torch.get_rng_state()
        self.model.train()
        times = []
        for rows in self.batches(0)[:CALIBRATION_STEPS + 1]:
            started = time.perf_counter()
            with torch.autocast(self.device.type, **self.step_autocast):
                loss = self.loss(self.model, self.ctx.shard(rows))
            loss.backward()
            self.model.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - started)
        torch.set_rng_state(rng)
        step_s = sorted(times[1:])[len(times[1:]) // 2] * 1.05  # + the optimizer's share
        started = time.perf_counter()
        initial = self.evaluate()
        eval_s = time.perf_counter() - started
        left = minutes * 60 - (time.perf_counter() - clock)
        evals = min(10, max(1, int(0.1 * left / max(eval_s, 1e-9)))) if initial else 0
        steps = int((left - evals * eval_s) / step_s)
        # Every rank must run the same schedule: rank 0's estimate.
        plan = self.ctx.gather_rows(torch.tensor([[steps, evals]]), self.ctx.world)[0]
        steps, evals = int(plan[0]), int(plan[1])
        if steps < 1:
            raise MinitfError(f"--time-budget {minutes} min is too short: one step takes "
                              f"{step_s:.1f} s and an evaluation {eval_s:.1f} s here; give a "
                              "larger budget, a smaller --batch-size or a smaller model")
        if initial:
            self.progress.say(f"initial model: {self.describe(initial)}")
        self.progress.say(f"time budget {minutes:g} min: {step_s:.2f} s per step, "
                          f"{eval_s:.1f} s per evaluation → {steps} steps, {evals} "
                          "evaluations")
        return steps, left, evals

    def plan(self, state: dict[str, Any] | None) -> tuple[int, Schedule]:
        cfg = self.cfg
        if state is not None:
            total, left, evals = (state["total_steps"], state["budget_seconds"],
                                  state["evaluations"])
        elif cfg.time_budget:
            total, left, evals = self.budget_steps(cfg.time_budget)
        else:
            total, left, evals = min(x for x in (cfg.max_steps, cfg.epochs and cfg.epochs *
                                                 self.steps_per_epoch) if x), None, 10
        self.total_steps, self.budget_seconds, self.evaluations = total, left, evals
        schedule = Schedule(
            epochs=cfg.epochs, max_steps=total,
            # a safety net: the steps were sized to the budget; a machine that slows down
            # mid-run stops 10% (+10 s) after it
            minutes=(left * 1.1 + 10) / 60 if left else None,
            stop_after_steps=cfg.stop_after_steps, eval_every=cfg.eval_every or
            max(1, total // max(evals, 1)), eval_each_epoch=False, save_every=cfg.save_every,
            select_metric="loss" if len(self.corpus.validation) else None,
            higher_is_better=False)
        return total, schedule

    # -- the run ----------------------------------------------------------------------------

    def train(self, state: dict[str, Any] | None) -> PretrainResult:
        cfg = self.cfg
        total, schedule = self.plan(state)
        optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, self.device)
        scheduler = linear_schedule(optimizer, round(cfg.warmup_ratio * total), total)
        step = TrainStep(optimizer, scheduler, cfg.max_grad_norm, self.device, cfg.precision,
                         mean_loss=self.ctx.mean_loss)
        task = Task(model=self.model, batches=self.batches, loss=self.loss, save=self.save,
                    evaluate=self.evaluate if len(self.corpus.validation) else None,
                    describe=self.describe, throughput=("tokens", cfg.max_length))
        trainer = Trainer(task, step, schedule, self.ctx, self.outputs, self.progress,
                          self.device, extra_state=self.extra_state)
        if state is not None:
            trainer.load_state_dict(state)
            self.progress.say(f"resuming at step {state['loop']['global_step']} of {total}")
        else:
            self.progress.say(f"training: {total} steps of {cfg.batch_size} blocks "
                              f"({total * cfg.batch_size * cfg.max_length:,} tokens, "
                              f"{total / self.steps_per_epoch:.2f} passes over the corpus)")
        loop = trainer.run()
        result = PretrainResult(self.outputs.directory, loop.history, total_steps=total,
                                interrupted=loop.interrupted, train_seconds=loop.train_seconds,
                                stop_signal=loop.stop_signal)
        evaluated = [r["validation"] for r in loop.history if r.get("validation")]
        result.final = evaluated[-1] if evaluated else None
        if not loop.interrupted:
            self.publish()
        return result

    def write_initial(self) -> PretrainResult:
        """--max-steps 0: the initialised model, evaluated once, written to --output."""
        metrics = self.evaluate()
        record = {"type": "eval", "step": 0, "epoch": 0.0}
        if metrics:
            record["validation"] = metrics
            self.progress.say(f"initial model: {self.describe(metrics)}")
        self.outputs.truncate_metrics(0)
        self.outputs.log(record)
        self.publish()
        return PretrainResult(self.outputs.directory, [record], metrics or None)

    @property
    def save(self) -> Any:
        """Writes the model directory's files: weights, config.json, the tokenizer's files."""
        return model_files(self.model, self.tokenizer)

    def write_model(self, out: Path) -> None:
        with staged_files(out) as tmp:  # every file complete, then renamed in, config last
            self.save(tmp)

    def extra_state(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "fingerprint": self.corpus.fingerprint,
                "total_steps": self.total_steps, "budget_seconds": self.budget_seconds,
                "evaluations": self.evaluations}

    def publish(self) -> None:
        """The final model into --output itself (every file complete: written aside, then
        renamed into place), and the training curve next to it."""
        if not self.outputs.enabled:
            return
        out = self.outputs.directory
        self.write_model(out)
        plot_pretraining(out / "metrics.jsonl", out / "training.png")
        self.progress.say(f"saved the model: {out} (config.json, model.safetensors, tokenizer); "
                          f"metrics: {out / 'metrics.jsonl'}")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def describe(metrics: dict[str, Any]) -> str:
    return (f"masked loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, "
            f"perplexity {metrics['perplexity']:.1f}")


def check_settings(cfg: PretrainConfig) -> None:
    """Each option's own check (minitf/recipes/options.py), then the rules between options."""
    O.check_config(cfg)
    if not (cfg.epochs or cfg.max_steps is not None or cfg.time_budget):
        raise MinitfError("say how long to train: --max-steps N, --epochs N or --time-budget "
                          "MINUTES")
    if cfg.eval_batch_size < 1:
        raise MinitfError("eval_batch_size must be at least 1")
