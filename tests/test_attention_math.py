"""Attention, stated as properties — each test name is a sentence you can check against the code.

The last tests recompute the worked example printed in docs/attention.md and check that every
code pointer in that document still names a real function, so the document cannot drift.

Shapes follow minitf/model/attention.py: q, k, v are (B, H, N, D); key_padding_mask is (B, N) with
True = a real token (attend to it) and False = padding.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
import torch

from minitf.model.attention import (
    Packing,
    attention_weights,
    get_attention,
    reference_attention,
    sdpa_attention,
)
from minitf.model.bert import BertModel, BertSelfAttention
from minitf.model.config import BertConfig

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "attention.md"


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_mask(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    """A right-padded key mask: row b keeps its first lengths[b] keys (at least one)."""
    lengths = torch.randint(1, n + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    lengths[0] = n  # one row without padding
    return torch.arange(n)[None, :] < lengths[:, None]


# ---------------------------------------------------------------------------------------------
# The softmax: a probability distribution over the keys that are allowed
# ---------------------------------------------------------------------------------------------


def test_every_attention_row_sums_to_one() -> None:
    q, k = randn(2, 3, 7, 16, seed=1), randn(2, 3, 7, 16, seed=2)
    mask = random_mask(2, 7)
    for key_padding_mask in (None, mask):
        weights = attention_weights(q, k, key_padding_mask)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))


def test_masked_keys_get_exactly_zero_weight_and_their_values_cannot_leak() -> None:
    q, k, v = (randn(2, 2, 6, 8, seed=s) for s in (1, 2, 3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    weights = attention_weights(q, k, mask)
    assert (weights[0, :, :, 4:] == 0).all()  # exactly zero, not merely small
    assert (weights[1] > 0).all()

    # So whatever sits in the padding positions of K and V cannot change the output.
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 4:], v2[0, :, 4:] = 1e4, -1e4
    torch.testing.assert_close(reference_attention(q, k2, v2, mask),
                               reference_attention(q, k, v, mask))


def test_a_query_with_every_key_masked_gets_zeros_not_nan() -> None:
    q, k, v = (randn(2, 1, 4, 8, seed=s) for s in (1, 2, 3))
    mask = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    for backend in ("reference", "sdpa"):
        out = get_attention(backend)(q, k, v, key_padding_mask=mask)
        assert not out.isnan().any()
        assert (out[0] == 0).all()


# ---------------------------------------------------------------------------------------------
# Attention has no notion of order: that is what position embeddings are for
# ---------------------------------------------------------------------------------------------


def test_permuting_the_tokens_permutes_the_attention_output() -> None:
    q, k, v = (randn(1, 2, 9, 16, seed=s) for s in (1, 2, 3))
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(4))
    out = reference_attention(q, k, v)
    permuted = reference_attention(q[:, :, perm], k[:, :, perm], v[:, :, perm])
    torch.testing.assert_close(permuted, out[:, :, perm])


def tiny_config(**overrides: object) -> BertConfig:
    settings: dict = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64,
                          max_position_embeddings=32)
    settings.update(overrides)
    return BertConfig(**settings)


def test_without_position_embeddings_the_whole_encoder_is_permutation_equivariant() -> None:
    torch.manual_seed(0)
    model = BertModel(tiny_config(), attn_backend="reference").eval()
    ids = torch.randint(1, 64, (1, 10), generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(2))

    def encode(input_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids).last_hidden_state

    # With position embeddings, shuffling the words changes what each word means in context...
    assert not torch.allclose(encode(ids[:, perm]), encode(ids)[:, perm], atol=1e-3)
    # ...without them the encoder sees a bag of words: shuffled in, shuffled out.
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
    torch.testing.assert_close(encode(ids[:, perm]), encode(ids)[:, perm])


# ---------------------------------------------------------------------------------------------
# Why divide by √d_k
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_k", [16, 64, 256, 1024])
def test_scaling_by_one_over_sqrt_dk_keeps_logit_variance_near_one(d_k: int) -> None:
    # Unit-variance q and k: q·k is a sum of d_k products of variance 1, so its variance is d_k.
    # minitf's softmax hides the logits, but log(weight) = logit - logsumexp(row): within a row
    # the log-weights vary exactly as the logits do (float64, so no weight underflows to 0).
    q, k = (randn(1, 1, 256, d_k, seed=d_k + i, dtype=torch.float64) for i in (0, 1))

    def logit_variance(**scale: float) -> float:
        return attention_weights(q, k, **scale).log().var(dim=-1).mean().item()

    assert 0.85 < logit_variance() < 1.15                        # minitf's default: near 1
    assert 0.85 * d_k < logit_variance(sm_scale=1.0) < 1.15 * d_k  # unscaled: grows with d_k


def test_without_scaling_the_softmax_saturates_as_dk_grows() -> None:
    """Large logits push softmax towards one-hot: the biggest weight in a row approaches 1."""
    def mean_max_weight(d_k: int, scale: float) -> float:
        q, k = randn(1, 1, 64, d_k, seed=1), randn(1, 1, 64, d_k, seed=2)
        return attention_weights(q, k, sm_scale=scale).amax(-1).mean().item()

    unscaled = [mean_max_weight(d, 1.0) for d in (4, 64, 1024)]
    scaled = [mean_max_weight(d, 1 / math.sqrt(d)) for d in (4, 64, 1024)]
    assert unscaled[0] < unscaled[1] < unscaled[2] and unscaled[2] > 0.9
    assert max(scaled) < 0.5  # scaled rows stay spread out over many keys


# ---------------------------------------------------------------------------------------------
# Multi-head attention is H small attentions side by side
# ---------------------------------------------------------------------------------------------


def test_multi_head_attention_is_the_concatenation_of_independent_single_head_attentions() -> None:
    config = tiny_config(num_attention_heads=4)
    torch.manual_seed(0)
    layer = BertSelfAttention(config, backend="reference").eval()
    x = randn(2, 5, config.hidden_size, seed=3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    packing = Packing(mask, 2, 5, x.device)  # the layer works on the 8 real tokens, (T, C)
    with torch.no_grad():
        multi = packing.unpack(layer(packing.pack(x), packing)[0])  # (B, N, C), 0 at padding

        heads = []
        d = config.head_dim
        for h in range(config.num_attention_heads):
            rows = slice(h * d, (h + 1) * d)  # head h owns D rows of each projection matrix
            q, k, v = (torch.nn.functional.linear(x, p.weight[rows], p.bias[rows])[:, None]
                       for p in (layer.query, layer.key, layer.value))  # (B, 1, N, D)
            heads.append(reference_attention(q, k, v, mask)[:, 0])    # (B, N, D)
    torch.testing.assert_close(multi[mask], torch.cat(heads, dim=-1)[mask])


# ---------------------------------------------------------------------------------------------
# The fused kernel's trick, in plain PyTorch: softmax one block of keys at a time
# ---------------------------------------------------------------------------------------------


def online_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             keep: torch.Tensor, block: int
                             ) -> tuple[torch.Tensor, list[list[dict[str, torch.Tensor]]]]:
    """softmax(q kᵀ/√d + mask) v for one head — q (Nq, D), k and v (Nk, D), keep (Nk,) bool —
    walking over the keys `block` at a time, as minitf/kernels/flash_attention.py::_attn_fwd does
    (there in base 2; here with exp). Returns the output and, per query row, the state
    after each block: s (scaled, masked scores), m, alpha, p, l, acc."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.zeros(q.shape[0], v.shape[-1], dtype=q.dtype)
    trace = []
    for i in range(q.shape[0]):
        m = torch.tensor(float("-inf"), dtype=q.dtype)  # running max
        l = torch.tensor(0.0, dtype=q.dtype)            # running sum of exp(s - m)
        acc = torch.zeros(v.shape[-1], dtype=q.dtype)   # running sum of exp(s - m) · v
        steps = []
        for start in range(0, k.shape[0], block):
            cols = slice(start, start + block)
            s = (k[cols] @ q[i]) * scale
            s = s.masked_fill(~keep[cols], float("-inf"))
            m_new = torch.maximum(m, s.max())
            m_sub = m_new if torch.isfinite(m_new) else torch.zeros_like(m_new)
            alpha = torch.exp(m - m_sub)        # rescales everything summed so far
            p = torch.exp(s - m_sub)
            l = alpha * l + p.sum()
            acc = alpha * acc + p @ v[cols]
            m = m_new
            steps.append(dict(s=s, m=m, alpha=alpha, p=p, l=l, acc=acc))
        out[i] = acc / l if l > 0 else acc      # the one division, at the end
        trace.append(steps)
    return out, trace


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_online_softmax_block_by_block_equals_the_full_softmax(block: int) -> None:
    q, k, v = randn(9, 16, seed=1), randn(13, 16, seed=2), randn(13, 16, seed=3)
    keep = torch.arange(13) < 10
    out, _ = online_softmax_attention(q, k, v, keep, block)
    expected = reference_attention(q[None, None], k[None, None], v[None, None], keep[None])[0, 0]
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------------------------------------
# Three implementations, one answer
# ---------------------------------------------------------------------------------------------


def test_reference_and_sdpa_agree() -> None:
    q, k, v = (randn(2, 3, 11, 16, seed=s) for s in (1, 2, 3))
    mask = random_mask(2, 11, seed=4)
    for key_padding_mask in (None, mask):
        torch.testing.assert_close(sdpa_attention(q, k, v, key_padding_mask),
                                   reference_attention(q, k, v, key_padding_mask))


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def fused_kernel_or_skip():  # noqa: ANN201 - returns the kernels module
    kernels = pytest.importorskip("minitf.kernels", reason="minitf.kernels (Triton) not importable")
    if not kernels.is_supported(torch.zeros(1, 1, 1, 16, device=DEVICE)):
        pytest.skip("the fused kernel needs a CUDA GPU or TRITON_INTERPRET=1 set before "
                    "minitf.kernels is imported (tests/conftest.py sets it)")
    return kernels


def test_the_fused_kernel_agrees_with_the_reference_forward_and_backward() -> None:
    kernels = fused_kernel_or_skip()
    # 37 keys: more than one key block (32 under the interpreter), the last one partial.
    q, k, v = (randn(2, 2, 37, 16, seed=s).to(DEVICE).requires_grad_() for s in (1, 2, 3))
    mask = random_mask(2, 37, seed=4).to(DEVICE)
    out = kernels.fused_attention(q, k, v, key_padding_mask=mask)
    expected = reference_attention(q, k, v, mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    grad = randn(*out.shape, seed=5).to(DEVICE)
    fused_grads = torch.autograd.grad(out, (q, k, v), grad)
    reference_grads = torch.autograd.grad(expected, (q, k, v), grad)
    for fused, reference in zip(fused_grads, reference_grads, strict=True):
        torch.testing.assert_close(fused, reference, atol=2e-5, rtol=2e-5)


# ---------------------------------------------------------------------------------------------
# docs/attention.md: the worked example and the code pointers
# ---------------------------------------------------------------------------------------------


def doc_block(marker: str) -> dict[str, object]:
    """Parse the fenced block after `<!-- marker -->` in docs/attention.md into {name: value}.

    Lines look like `name (optional words) = value  # comment`; a value is JSON (with -inf)
    and may continue over the following indented lines.
    """
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```[a-z]*\n(.*?)\n```", text, re.S)
    assert found, f"docs/attention.md has no fenced block after <!-- {marker} -->"
    values: dict[str, object] = {}
    name, parts = None, []

    def flush() -> None:
        if name is not None:
            raw = re.sub(r"(?<![\w.])inf\b", "Infinity", " ".join(parts))
            values[name] = json.loads(raw)

    for line in found.group(1).splitlines():
        line = line.split("#", 1)[0].rstrip()
        assignment = re.match(r"^([A-Za-z]\w*)\s*(?:\([^)]*\))?\s*=\s*(.*)$", line)
        if assignment:
            flush()
            name, parts = assignment.group(1), [assignment.group(2)]
        elif line.strip():
            parts.append(line.strip())
    flush()
    return values


def tensor(value: object) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def worked_example() -> dict[str, torch.Tensor]:
    """Every intermediate of the worked example, computed by minitf/model/attention.py."""
    given = doc_block("worked-example")
    q, k, v = (tensor(given[name])[None, None] for name in ("Q", "K", "V"))  # (1, 1, N, d_k)
    keep = torch.tensor(given["mask"], dtype=torch.bool)[None]                # (1, N)
    scores = q @ k.transpose(-2, -1)
    scaled = scores / math.sqrt(q.shape[-1])
    return dict(
        scores=scores[0, 0],
        scaled=scaled[0, 0],
        masked=scaled.masked_fill(~keep[:, None, None, :], float("-inf"))[0, 0],
        weights=attention_weights(q, k, keep)[0, 0],
        output=reference_attention(q, k, v, keep)[0, 0],
    )


def assert_printed(printed: object, computed: torch.Tensor, what: str) -> None:
    """The doc prints 4 decimals: agree to rounding, and -inf exactly where the code has -inf."""
    doc = tensor(printed)
    assert doc.shape == computed.shape, f"{what}: doc shape {tuple(doc.shape)}"
    assert torch.equal(doc.isinf(), computed.isinf()), f"{what}: -inf in different places"
    finite = ~computed.isinf()
    worst = (doc[finite] - computed[finite]).abs().max().item() if finite.any() else 0.0
    assert worst <= 5.1e-5, (f"docs/attention.md {what} drifted from the code (off by "
                             f"{worst:.1e}); the code gives\n{format_matrix(computed)}")


def format_matrix(t: torch.Tensor) -> str:
    def number(x: float) -> str:
        return "-inf" if x == float("-inf") else f"{x:.4f}"
    rows = t.tolist() if t.dim() == 2 else [t.tolist()]
    return ",\n".join("[" + ", ".join(number(x) for x in row) + "]" for row in rows)


def test_the_worked_example_in_the_docs_matches_the_code() -> None:
    printed = doc_block("worked-example")
    for name, computed in worked_example().items():
        assert name in printed, f"docs/attention.md worked example lacks `{name} = ...`"
        assert_printed(printed[name], computed, name)
    assert len(printed["tokens"]) == len(printed["mask"]) == len(printed["Q"])


def test_the_online_softmax_steps_in_the_docs_match_the_code() -> None:
    given = doc_block("worked-example")
    printed = doc_block("online-softmax-example")
    q, k, v = (tensor(given[name]) for name in ("Q", "K", "V"))
    keep = torch.tensor(given["mask"], dtype=torch.bool)
    row, block = int(printed["row"]), int(printed["block"])
    out, trace = online_softmax_attention(q, k, v, keep, block)
    for b, step in enumerate(trace[row], start=1):
        for name, value in step.items():
            key = f"block{b}_{name}"
            assert key in printed, f"docs/attention.md online-softmax example lacks `{key}`"
            assert_printed(printed[key], value, key)
    assert_printed(printed["out"], out[row], "out")
    assert_printed(printed["out"], worked_example()["output"][row], "out vs. output")


def code_pointers() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"`([\w/]+\.py)::([\w.]+)`", text)))


def test_every_code_pointer_in_the_docs_names_a_real_definition() -> None:
    pointers = code_pointers()
    assert len(pointers) >= 10, "expected docs/attention.md to point at the code throughout"
    for path, qualname in pointers:
        file = REPO / path
        assert file.is_file(), f"docs/attention.md points at {path}, which does not exist"
        node: ast.AST = ast.parse(file.read_text(encoding="utf-8"))
        for part in qualname.split("."):
            children = [c for c in ast.iter_child_nodes(node)
                        if isinstance(c, (ast.FunctionDef, ast.ClassDef)) and c.name == part]
            assert children, f"docs/attention.md points at {path}::{qualname}: no `{part}`"
            node = children[0]
