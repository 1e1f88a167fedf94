"""What --precision costs and buys on this CPU: SST-2 accuracy, prediction agreement and speed
of a fine-tuned classifier, and training-step speed, for fp32 / bf16 / int8.

    # a classifier first (not committed; ~20 min on a busy 2-core box, 83% held-out accuracy):
    head -4001 ../shared/data/sst2/train.tsv > /tmp/sst2-train.tsv
    (head -1 ../shared/data/sst2/train.tsv; tail -2000 ../shared/data/sst2/train.tsv) \\
        > /tmp/sst2-heldout.tsv
    python -m minitf finetune --train /tmp/sst2-train.tsv --validation /tmp/sst2-heldout.tsv \\
        --output /tmp/sst2-minilm --epochs 1 --max-length 64 --freeze layers:4 --lr 1e-4
    python benchmarks/precision.py --classifier /tmp/sst2-minilm/best --data /tmp/sst2-heldout.tsv

Inference: the held-out rows (the last 2,000 of GLUE's SST-2 train.tsv, never trained on; the
GLUE dev split is not in shared/), length-sorted batches of 64, each precision as
minitf.model.precision.apply_precision makes it, interleaved repeats. Training: full fine-tuning
steps (batch 32, AdamW) of MiniLM in fp32 and under bf16 autocast on the same batches.
Writes benchmarks/results/precision-<date>-cpu.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    facts_block,
    machine_header,
    markdown_table,
    median_and_spread,
)
from benchmarks.encoder import sorted_batches  # noqa: E402
from minitf import BertForSequenceClassification, Tokenizer  # noqa: E402
from minitf.model.precision import apply_precision, resolve_precision  # noqa: E402

FORMS = {  # row name → (precision given to apply_precision, extra autocast for the other form)
    "fp32": ("fp32", False),
    "bf16 (weights cast: --precision bf16)": ("bf16", False),
    "bf16 autocast (fp32 weights)": ("fp32", True),
    "int8 (Int8Linear: --precision int8)": ("int8", False),
}


def read_tsv(path: Path) -> tuple[list[str], torch.Tensor]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], torch.tensor([int(r["label"]) for r in rows])


def classify(model, batches, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, logits) in the batches' order."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = torch.cat([model(**b).logits.float() for b in batches])
    return logits.argmax(-1), logits


def inference_rows(args, tokenizer) -> tuple[list[list[str]], int]:
    texts, labels = read_tsv(args.data)
    texts, labels = texts[: args.rows], labels[: args.rows]
    order = sorted(range(len(texts)), key=lambda i: len(tokenizer.tokenize(texts[i])))
    labels = labels[order]  # sorted_batches sorts the same way (stable)
    batches = sorted_batches(texts, tokenizer, args.batch_size)
    base = BertForSequenceClassification.from_pretrained(args.classifier).eval()
    models = {name: apply_precision(copy.deepcopy(base), p)[0] for name, (p, _) in FORMS.items()}
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    results = {}
    for name in FORMS:  # warm-up: the first and the longest batch
        classify(models[name], [batches[0], batches[-1]], FORMS[name][1])
    for _ in range(args.repeats):
        for name in FORMS:
            start = time.perf_counter()
            results[name] = classify(models[name], batches, FORMS[name][1])
            times[name].append(time.perf_counter() - start)
    ref_pred, ref_logits = results["fp32"]
    rows = []
    for name, (pred, logits) in results.items():
        med = median_and_spread(times[name])[0]
        rate = len(texts) / med
        rows.append([name, f"{100 * (pred == labels).float().mean():.2f}",
                     f"{100 * (pred == ref_pred).float().mean():.2f}",
                     f"{(logits - ref_logits).abs().max():.3f}", f"{rate:.1f}",
                     f"{rate / (len(texts) / median_and_spread(times['fp32'])[0]):.2f}×"])
    return rows, len(texts)


def training_rows(args, tokenizer) -> list[list[str]]:
    texts, labels = read_tsv(args.data)
    texts, labels = texts[: args.train_steps * 32], labels[: args.train_steps * 32]
    batches = sorted_batches(texts, tokenizer, 32)
    for b, i in zip(batches, range(0, len(texts), 32), strict=True):
        b["labels"] = labels[i : i + 32]  # labels only matter for the loss, not the speed
    times: dict[str, list[float]] = {"fp32": [], "bf16 autocast": []}
    models = {}
    for name, precision in (("fp32", "fp32"), ("bf16 autocast", "bf16")):
        model = BertForSequenceClassification.from_pretrained(args.classifier).train()
        model, prec = apply_precision(model, precision, training=True)
        models[name] = (model, prec, torch.optim.AdamW(model.parameters(), lr=1e-5))
    for _ in range(args.repeats):
        for name, (model, prec, optimizer) in models.items():
            start = time.perf_counter()
            for b in batches:
                with prec.autocast():
                    logits = model(b["input_ids"], b["attention_mask"]).logits
                F.cross_entropy(logits.float(), b["labels"]).backward()
                optimizer.step()
                optimizer.zero_grad()
            times[name].append(time.perf_counter() - start)
    base = len(texts) / median_and_spread(times["fp32"])[0]
    return [[name, f"{len(texts) / median_and_spread(t)[0]:.1f}",
             f"{len(texts) / median_and_spread(t)[0] / base:.2f}×"] for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="held-out SST-2 rows (TSV)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=8)
    args = parser.parse_args()
    load_before = os.getloadavg()
    tokenizer = Tokenizer.from_pretrained(args.classifier)
    inference, n = inference_rows(args, tokenizer)
    training = training_rows(args, tokenizer)
    loads = " → ".join("/".join(f"{x:.1f}" for x in la) for la in (load_before, os.getloadavg()))
    facts = machine_header()
    text = f"""# Precision on CPU: accuracy and speed of fp32, bf16 and int8

Command: `python benchmarks/precision.py --classifier CLASSIFIER --data HELDOUT --rows \
{args.rows} --repeats {args.repeats} --train-steps {args.train_steps}` (see the script's
docstring for how CLASSIFIER, a MiniLM fine-tuned on 4,000 SST-2 rows, was made)

{facts_block(facts)}
- load average (1/5/15 min) before → after: {loads}; the machine is shared with other
  sessions' work while this runs, so speeds are low and noisy; ratios are from the same run.
- `--precision auto` resolves to `{resolve_precision('auto', 'cpu')}` for inference and
  `{resolve_precision('auto', 'cpu', training=True)}` for training on this CPU.

## Inference: {n} held-out SST-2 rows, batches of {args.batch_size} sorted by length

{markdown_table(["precision", "accuracy %", "agrees with fp32 %", "max |Δlogit| vs fp32",
                 "seq/s (median)", "vs fp32"], inference)}

## Training: {args.train_steps} full fine-tuning steps of batch 32, AdamW

{markdown_table(["precision", "samples/s (median)", "vs fp32"], training)}
"""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"precision-{facts['date'][:10]}-cpu.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
