"""`minitf pretrain --objective electra`: replaced-token detection (Clark et al., 2020).

The pre-training recipe (minitf/recipes/pretrain.py) with another model and loss; its data,
masking, schedule, engine, checkpoints and resume are the same:

    model     minitf/model/electra.py: a generator (a shallow BertForMaskedLM) and a
              discriminator (BertModel + a per-token head) sharing their embeddings; from
              scratch (--tokenizer, --config ...), or --model DIR: an ELECTRA output
    loss      per block: the generator's masked-LM loss + 50 × the discriminator's binary
              cross-entropy on "was this token replaced by a generator sample?"
    metrics   held-out: the generator's masked loss and accuracy, the discriminator's loss and
              its accuracy on the replaced tokens and on the original ones
    output    --output: the discriminator as a BERT encoder (config.json, model.safetensors,
              tokenizer) + discriminator_head.safetensors; --output/generator: the generator,
              a BertForMaskedLM directory (`minitf fill-mask --model OUT/generator`)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minitf.data import mlm
from minitf.io import atomic_directory, staged_files
from minitf.model.electra import DISC_WEIGHT, GENERATOR_DIR, Electra
from minitf.recipes.pretrain import PretrainConfig, Run, model_config
from minitf.train import distributed

# Per validation block: generator loss sum, right, masked tokens, most-frequent-token hits;
# discriminator loss sum, real tokens, right on replaced, replaced, right on original, original.
STATS = 10


def load_electra(cfg: PretrainConfig, tokenizer: Any, resume_dir: Path | None) -> Electra:
    """The pair: from the resumed checkpoint, --model DIR (an ELECTRA output) or scratch."""
    from minitf.paths import resolve_model_dir

    if resume_dir is not None:
        return Electra.from_pretrained(resume_dir, attn_backend=cfg.attn_backend)
    if cfg.model is not None:
        return Electra.from_pretrained(resolve_model_dir(cfg.model),
                                       attn_backend=cfg.attn_backend)
    torch.manual_seed(cfg.seed)
    return Electra.new(model_config(cfg, tokenizer), attn_backend=cfg.attn_backend)


def sample_seeds(rows: list[int], seed: int, epoch: int, split: int) -> list[int]:
    """A seed for each block's generator samples, from (seed, split, epoch, block) like its
    masks (minitf/data/mlm.py), and apart from them (the trailing 1)."""
    return [int(np.random.SeedSequence((seed, split, epoch, int(row), 1)).generate_state(1)[0])
            for row in rows]


def describe(metrics: dict[str, Any]) -> str:
    return (f"generator masked loss {metrics['mlm_loss']:.4f}, accuracy "
            f"{metrics['accuracy']:.4f}; discriminator loss {metrics['disc_loss']:.4f}, "
            f"accuracy on replaced tokens {metrics['replaced_accuracy']:.4f}, on original "
            f"tokens {metrics['original_accuracy']:.4f}")


class ElectraRun(Run):
    """Run with the ELECTRA model: its loss, its evaluation and its directory."""

    model: Electra
    describe = staticmethod(describe)

    def loss(self, model: Electra, shard: distributed.Shard) -> torch.Tensor:
        """shard.mean of the per-block ELECTRA losses (mlm + λ · disc, each a block mean)."""
        batch = self.policy.mask(self.corpus.train, shard.rows, self.cfg.seed, shard.epoch)
        seeds = sample_seeds(shard.rows, self.cfg.seed, shard.epoch, mlm.TRAIN)
        out = model(batch["input_ids"].to(self.device), batch["labels"].to(self.device), seeds)
        return shard.mean(out.loss.sum())

    def block_stats(self, batch: dict[str, torch.Tensor], seeds: list[int]) -> torch.Tensor:
        """(B, STATS) sums of one validation batch (see STATS)."""
        ids, labels = batch["input_ids"].to(self.device), batch["labels"].to(self.device)
        with torch.autocast(self.device.type, **self.step_autocast):
            out = self.model(ids, labels, seeds)
        chosen = labels != mlm.IGNORE_INDEX
        row = chosen.nonzero()[:, 0].cpu()
        top = (labels[chosen] == self.corpus.top_token).float()
        per_token = torch.stack([out.token_loss.float(), out.right.float(),
                                 torch.ones_like(top), top], dim=1).cpu()
        sums = torch.zeros(len(ids), STATS)
        sums[:, :4].index_add_(0, row, per_token)
        said = out.disc_logits > 0
        real, replaced = out.real, out.replaced
        sums[:, 4:] = torch.stack([
            out.disc_loss.float() * real.sum(1), real.sum(1), (said & replaced).sum(1),
            replaced.sum(1), (~said & ~replaced & real).sum(1), (~replaced & real).sum(1),
        ], dim=1).float().cpu()
        return sums

    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics with fixed masks and per-block seeded generator samples."""
        blocks = self.corpus.validation
        if len(blocks) == 0:
            return {}
        rows = list(range(self.ctx.rank, len(blocks), self.ctx.world))
        sums = torch.zeros(len(rows), STATS)
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(rows), self.cfg.eval_batch_size):
                part = rows[i:i + self.cfg.eval_batch_size]
                batch = self.policy.mask(blocks, part, self.cfg.seed, 0, split=mlm.VALIDATION)
                seeds = sample_seeds(part, self.cfg.seed, 0, mlm.VALIDATION)
                sums[i:i + len(part)] = self.block_stats(batch, seeds)
        t = self.ctx.gather_rows(sums, len(blocks)).sum(0).tolist()
        mlm_loss, disc_loss = t[0] / t[2], t[4] / t[5]
        return {"loss": mlm_loss + DISC_WEIGHT * disc_loss, "mlm_loss": mlm_loss,
                "accuracy": t[1] / t[2], "perplexity": math.exp(min(mlm_loss, 50.0)),
                "masked_tokens": int(t[2]), "most_frequent_token_accuracy": t[3] / t[2],
                "disc_loss": disc_loss, "disc_accuracy": (t[6] + t[8]) / t[5],
                "replaced_accuracy": t[6] / max(t[7], 1), "original_accuracy": t[8] / t[9],
                "replaced_fraction": t[7] / t[5]}

    @property
    def save(self) -> Any:
        """Writes an ELECTRA directory: discriminator, head, generator/, tokenizer files."""
        return self.model.writer(self.tokenizer)

    def write_model(self, out: Path) -> None:
        """The generator as a whole folder first (replacing an old one), then the top-level
        files, config.json last."""
        with atomic_directory(out / GENERATOR_DIR) as tmp:
            self.model.write_generator(tmp, self.tokenizer)
        with staged_files(out) as tmp:
            self.model.write_discriminator(tmp, self.tokenizer)
