"""Fine-tuning speed and accuracy: minitf vs transformers on the same CPU, model and batches.

    python benchmarks/finetune.py              # ~9 minutes on a 2-core CPU
    python benchmarks/finetune.py --threads 1  # one torch thread per run: steadier on a busy box
    python benchmarks/finetune.py --quick      # one repeat (a smoke run, ~3 minutes)

Results: benchmarks/results/finetune-<date>-cpu[-threadsN].{md,json}.

Every measurement runs in its own child process (so peak memory is per measurement), and
minitf and transformers alternate, repeat after repeat; the table reports medians.

Speed (training samples/s, MiniLM, batch 32, max_length 128, AdamW fused, fp32):
- full fine-tuning on SST-2 (single sentences) and MRPC (sentence pairs)
- embeddings + layers 0-3 frozen (`layers:4`): transformers with requires_grad=False;
  minitf without the cache, and with it — epoch 1 (computing the cache for the epoch's data,
  then training) and epoch >= 2 (training from the cache)
- "same batches": both get identical length-bucketed batches (minitf's batch plan);
  "own batching": transformers with random batches padded to their longest example (what
  DataCollatorWithPadding gives), minitf with its length-bucketed plan

Accuracy: both fine-tune MiniLM with the same recipe (AdamW, linear warmup/decay, clipping,
same batches and steps) on an SST-2 subset and are evaluated on a held-out SST-2 slice.
Data: ../shared/data/{sst2,mrpc}/train.tsv (GLUE training files, read in place).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, facts_block, machine_header, markdown_table  # noqa: E402

from minitf.paths import packaged_model_dir, resolve_model_dir  # noqa: E402
from minitf.train import data as D  # noqa: E402
from minitf.train.freeze import PrefixCache, classifier_logits, freeze, train_mode  # noqa: E402
from minitf.train.optim import build_optimizer, linear_schedule  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HELD_OUT = 2000  # the last rows of SST-2's train.tsv: evaluation only, never trained on


# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------


def load(dataset: str, n: int, max_length: int = 128, offset: int = 0,
         sample: bool = False) -> D.Encoded:
    """n rows from `offset` (sample=True: a seeded random sample of the training rows)."""
    from minitf.tokenizer import Tokenizer
    file = SHARED / dataset / "train.tsv"
    if not file.is_file():
        raise SystemExit(f"{file} is missing; the benchmark reads GLUE's training files there")
    examples = D.read_examples(file)
    examples, ids = D.label_ids(examples, ["0", "1"])
    usable = len(examples) - (HELD_OUT if dataset == "sst2" else 0)
    if offset < 0:  # SST-2's last HELD_OUT rows: the evaluation slice
        pick = list(range(usable, len(examples)))
    elif sample:
        generator = torch.Generator().manual_seed(1234)
        pick = sorted(torch.randperm(usable, generator=generator)[:n].tolist())
    else:
        pick = list(range(offset, min(offset + n, usable)))
    examples = examples.subset(pick)
    ids = [ids[i] for i in pick]
    return D.encode(examples, Tokenizer.from_pretrained(model_dir()), ids, max_length)


def model_dir() -> Path:
    return packaged_model_dir() or resolve_model_dir("minilm")


def make_model(framework: str, seed: int = 0):
    torch.manual_seed(seed)
    if framework == "minitf":
        from minitf.model import BertForSequenceClassification
        return BertForSequenceClassification.from_pretrained(
            model_dir(), num_labels=2, allow_missing_head=True)
    import transformers
    transformers.logging.set_verbosity_error()
    return transformers.BertForSequenceClassification.from_pretrained(
        model_dir(), num_labels=2, attn_implementation="sdpa")


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# ---------------------------------------------------------------------------------------------
# One measurement (runs in a child process)
# ---------------------------------------------------------------------------------------------


def measure(framework: str, mode: str, dataset: str, batching: str, steps: int,
            precision: str = "fp32", min_seconds: float = 3.0) -> dict:
    """Training samples/s and peak RSS: 2 warm-up batches, then whole passes over `steps`
    batches of 32 (a seeded sample of the file) until at least `min_seconds` have passed."""
    data = load(dataset, steps * 32, sample=True)
    order = (D.batch_plan(data.lengths, 32, 0, seed=0) if batching == "same"
             else random_batches(len(data), 32, seed=0))
    model = make_model(framework)
    out: dict = {}
    if framework == "minitf":
        plan = freeze(model, "layers:4" if mode.startswith("layers4") else "none")
        optimizer = build_optimizer(model, 5e-5)
        cache = None
        if mode == "layers4-cache":  # epoch 1 = build the cache for the epoch's data, then train
            started = time.perf_counter()
            cache = PrefixCache(model, data, plan.frozen_layers, batch_size=64)
            out["cache_seconds_per_sample"] = (time.perf_counter() - started) / len(data)
        train_mode(model, plan)

        def forward(b):
            batch = data.collate(b)
            logits = classifier_logits(model, batch, plan, cache, b)
            return F.cross_entropy(logits.float(), batch["labels"])
    else:
        if mode == "layers4":
            for module in (model.bert.embeddings, *model.bert.encoder.layer[:4]):
                module.requires_grad_(False)
        optimizer = build_optimizer(model, 5e-5)
        model.train()

        def forward(b):
            return model(**data.collate(b)).loss
    params = [p for p in model.parameters() if p.requires_grad]
    def measured():  # warm-up first, then whole passes until the time is up
        yield from order[:2]
        spent = 0.0
        while spent < min_seconds:
            yield from order
            spent = sum(timings[2:])
    batches, timings, cpu = [], [], []
    for b in measured():
        batches.append(b)
        started, cpu_started = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    samples = sum(len(b) for b in batches[2:])
    out["samples_per_s"] = samples / sum(timings[2:])
    out["samples_per_cpu_s"] = samples / sum(cpu[2:])  # per core-second, all threads together
    if "cache_seconds_per_sample" in out:  # epoch 1 also pays for the cache
        per_sample = 1 / out["samples_per_s"] + out["cache_seconds_per_sample"]
        out["epoch1_samples_per_s"] = 1 / per_sample
    out["tokens_per_batch"] = statistics.mean(
        len(b) * int(data.lengths[b].max()) for b in batches[2:])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_average"] = os.getloadavg()[0]
    return out


def accuracy_run(framework: str, train_n: int, epochs: int, lr: float) -> dict:
    """The recipe on train_n SST-2 rows, then accuracy on the held-out slice."""
    train = load("sst2", train_n)
    test = load("sst2", HELD_OUT, offset=-1)
    model = make_model(framework, seed=0)
    optimizer = build_optimizer(model, lr)
    total = epochs * -(-len(train) // 32)
    scheduler = linear_schedule(optimizer, round(0.1 * total), total)
    params = [p for p in model.parameters() if p.requires_grad]
    plan = freeze(model, "none") if framework == "minitf" else None
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for b in D.batch_plan(train.lengths, 32, epoch, seed=0):
            batch = train.collate(b)
            if framework == "minitf":
                loss = F.cross_entropy(classifier_logits(model, batch, plan), batch["labels"])
            else:
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    model.eval()
    correct = 0
    with torch.inference_mode():
        for b in D.batch_plan(test.lengths, 128, shuffle=False):
            batch = test.collate(b)
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return {"accuracy": correct / len(test), "n": len(test), "train_seconds": seconds}


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


THREADS: list[str] = []  # --threads N, passed on to the children


def child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, *THREADS, "--child", json.dumps(args)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# (row label, dataset, precision, [(framework, mode, batching), ...]); a run listed in an
# earlier row is measured once and reused.
ROWS = [
    ("full fine-tuning, SST-2, same batches", "sst2", "fp32",
     [("transformers", "full", "same"), ("minitf", "full", "same")]),
    ("full fine-tuning, SST-2, own batching", "sst2", "fp32",
     [("transformers", "full", "own"), ("minitf", "full", "same")]),
    ("full fine-tuning, MRPC pairs, same batches", "mrpc", "fp32",
     [("transformers", "full", "same"), ("minitf", "full", "same")]),
    ("layers:4 frozen, SST-2, same batches", "sst2", "fp32",
     [("transformers", "layers4", "same"), ("minitf", "layers4-nocache", "same"),
      ("minitf", "layers4-cache", "same")]),
    ("layers:4 frozen, SST-2, own batching", "sst2", "fp32",
     [("transformers", "layers4", "own"), ("minitf", "layers4-cache", "same")]),
    ("full fine-tuning, SST-2, same batches, bf16 autocast", "sst2", "bf16",
     [("transformers", "full", "same"), ("minitf", "full", "same")]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10,
                        help="batches of 32 per pass (the sample measured)")
    parser.add_argument("--accuracy-samples", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per measurement (default: torch's choice)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        task = json.loads(args.child)
        fn = accuracy_run if task[0] == "accuracy" else measure
        print(json.dumps(fn(*task[1:])))
        return
    if args.threads:
        THREADS.extend(["--threads", str(args.threads)])
    repeats, steps = (1, 6) if args.quick else (args.repeats, args.steps)
    acc_n = 256 if args.quick else args.accuracy_samples
    runs = list(dict.fromkeys((dataset, precision, *run) for _, dataset, precision, runs_ in ROWS
                              for run in runs_))
    results: dict = {}
    started = time.perf_counter()
    for repeat in range(repeats):
        for dataset, precision, framework, mode, batching in runs:
            got = child(["measure", framework, mode, dataset, batching, steps, precision])
            results.setdefault((dataset, precision, framework, mode, batching), []).append(got)
            print(f"[{time.perf_counter() - started:5.0f} s] repeat {repeat + 1}: {dataset} "
                  f"{precision} {framework} {mode} {batching}: {got['samples_per_s']:.1f} "
                  f"samples/s (load average {got['load_average']:.1f})", flush=True)
    accuracy = {fw: child(["accuracy", fw, acc_n, 1, 1e-4]) for fw in ("transformers", "minitf")}
    print(f"[{time.perf_counter() - started:5.0f} s] accuracy: {accuracy}", flush=True)
    write_report(results, accuracy, repeats, steps, acc_n, time.perf_counter() - started)


def median(values: list[dict], key: str) -> float:
    return statistics.median(v[key] for v in values if key in v)


def write_report(results: dict, accuracy: dict, repeats: int, steps: int, acc_n: int,
                 seconds: float) -> None:
    facts = machine_header()
    table = []
    names = {"full": "", "layers4": "", "layers4-nocache": " (no cache)",
             "layers4-cache": " (cache, epoch ≥ 2)"}
    for label, dataset, precision, runs in ROWS:
        base = cpu_base = None
        for framework, mode, batching in runs:
            values = results[(dataset, precision, framework, mode, batching)]
            rate = median(values, "samples_per_s")
            base = rate if framework == "transformers" else base
            spread = (f"{min(v['samples_per_s'] for v in values):.1f}–"
                      f"{max(v['samples_per_s'] for v in values):.1f}")
            batches = "random" if batching == "own" else "bucketed"
            cpu_rate = median(values, "samples_per_cpu_s")
            cpu_base = cpu_rate if framework == "transformers" else cpu_base
            table.append([label, f"{framework}{names[mode]}", batches, f"{rate:.1f}", spread,
                          f"{rate / base:.2f}×", f"{cpu_rate:.1f}", f"{cpu_rate / cpu_base:.2f}×",
                          f"{median(values, 'tokens_per_batch'):.0f}",
                          f"{median(values, 'peak_rss_mb'):.0f}"])
            if mode == "layers4-cache":
                e1 = median(values, "epoch1_samples_per_s")
                table.append([label, "minitf (cache, epoch 1: build + train)", batches,
                              f"{e1:.1f}", "", f"{e1 / base:.2f}×", "", "", "", ""])
    loads = [v["load_average"] for values in results.values() for v in values]
    header = ["setting", "run", "batches", "samples/s (median)", "range", "vs transformers",
              "samples/CPU-s", "vs transformers (CPU time)", "padded tokens/batch",
              "peak RSS MiB"]
    acc_rows = [[fw, f"{r['accuracy']:.4f}", r["n"], f"{r['train_seconds']:.0f}"]
                for fw, r in accuracy.items()]
    text = "\n\n".join([
        "# Fine-tuning: minitf vs transformers (CPU)",
        facts_block(facts),
        f"MiniLM (all-MiniLM-L6-v2), batch 32, max_length 128, AdamW (fused), gradient "
        f"clipping; fp32 unless marked bf16 (torch.autocast on CPU). Each measurement: a seeded "
        f"sample of {steps * 32} rows as {steps} batches, 2 warm-up batches, then whole passes "
        f"for at least 3 s, in its own process; {repeats} repeats, frameworks interleaved; "
        f"medians. 1-minute load average during measurements: "
        f"{min(loads):.1f}–{max(loads):.1f} (2 cores; above ~2 means other work competed). "
        f"Total run: {seconds:.0f} s. samples/CPU-s divides by the process's CPU time (all "
        f"threads), which other processes on the machine disturb less than wall time.",
        "\"bucketed\": minitf's length-bucketed batch plan (both frameworks get the same "
        "tensors); \"random\": random batches padded to their longest example, as "
        "transformers' DataCollatorWithPadding gives them.",
        markdown_table(header, table),
        f"Accuracy after the same budget: full fine-tuning, {acc_n} SST-2 training rows, "
        f"1 epoch, lr 1e-4, warmup 10% + linear decay, clipping 1.0, identical batches; "
        f"evaluated on the last {HELD_OUT} rows of SST-2 train.tsv (never trained on).",
        markdown_table(["framework", "accuracy", "n", "train seconds"], acc_rows),
    ])
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d") + "-cpu" + (f"-threads{THREADS[1]}" if THREADS else "")
    (RESULTS / f"finetune-{stamp}.md").write_text(text + "\n")
    (RESULTS / f"finetune-{stamp}.json").write_text(json.dumps({
        "facts": facts, "accuracy": accuracy,
        "speed": [{"dataset": k[0], "precision": k[1], "framework": k[2], "mode": k[3],
                   "batching": k[4], "runs": v} for k, v in results.items()]}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
