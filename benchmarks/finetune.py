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

- LoRA (r 8, alpha 16, dropout 0.1, query+value; pooler and classifier in full) vs
  transformers + PEFT with the same settings: on every layer, and on layers 4-5 only, where
  minitf caches the untouched embeddings + layers 0-3 (minitf/model/lora.py)

    python benchmarks/finetune.py --lora       # full FT, layers:4 and the LoRA rows only

Accuracy: both fine-tune MiniLM with the same recipe (AdamW, linear warmup/decay, clipping,
same batches and steps) on an SST-2 subset and are evaluated on a held-out SST-2 slice.
The LoRA comparison: full FT, layers:4 (cached), LoRA and LoRA on layers 4-5 (cached) for
minitf, LoRA and LoRA on layers 4-5 for transformers + PEFT, the same epochs and batches.
Data: ../shared/data/{sst2,mrpc}/train.tsv (GLUE training files, read in place; or
$MINITF_DATA/{sst2,mrpc}/train.tsv).
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

from minitf.data import examples as D  # noqa: E402
from minitf.model.freeze import classifier_logits, freeze, train_mode  # noqa: E402
from minitf.paths import packaged_model_dir, resolve_model_dir  # noqa: E402
from minitf.train.freeze import PrefixCache  # noqa: E402
from minitf.train.optim import build_optimizer, linear_schedule  # noqa: E402

SHARED = Path(os.environ.get("MINITF_DATA", ROOT.parent / "shared" / "data"))
HELD_OUT = 2000  # the last rows of SST-2's train.tsv: evaluation only, never trained on


# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------


def load(dataset: str, n: int, max_length: int = 128, offset: int = 0,
         sample: bool = False) -> D.Encoded:
    """n rows from `offset` (sample=True: a seeded random sample of the training rows)."""
    from minitf.tokenizers.wordpiece import Tokenizer
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
        from minitf.model.bert import BertForSequenceClassification
        return BertForSequenceClassification.from_pretrained(
            model_dir(), num_labels=2, allow_missing_head=True)
    import transformers
    transformers.logging.set_verbosity_error()
    return transformers.BertForSequenceClassification.from_pretrained(
        model_dir(), num_labels=2, attn_implementation="sdpa")


# LoRA as PEFT users run it: r 8, alpha 16, dropout 0.1 on query and value; pooler and
# classifier trained in full. "lora-top2*": adapters on layers 4-5 only; minitf then caches
# the untouched embeddings + layers 0-3 like layers:4.
LORA_LAYERS = {"lora": None, "lora-top2": [4, 5], "lora-top2-cache": [4, 5]}


def minitf_plan(model, mode: str):
    """Freeze (or add adapters to) a minitf classifier for a benchmark mode; its FreezePlan."""
    if mode.startswith("lora"):
        from minitf.model.lora import add_lora, lora_spec
        layers = LORA_LAYERS[mode]
        return add_lora(model, lora_spec(model.config.num_hidden_layers, 8, 16, 0.1,
                                         layers=layers and f"{layers[0]}-{layers[-1]}"))
    return freeze(model, "layers:4" if mode.startswith("layers4") else "none")


def transformers_setup(model, mode: str):
    """The same for a transformers classifier: requires_grad=False, or PEFT's LoRA."""
    if mode.startswith("lora"):
        import peft
        return peft.get_peft_model(model, peft.LoraConfig(
            task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
            target_modules=["query", "value"], modules_to_save=["classifier", "pooler"],
            layers_to_transform=LORA_LAYERS[mode]))
    if mode.startswith("layers4"):
        for module in (model.bert.embeddings, *model.bert.encoder.layer[:4]):
            module.requires_grad_(False)
    return model


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
        plan = minitf_plan(model, mode)
        optimizer = build_optimizer(model, 5e-5)
        cache = None
        if mode.endswith("-cache"):  # epoch 1 = build the cache for the epoch's data, then train
            started = time.perf_counter()
            cache = PrefixCache(model, data, plan.frozen_layers, batch_size=64)
            out["cache_seconds_per_sample"] = (time.perf_counter() - started) / len(data)
        train_mode(model, plan)

        def forward(b):
            batch = data.collate(b)
            logits = classifier_logits(model, batch, plan, cache, b)
            return F.cross_entropy(logits.float(), batch["labels"])
    else:
        model = transformers_setup(model, mode)
        optimizer = build_optimizer(model, 5e-5)
        model.train()

        def forward(b):
            return model(**data.collate(b)).loss
    params = [p for p in model.parameters() if p.requires_grad]
    out["trainable_parameters"] = sum(p.numel() for p in params)

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


def accuracy_run(framework: str, train_n: int, epochs: int, lr: float, mode: str = "full"
                 ) -> dict:
    """The recipe on train_n SST-2 rows, then accuracy on the held-out slice."""
    train = load("sst2", train_n)
    test = load("sst2", HELD_OUT, offset=-1)
    model = make_model(framework, seed=0)
    started = time.perf_counter()
    if framework == "minitf":
        plan = minitf_plan(model, mode)
        cache = PrefixCache(model, train, plan.frozen_layers) if mode.endswith("-cache") else None
    else:
        model = transformers_setup(model, mode)
    optimizer = build_optimizer(model, lr)
    total = epochs * -(-len(train) // 32)
    scheduler = linear_schedule(optimizer, round(0.1 * total), total)
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(epochs):
        train_mode(model, plan) if framework == "minitf" else model.train()
        for b in D.batch_plan(train.lengths, 32, epoch, seed=0):
            batch = train.collate(b)
            if framework == "minitf":
                logits = classifier_logits(model, batch, plan, cache, b)
                loss = F.cross_entropy(logits, batch["labels"])
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
    return {"accuracy": correct / len(test), "n": len(test), "train_seconds": seconds,
            "trainable_parameters": sum(p.numel() for p in params)}


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
    ("LoRA r 8 on query+value, SST-2, same batches", "sst2", "fp32",
     [("transformers", "lora", "same"), ("minitf", "lora", "same")]),
    ("LoRA r 8 on query+value of layers 4-5, SST-2, same batches", "sst2", "fp32",
     [("transformers", "lora-top2", "same"), ("minitf", "lora-top2-cache", "same")]),
]
LORA_ROWS = [0, 3, 6, 7]  # --lora: full FT, layers:4 and the LoRA rows only
# The accuracy comparison of --lora: (framework, mode, lr), the same epochs and batches.
LORA_ACCURACY = [("minitf", "full", 1e-4), ("minitf", "layers4-cache", 1e-4),
                 ("transformers", "lora", 5e-4), ("minitf", "lora", 5e-4),
                 ("transformers", "lora-top2", 5e-4), ("minitf", "lora-top2-cache", 5e-4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lora", action="store_true",
                        help="only full FT, layers:4 and the LoRA rows, and the LoRA accuracies")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10,
                        help="batches of 32 per pass (the sample measured)")
    parser.add_argument("--accuracy-samples", type=int, default=1500)
    parser.add_argument("--lora-samples", type=int, default=2000,
                        help="SST-2 training rows of the LoRA accuracy comparison")
    parser.add_argument("--lora-epochs", type=int, default=3)
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
    rows = [ROWS[i] for i in LORA_ROWS] if args.lora else ROWS
    runs = list(dict.fromkeys((dataset, precision, *run) for _, dataset, precision, runs_ in rows
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
    accuracy = {} if args.lora else {
        fw: child(["accuracy", fw, acc_n, 1, 1e-4]) for fw in ("transformers", "minitf")}
    lora_n, lora_epochs = (256, 1) if args.quick else (args.lora_samples, args.lora_epochs)
    lora_accuracy = []
    for framework, mode, lr in LORA_ACCURACY:
        got = child(["accuracy", framework, lora_n, lora_epochs, lr, mode])
        lora_accuracy.append({"framework": framework, "mode": mode, "lr": lr, **got})
        print(f"[{time.perf_counter() - started:5.0f} s] accuracy {framework} {mode}: {got}",
              flush=True)
    write_report(results, rows, accuracy, lora_accuracy, (repeats, steps, acc_n, lora_n,
                 lora_epochs), time.perf_counter() - started, "-lora" if args.lora else "")


def median(values: list[dict], key: str) -> float:
    return statistics.median(v[key] for v in values if key in v)


NAMES = {"full": "", "layers4": "", "layers4-nocache": " (no cache)",
         "layers4-cache": " (cache, epoch ≥ 2)", "lora": " LoRA", "lora-top2": " LoRA",
         "lora-top2-cache": " LoRA (cache, epoch ≥ 2)"}


def speed_table(results: dict, rows: list) -> list[list[str]]:
    table = []
    for label, dataset, precision, runs in rows:
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
            peer = "transformers + PEFT" if mode.startswith("lora") else "transformers"
            name = peer if framework == "transformers" else "minitf"
            table.append([label, f"{name}{NAMES[mode]}", batches,
                          f"{values[0]['trainable_parameters']:,}", f"{rate:.1f}", spread,
                          f"{rate / base:.2f}×", f"{cpu_rate:.1f}", f"{cpu_rate / cpu_base:.2f}×",
                          f"{median(values, 'tokens_per_batch'):.0f}",
                          f"{median(values, 'peak_rss_mb'):.0f}"])
            if mode.endswith("-cache"):
                e1 = median(values, "epoch1_samples_per_s")
                table.append([label, f"minitf{NAMES[mode].split('(')[0]}(cache, epoch 1: "
                              "build + train)", batches, "", f"{e1:.1f}", "",
                              f"{e1 / base:.2f}×", "", "", "", ""])
    return table


def accuracy_sections(accuracy: dict, lora_accuracy: list[dict], acc_n: int, lora_n: int,
                      lora_epochs: int) -> list[str]:
    sections = []
    if accuracy:
        sections += [
            f"Accuracy after the same budget: full fine-tuning, {acc_n} SST-2 training rows, "
            f"1 epoch, lr 1e-4, warmup 10% + linear decay, clipping 1.0, identical batches; "
            f"evaluated on the last {HELD_OUT} rows of SST-2 train.tsv (never trained on).",
            markdown_table(["framework", "accuracy", "n", "train seconds"],
                           [[fw, f"{r['accuracy']:.4f}", r["n"], f"{r['train_seconds']:.0f}"]
                            for fw, r in accuracy.items()])]
    if lora_accuracy:
        sections += [
            f"Full fine-tuning, freezing and LoRA after the same epochs: {lora_n} SST-2 "
            f"training rows, {lora_epochs} epoch(s), the same length-bucketed batches, AdamW, "
            f"warmup 10% + linear decay, clipping 1.0; LoRA r 8, alpha 16, dropout 0.1 on "
            f"query+value (all layers, or layers 4-5), pooler and classifier trained in full. "
            f"Train seconds include building the cache. Evaluated on the last {HELD_OUT} rows "
            f"of SST-2 train.tsv.",
            markdown_table(
                ["framework", "run", "lr", "trainable parameters", "accuracy", "train seconds"],
                [[r["framework"] + (" + PEFT" if r["mode"].startswith("lora")
                                    and r["framework"] == "transformers" else ""),
                  r["mode"], f"{r['lr']:g}", f"{r['trainable_parameters']:,}",
                  f"{r['accuracy']:.4f}", f"{r['train_seconds']:.0f}"]
                 for r in lora_accuracy])]
    return sections


def write_report(results: dict, rows: list, accuracy: dict, lora_accuracy: list[dict],
                 sizes: tuple[int, int, int, int, int], seconds: float, suffix: str) -> None:
    repeats, steps, acc_n, lora_n, lora_epochs = sizes
    facts = machine_header()
    loads = [v["load_average"] for values in results.values() for v in values]
    header = ["setting", "run", "batches", "trainable parameters", "samples/s (median)",
              "range", "vs transformers", "samples/CPU-s", "vs transformers (CPU time)",
              "padded tokens/batch", "peak RSS MiB"]
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
        "transformers' DataCollatorWithPadding gives them. LoRA rows compare with "
        "transformers + PEFT (peft " + peft_version() + ") under the same settings.",
        markdown_table(header, speed_table(results, rows)),
        *accuracy_sections(accuracy, lora_accuracy, acc_n, lora_n, lora_epochs),
    ])
    RESULTS.mkdir(exist_ok=True)
    stamp = (time.strftime("%Y-%m-%d") + "-cpu" + (f"-threads{THREADS[1]}" if THREADS else "")
             + suffix)
    (RESULTS / f"finetune-{stamp}.md").write_text(text + "\n")
    (RESULTS / f"finetune-{stamp}.json").write_text(json.dumps({
        "facts": facts, "accuracy": accuracy, "lora_accuracy": lora_accuracy,
        "speed": [{"dataset": k[0], "precision": k[1], "framework": k[2], "mode": k[3],
                   "batching": k[4], "runs": v} for k, v in results.items()]}, indent=1) + "\n")
    print(text)


def peft_version() -> str:
    try:
        return __import__("peft").__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
