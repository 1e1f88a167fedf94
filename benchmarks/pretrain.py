"""Pre-training: minitf vs transformers speed, and the learning curve of pre-training on Chinese.

    python benchmarks/pretrain.py speed               # ~3 minutes on a 2-core CPU
    python benchmarks/pretrain.py speed --quick       # one repeat, a smoke run
    python benchmarks/pretrain.py curve --budgets 0,5,15,30 --labels 500,2000,all

Results: benchmarks/results/pretrain-speed-<date>-cpu.md, pretrain-curve-<date>-cpu.md.

speed — masked-LM training steps (forward, loss, backward, AdamW) of the same "mini" BERT
(4 layers × 256 hidden, 4 heads, intermediate 1024, vocabulary 8,000, blocks of 128 tokens)
in minitf's BertForMaskedLM and transformers' BertForMaskedLM: the same initial weights
(transformers loads the directory minitf saved), the same batches and the same masks (minitf's
MaskingPolicy), in one process, fp32 and bf16 autocast, the two frameworks alternating repeat
after repeat; medians. minitf projects onto the vocabulary only at the masked positions
(~15% of them); transformers at every position, then ignores 85% of the result.
The token ids are random (uniform over the ordinary tokens): the speed of a step does not
depend on which ids they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, facts_block, machine_header, markdown_table  # noqa: E402

from minitf.config import BertConfig  # noqa: E402
from minitf.train.mlm import MaskingPolicy  # noqa: E402
from minitf.train.optim import build_optimizer  # noqa: E402

MINI = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
SPECIAL = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK], as minitf's sentencepiece layout
MASK_ID = 4


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


def cpu_facts() -> dict[str, str]:
    """What decides bf16 speed: the CPU's flags, and what torch dispatches to."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
    return {
        "cpu flags": ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted),
        "torch cpu capability": str(torch.backends.cpu.get_cpu_capability()),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def header(title: str, notes: list[str]) -> str:
    facts = {**machine_header(), **cpu_facts(),
             "command": "python " + " ".join(sys.argv),
             "load average at start": load_average()}
    return "\n\n".join([f"# {title}", facts_block(facts), *notes])


# ---------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------


def make_batches(config: BertConfig, n: int, batch_size: int, length: int
                 ) -> list[dict[str, torch.Tensor]]:
    """n batches of [CLS] random ordinary tokens [SEP], masked by minitf's policy."""
    policy = MaskingPolicy(config.vocab_size, MASK_ID, SPECIAL)
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(len(SPECIAL), config.vocab_size, (n * batch_size, length),
                           generator=generator)
    blocks[:, 0], blocks[:, -1] = 2, 3
    return [policy.mask(blocks, range(i * batch_size, (i + 1) * batch_size), seed=0, epoch=0)
            for i in range(n)]


def build_models(config: BertConfig, directory: Path) -> dict[str, torch.nn.Module]:
    """minitf's model, saved; transformers' loaded from what minitf saved (same weights)."""
    import transformers

    from minitf.model import BertForMaskedLM

    torch.manual_seed(0)
    ours = BertForMaskedLM(config)
    ours.save_pretrained(directory)
    theirs = transformers.BertForMaskedLM.from_pretrained(directory)
    return {"minitf": ours.train(), "transformers": theirs.train()}


def check_same_loss(models: dict[str, torch.nn.Module], batch: dict[str, torch.Tensor]) -> float:
    """|loss difference| in eval mode (no dropout) on one batch: same model, same masks."""
    losses = []
    for model in models.values():
        model.eval()
        with torch.no_grad():
            losses.append(float(model(input_ids=batch["input_ids"], labels=batch["labels"]).loss))
        model.train()
    return abs(losses[0] - losses[1])


def time_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               batches: list[dict[str, torch.Tensor]], bf16: bool) -> tuple[float, float]:
    """Seconds and CPU-seconds (all threads) of one pass of training steps over `batches`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(args: argparse.Namespace) -> Path:
    config = BertConfig(vocab_size=8000, max_position_embeddings=512, **MINI)
    batches = make_batches(config, args.steps, args.batch_size, args.length)
    tokens = args.steps * args.batch_size * args.length
    masked = sum(int((b["labels"] != -100).sum()) for b in batches)
    rows, loads, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(config, Path(tmp) / "mini")
    loss_gap = check_same_loss(models, batches[0])
    for precision in ("fp32", "bf16"):
        runs = {name: {"wall": [], "cpu": []} for name in models}
        optimizers = {name: build_optimizer(m, 1e-4) for name, m in models.items()}
        for name, model in models.items():  # warm-up: allocator, kernels, optimizer state
            time_steps(model, optimizers[name], batches[:1], precision == "bf16")
        for repeat in range(args.repeats):
            order = list(models) if repeat % 2 == 0 else list(models)[::-1]
            for name in order:
                wall, cpu = time_steps(models[name], optimizers[name], batches,
                                       precision == "bf16")
                runs[name]["wall"].append(wall)
                runs[name]["cpu"].append(cpu)
            loads.append(os.getloadavg()[0])
        base = statistics.median(runs["transformers"]["wall"])
        base_cpu = statistics.median(runs["transformers"]["cpu"])
        for name, run in runs.items():
            wall, cpu = statistics.median(run["wall"]), statistics.median(run["cpu"])
            rows.append([precision, name, f"{tokens / wall:,.0f}",
                         f"{tokens / max(run['wall']):,.0f}–{tokens / min(run['wall']):,.0f}",
                         f"{base / wall:.2f}×", f"{tokens / cpu:,.0f}", f"{base_cpu / cpu:.2f}×"])
        print("\n".join(" | ".join(r) for r in rows[-2:]), flush=True)
    notes = [
        f"Masked-LM training steps, \"mini\" BERT ({MINI['num_hidden_layers']} layers × "
        f"{MINI['hidden_size']} hidden, {MINI['num_attention_heads']} heads, intermediate "
        f"{MINI['intermediate_size']}, vocabulary {config.vocab_size}), batch {args.batch_size} "
        f"× {args.length} tokens, {masked / tokens:.1%} of them masked (80/10/10), dropout on, "
        "AdamW (fused) + clipping at 1.0. The same initial weights, batches and masks for both; "
        f"each repeat is one pass over {args.steps} batches ({tokens:,} tokens) after one "
        f"warm-up step; {args.repeats} repeats, the frameworks alternating; medians. "
        "tokens/CPU-s divides by the process's CPU time (all threads), which other work on the "
        "machine disturbs less than wall time.",
        f"Check: eval-mode masked-LM loss of the two models on the first batch differs by "
        f"{loss_gap:.2e}.",
        f"1-minute load average during measurements: {min(loads):.2f}–{max(loads):.2f} "
        f"({os.cpu_count()} cores; above that, other processes competed for the CPU — this "
        f"machine is shared with other jobs). Total run: {time.perf_counter() - started:.0f} s.",
        markdown_table(["precision", "framework", "tokens/s (median)", "range", "vs transformers",
                        "tokens/CPU-s", "vs transformers (CPU time)"], rows),
    ]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = RESULTS / f"pretrain-speed-{date}-cpu.md"
    out.write_text(header("Masked-LM pre-training speed: minitf vs transformers (CPU)", notes)
                   + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed", help="tokens/s of masked-LM training, minitf vs transformers")
    s.add_argument("--steps", type=int, default=4, help="batches per timed pass")
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--length", type=int, default=128)
    s.add_argument("--quick", action="store_true", help="1 repeat of 2 steps")
    args = parser.parse_args()
    if args.part == "speed":
        if args.quick:
            args.steps, args.repeats = 2, 1
        print(f"wrote {speed(args)}")


if __name__ == "__main__":
    main()
