"""The attention explorer: one self-contained HTML page to look inside a model's attention.

    minitf attention --text "The cat sat on the mat." --pair "It was tired." --html explorer.html

The page (minitf/study/explorer.html, .css, .js and explorer_views.js, inlined into one file
with the data) has four views: the head view (lines from each query token to the keys it reads),
the model view (every layer × head as a small heat-map), the matrix view (one head's N × N
weights) and "the math" (for one query and one head: q·k, ÷ √d_k, the mask, the softmax, the
weighted sum of v, with the model's numbers and links to docs/attention.md). Nothing is loaded
from anywhere: no URL, no font file, no library; it opens from disk with the network off.

What the page receives is the model's own Q, K and V, per layer and head, captured by forward
hooks on each layer's `query`, `key` and `value` projections
(minitf/model/bert.py::BertSelfAttention) while the model runs on the text. Q and K travel as
float32 (the softmax needs every bit of the scores), V as float16 (it is only shown and
averaged), each zlib-compressed and base64-encoded; the page inflates them with the browser's
DecompressionStream. The page then works out softmax(q·k / √d_k + mask) in front of the student,
in float64; tests/test_explorer.py checks in a real browser that what it shows equals
`model(..., output_attentions=True).attentions`.

Which model: a base encoder (BertModel), a fine-tuned classifier (the page shows its predicted
label and probabilities) or a masked-LM (it shows the top predictions at every [MASK]), told
apart by config.json's `architectures` or, failing that, by the checkpoint's tensor names.
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import os
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from minitf.errors import MinitfError
from minitf.io import write_bytes
from minitf.paths import PACKAGED, packaged_model_dir, resolve_model_dir
from minitf.study.heatmaps import unknown_words

HERE = Path(__file__).resolve().parent
ATTENTION_DOC = HERE.parent.parent / "docs" / "attention.md"  # in a source checkout
# docs/attention.md's numbered sections that the page's steps link to.
DOC_STEPS = {"qkv": 1, "heads": 2, "scores": 3, "mask": 4, "softmax": 5, "sum": 6}
FILL_MASK_TOP = 5
TITLE_TEXT = 90  # characters of the text (and of the pair) in the page's title
SCRIPTS = ("explorer.js", "explorer_views.js")  # one script element, in this order
KINDS = ("encoder", "classifier", "masked-lm")


@dataclass
class ExplorerData:
    """Everything the page shows, for one text (or pair) through one model."""

    title: str
    kind: str                            # one of KINDS
    tokens: list[str]                    # the vocabulary's pieces: "[CLS]", "##s", "▁cat", ...
    unknown: dict[int, str]              # position of an [UNK] → the text it replaced
    token_type_ids: list[int]            # 0 text, 1 pair
    attention_mask: list[int]            # 1 real token, 0 padding
    q: torch.Tensor                      # (L, H, N, D) float32, per layer and head
    k: torch.Tensor                      # (L, H, N, D)
    v: torch.Tensor                      # (L, H, N, D)
    prediction: dict[str, Any] | None = None              # classifier: labels + probabilities
    fill_mask: list[dict[str, Any]] = field(default_factory=list)  # masked-LM: per [MASK]
    truncated: bool = False
    start: dict[str, Any] = field(default_factory=dict)  # first view: {"layer": 2, "heads": [5]}


# ---------------------------------------------------------------------------------------------
# Loading any minitf model directory
# ---------------------------------------------------------------------------------------------


def model_kind(directory: Path) -> str:
    """One of KINDS: from config.json's architectures, else from the checkpoint's tensor names
    (classifier.* for a classifier, cls.predictions.* for a masked-LM)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MinitfError(f"{directory / 'config.json'}: cannot read it ({exc})") from None
    architectures = " ".join(config.get("architectures") or [])
    if "SequenceClassification" in architectures:
        return "classifier"
    if "MaskedLM" in architectures or "ForPreTraining" in architectures:
        return "masked-lm"
    names = _tensor_names(directory)
    if any(n.startswith("classifier.") for n in names):
        return "classifier"
    if any(n.startswith("cls.predictions.") for n in names):
        return "masked-lm"
    return "encoder"


def _tensor_names(directory: Path) -> list[str]:
    """Names in the safetensors headers (no tensor is read)."""
    from safetensors import SafetensorError, safe_open
    names: list[str] = []
    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                names.extend(f.keys())
        except (SafetensorError, OSError, ValueError):  # the loader reports it, with a hint
            continue
    return names


def load_model(directory: Path) -> tuple[nn.Module, str]:
    """The model of `directory` as its kind's minitf class, in eval mode, reference attention."""
    from minitf.model import bert as M
    kind = model_kind(directory)
    if kind == "classifier":
        model = M.BertForSequenceClassification.from_pretrained(directory,
                                                                attn_backend="reference")
    elif kind == "masked-lm" and hasattr(M, "BertForMaskedLM"):
        model = M.BertForMaskedLM.from_pretrained(directory, attn_backend="reference")
    else:  # a masked-LM checkpoint before minitf had BertForMaskedLM: look at its encoder
        kind = "encoder"
        model = M.BertModel.from_pretrained(directory, attn_backend="reference")
    return model.eval(), kind


# ---------------------------------------------------------------------------------------------
# Running the model, keeping Q, K, V
# ---------------------------------------------------------------------------------------------


def capture_qkv(model: nn.Module, batch: dict[str, torch.Tensor]
                ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `model` on a one-row batch; return its output and Q, K, V, each (L, H, N, D).

    Forward hooks on every BertSelfAttention's query / key / value projections record their
    outputs (1, N, C); splitting C into H heads of D is the view the model itself does.
    """
    from minitf.model.bert import BertSelfAttention
    layers = [m for m in model.modules() if isinstance(m, BertSelfAttention)]
    if not layers:
        raise MinitfError(f"{type(model).__name__} has no BertSelfAttention layers to look at")
    seen: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for index, attention in enumerate(layers):
        for name in ("query", "key", "value"):
            def keep(_module: nn.Module, _inputs: Any, out: torch.Tensor,
                     key: tuple[int, str] = (index, name)) -> None:
                seen[key] = out.detach()
            hooks.append(getattr(attention, name).register_forward_hook(keep))
    kwargs = {}
    if "output_attentions" in inspect.signature(model.forward).parameters:
        # Classifiers may compute the last layer's query at [CLS] only; with output_attentions
        # every layer runs in full, so every position has its q.
        kwargs["output_attentions"] = True
    try:
        with torch.no_grad():
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    heads, head_dim = layers[0].num_heads, layers[0].head_dim
    real = batch["attention_mask"][0].bool()                     # (N,)

    def per_head(name: str) -> torch.Tensor:  # L × (N, C) → (L, H, N, D)
        return torch.stack([_positions(seen[(i, name)], real).reshape(-1, heads, head_dim)
                            .transpose(0, 1) for i in range(len(layers))]).float()

    return out, per_head("query"), per_head("key"), per_head("value")


def _positions(out: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A projection's output for one text as (N, C), zeros at padding, as the model's own
    split into heads has it: from (1, N, C), or from the packed real tokens (T, C)."""
    if out.dim() == 3:
        return out[0]
    if out.shape[0] != int(real.sum()):
        raise MinitfError(f"a projection gave {out.shape[0]} rows for {int(real.sum())} real "
                          "tokens; minitf.study.explorer does not know this layout")
    return out.new_zeros(real.shape[0], out.shape[-1]).index_copy(0, real.nonzero()[:, 0], out)


def explore(model: str | Path, text: str, pair: str | None = None, max_length: int = 128,
            pad_to: int | None = None) -> ExplorerData:
    """Run the model of directory (or name) `model` on `text` (and `pair`) for the page.

    `pad_to` appends [PAD] tokens up to that length, so that the mask has something to do.
    """
    from minitf.tokenizers.wordpiece import load_tokenizer

    directory = resolve_model_dir(model)
    if not text.strip():
        raise MinitfError("the text is empty; give a sentence to look at")
    net, kind = load_model(directory)
    tokenizer = load_tokenizer(directory)  # WordPiece (vocab.txt) or SentencePiece
    batch = tokenizer([text], None if pair is None else [pair], max_length=max_length)
    ids = batch["input_ids"][0].tolist()
    full_length = (len(tokenizer.tokenize(text)) + 2
                   + (0 if pair is None else len(tokenizer.tokenize(pair)) + 1))
    length = max(len(ids), pad_to or 0)
    limit = net.config.max_position_embeddings
    if length > limit:  # checked before padding allocates anything
        raise MinitfError(f"{length} tokens, but this model reads at most "
                          f"{limit}; use a smaller --max-length / --pad-to")
    if pad_to is not None and pad_to > len(ids):
        batch = _pad(batch, pad_to, tokenizer.pad_token_id)
    out, q, k, v = capture_qkv(net, batch)
    all_ids = batch["input_ids"][0].tolist()
    data = ExplorerData(
        title=_title(model, directory, text, pair), kind=kind,
        tokens=tokenizer.convert_ids_to_tokens(all_ids),       # "##s", "▁cat", "[SEP]"
        unknown=unknown_words(tokenizer, ids, text, pair),
        token_type_ids=batch["token_type_ids"][0].tolist(),
        attention_mask=batch["attention_mask"][0].tolist(),
        q=q, k=k, v=v, truncated=full_length > len(ids))
    if kind == "classifier":
        data.prediction = _prediction(out.logits[0], net.config.id2label)
    if kind == "masked-lm":
        data.fill_mask = _fill_mask(out.logits[0], all_ids, tokenizer)
    return data


def _pad(batch: dict[str, torch.Tensor], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    extra = length - batch["input_ids"].shape[1]
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0}
    return {name: torch.cat([t, torch.full((1, extra), fill[name], dtype=t.dtype)], dim=1)
            for name, t in batch.items()}


def _title(model: str | Path, directory: Path, text: str, pair: str | None) -> str:
    name = directory.name if Path(model).expanduser().is_dir() else str(model)
    for known in PACKAGED:  # a pip-installed model lives in a folder named "model"
        if packaged_model_dir(known) == directory:
            name = known
    def short(s: str) -> str:  # the full text is in the token strip
        return s if len(s) <= TITLE_TEXT else s[:TITLE_TEXT - 1].rstrip() + "…"
    return f"{name}: {short(text)}" + (f"  ‖  {short(pair)}" if pair else "")


def _prediction(logits: torch.Tensor, id2label: dict[int, str]) -> dict[str, Any]:
    from minitf.tasks.classify import classifications
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(logits.numel())]
    (answer,) = classifications(logits.reshape(1, -1), labels)
    if answer.score is None:  # one output: a regression head
        return {"regression": round(float(answer.label), 6)}
    return {"labels": labels, "probs": [round(p, 6) for p in answer.scores],
            "predicted": answer.label}


def _fill_mask(logits: torch.Tensor, ids: list[int], tokenizer: Any) -> list[dict[str, Any]]:
    """Top predictions at every [MASK] position: logits (N, V)."""
    mask_id = tokenizer.mask_token_id
    found = []
    for position, token_id in enumerate(ids):
        if token_id != mask_id:
            continue
        probs = logits[position].float().softmax(-1)
        top = probs.topk(FILL_MASK_TOP)
        found.append({"position": position, "top": [
            [tokenizer.decode([int(i)], skip_special_tokens=False), round(float(p), 6)]
            for p, i in zip(top.values, top.indices, strict=True)]})
    return found


# ---------------------------------------------------------------------------------------------
# Writing the page
# ---------------------------------------------------------------------------------------------


def pack(tensor: torch.Tensor, dtype: str) -> str:
    """A tensor as base64 of zlib-compressed little-endian `dtype` bytes, byte-shuffled: the
    first bytes of every number, then the second bytes, ... (floats compress better that way;
    explorer.js undoes it)."""
    array = tensor.detach().cpu().numpy().astype(dtype).ravel()
    raw = array.view(np.uint8).reshape(-1, array.itemsize).T.copy().tobytes()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def doc_links(output: Path, doc: Path = ATTENTION_DOC) -> dict[str, str]:
    """step name → relative link to its section of docs/attention.md, as seen from `output`.

    Anchors are GitHub's heading slugs, computed from the headings the doc has now; a step
    whose section is missing (or a doc that is not there, as in an installed package) gets none.
    """
    if not doc.is_file():
        return {}
    slugs = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        found = re.match(r"##\s+(\d+)\.\s", line)
        if found:
            slugs[int(found.group(1))] = github_slug(line.lstrip("#").strip())
    relative = Path(os.path.relpath(doc, output.resolve().parent)).as_posix()
    return {step: f"{relative}#{slugs[number]}" for step, number in DOC_STEPS.items()
            if number in slugs}


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation and symbols dropped
    (letters, marks, digits, "-" and "_" kept), spaces → "-"."""
    kept = "".join(c for c in heading.lower()
                   if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def page_data(data: ExplorerData, links: dict[str, str]) -> dict[str, Any]:
    layers, heads, n, head_dim = data.q.shape
    return {
        "title": data.title, "kind": data.kind, "tokens": data.tokens,
        "unknown": {str(i): w for i, w in data.unknown.items()},
        "segments": data.token_type_ids, "mask": data.attention_mask,
        "layers": layers, "heads": heads, "n": n, "headDim": head_dim,
        "scale": 1.0 / math.sqrt(head_dim),
        "prediction": data.prediction, "fillMask": data.fill_mask,
        "truncated": data.truncated, "links": links, "start": data.start,
        "q": pack(data.q, "<f4"), "k": pack(data.k, "<f4"), "v": pack(data.v, "<f2"),
    }


def render_html(data: ExplorerData, links: dict[str, str] | None = None) -> str:
    """The page as one string: explorer.html with the style, script and data put inline."""
    template = (HERE / "explorer.html").read_text(encoding="utf-8")
    payload = json.dumps(page_data(data, links or {}), ensure_ascii=False, separators=(",", ":"))
    # Text such as "</script>" or "<!--" inside the data block would end it early or change
    # how the HTML parser reads it; JSON strings can spell those characters as \u escapes.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {"/*STYLE*/": (HERE / "explorer.css").read_text(encoding="utf-8"),
             "/*SCRIPT*/": "\n".join((HERE / name).read_text(encoding="utf-8")
                                     for name in SCRIPTS),
             "/*DATA*/": payload, "<!--TITLE-->": _escape(data.title)}
    for name, closing in (("/*STYLE*/", "</style"), ("/*SCRIPT*/", "</script")):
        if closing in parts[name].lower():  # it would end its element early
            raise MinitfError(f"the explorer's {name.strip('/*').lower()} contains {closing}")
    for marker in parts:
        if template.count(marker) != 1:
            raise MinitfError(f"{HERE / 'explorer.html'} must hold {marker} exactly once")
    # One pass, so that text put in (a sentence, the script) is never searched for markers.
    pattern = "|".join(re.escape(marker) for marker in parts)
    return re.sub(pattern, lambda found: parts[found.group(0)], template)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_explorer(data: ExplorerData, path: str | Path, overwrite: bool = False) -> int:
    """Write the page to `path` (whole or not at all: minitf.io.write_bytes); its size.
    An existing file is replaced only with `overwrite=True`."""
    path = Path(path)
    html = render_html(data, doc_links(path)).encode("utf-8")
    write_bytes(path, html, overwrite)
    return len(html)
