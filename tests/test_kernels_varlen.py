"""varlen_attention (minitf/kernels/varlen.py) against the reference, sequence by sequence.

Packed (T, H, D) tokens with cumulative lengths; the reference runs minitf's formula on each
sequence alone. Tolerances are those of tests/test_kernels.py: fp32 ≤ 1e-5 (output) / 2e-5
(gradients) absolute; fp16/bf16 at most 2× PyTorch's own error in that dtype + 1/16 ulp at 1.
Interpreter blocks are 64 queries × 32 keys, so lengths 70 and 100 cross block edges.
"""

from __future__ import annotations

import pytest
import torch
from test_kernels import DEVICE, FP32_ATOL, LOW_PRECISION_SLACK, max_err

import minitf.kernels as kernels
from minitf.errors import MinitfError
from minitf.model.attention import reference_attention

pytestmark = [
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                       reason="needs CUDA or the interpreter"),
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def cu(lengths) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32,
                        device=DEVICE)


def packed(lengths, heads, head_dim, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(sum(lengths), heads, head_dim, generator=gen).to(DEVICE, dtype)


def per_sequence_reference(q, k, v, lens_q, lens_k, causal):
    """Each sequence through reference_attention alone, concatenated back to (Tq, H, D)."""
    outs, sq, sk = [], 0, 0
    for lq, lk in zip(lens_q, lens_k, strict=True):
        qs, ks, vs = (t.transpose(0, 1)[None] for t in (q[sq:sq + lq], k[sk:sk + lk],
                                                         v[sk:sk + lk]))
        if lk == 0:  # no keys: the kernel's convention, zeros
            outs.append(torch.zeros_like(q[sq:sq + lq]) + 0 * qs.sum())
        else:
            outs.append(reference_attention(qs, ks, vs, causal=causal)[0].transpose(0, 1))
        sq, sk = sq + lq, sk + lk
    return torch.cat(outs)


def results(fn, q, k, v, do):
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, do.to(out.dtype), allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return {"out": out.detach(), "dq": grads[0], "dk": grads[1], "dv": grads[2]}


def check_varlen(lens_q, lens_k=None, heads=2, head_dim=32, dtype=torch.float32, causal=False,
                 seed=0):
    lens_k = lens_q if lens_k is None else lens_k
    q = packed(lens_q, heads, head_dim, dtype, seed)
    k, v = packed(lens_k, heads, head_dim, dtype, seed + 1), packed(lens_k, heads, head_dim,
                                                                      dtype, seed + 2)
    do = packed(lens_q, heads, head_dim, torch.float32, seed + 3)
    cu_k = None if lens_k is lens_q else cu(lens_k)

    def kernel(q, k, v):
        return kernels.varlen_attention(q, k, v, cu(lens_q), max(lens_q), cu_k,
                                        None if cu_k is None else max(lens_k), causal=causal)

    def reference(q, k, v):
        return per_sequence_reference(q, k, v, lens_q, lens_k, causal)

    got = results(kernel, q, k, v, do)
    for name in got:
        assert got[name].dtype == dtype and torch.isfinite(got[name]).all(), name
    if dtype == torch.float32:
        ref = results(reference, q, k, v, do)
        for name in got:
            err = max_err(got[name], ref[name])
            assert err <= FP32_ATOL[name], f"{name}: {err:.3g} > {FP32_ATOL[name]}"
        return got
    ref = results(reference, q.float(), k.float(), v.float(), do)
    plain = results(reference, q, k, v, do)
    for name in got:
        err, err_torch = max_err(got[name], ref[name]), max_err(plain[name], ref[name])
        assert err <= 2 * err_torch + LOW_PRECISION_SLACK[dtype], (
            f"{name}: kernel error {err:.3g} > 2 × torch {err_torch:.3g} + slack")
    return got


CASES = {
    "length-1": [1],
    "ones": [1, 1, 1],
    "all-equal": [37, 37, 37],
    "one-long-many-short": [100, 3, 5, 1, 7, 2],
    "not-a-block-multiple": [70, 33],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_varlen_matches_reference(case, dtype):
    check_varlen(CASES[case], dtype=dtype)


@pytest.mark.parametrize("head_dim", [16, 64, 128])
def test_varlen_head_dims(head_dim):
    check_varlen([40, 9], heads=1, head_dim=head_dim, seed=head_dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_varlen_causal(dtype):
    check_varlen([70, 1, 20], causal=True, dtype=dtype)


def test_varlen_separate_key_packing_and_empty_sequences():
    """Queries and keys from different packings; a sequence with no keys gives zeros and a
    sequence with no queries contributes nothing."""
    got = check_varlen([3, 40, 0, 5], lens_k=[20, 7, 4, 0])
    assert (got["out"][43:] == 0).all() and (got["dq"][43:] == 0).all()


def test_varlen_reads_a_projection_view_without_copying():
    """The encoder's case: q, k, v are (T, H, D) views of one fused (T, 3·H·D) projection."""
    lengths, heads, head_dim = [30, 12], 2, 16
    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(sum(lengths), 3 * heads * head_dim, generator=gen).to(DEVICE)
    q, k, v = (t.view(-1, heads, head_dim) for t in qkv.split(heads * head_dim, dim=1))
    assert not q.is_contiguous()
    out = kernels.varlen_attention(q, k, v, cu(lengths), max(lengths))
    ref = per_sequence_reference(q, k, v, lengths, lengths, False)
    assert max_err(out, ref) <= FP32_ATOL["out"]


def test_varlen_equals_the_padded_kernel_on_real_rows():
    """Packing a right-padded batch and running varlen gives the padded kernel's real rows."""
    lengths, n, heads, head_dim = [45, 12, 30], 45, 2, 32
    mask = torch.arange(n, device=DEVICE)[None] < torch.tensor(lengths, device=DEVICE)[:, None]
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(3, heads, n, head_dim, generator=gen).to(DEVICE) for _ in range(3))
    padded = kernels.fused_attention(q, k, v, key_padding_mask=mask)
    pack = [t.transpose(1, 2)[mask] for t in (q, k, v)]  # (T, H, D)
    cu_seqlens = kernels.cu_seqlens_from_mask(mask)
    assert cu_seqlens.tolist() == [0, 45, 57, 87]
    out = kernels.varlen_attention(*pack, cu_seqlens, n)
    assert max_err(out, padded.transpose(1, 2)[mask]) <= 1e-6


@pytest.mark.skipif(DEVICE != "cpu", reason="float64 runs only under the interpreter")
def test_varlen_gradcheck_fp64():
    lengths = [19, 4]
    q, k, v = (packed(lengths, 1, 16, torch.float64, s).requires_grad_(True) for s in range(3))
    assert torch.autograd.gradcheck(
        lambda q, k, v: kernels.varlen_attention(q, k, v, cu(lengths), 19, causal=True),
        (q, k, v), fast_mode=True)


@pytest.mark.parametrize("what", ["rank", "heads", "cu-dtype", "cu-batch", "max", "scale"])
def test_varlen_bad_inputs(what):
    q = k = v = packed([4, 4], 2, 16, torch.float32, 0)
    cu_q, cu_k, max_q, scale = cu([4, 4]), None, 4, None
    if what == "rank":
        q = q[None]
    elif what == "heads":
        k = v = packed([4, 4], 1, 16, torch.float32, 0)
    elif what == "cu-dtype":
        cu_q = cu_q.long()
    elif what == "cu-batch":
        cu_k = cu([4, 2, 2])
    elif what == "max":
        max_q = 0
    elif what == "scale":
        scale = -1.0
    with pytest.raises(MinitfError, match="varlen_attention|sm_scale"):
        kernels.varlen_attention(q, k, v, cu_q, max_q, cu_k, None if cu_k is None else 4,
                                 sm_scale=scale)


# ----------------------------------------------------------------------------------------------
# The encoder through the varlen kernel (minitf.model.attention.packed_attention)
# ----------------------------------------------------------------------------------------------


def test_padded_batch_goes_through_varlen_and_matches_the_reference(monkeypatch):
    """attn_backend="triton" on a padded batch: full layers run varlen_attention, the padded
    kernel only sees the last layer's [CLS] queries (Nq = 1), and logits and weight gradients
    equal the reference backend's."""
    from minitf import BertConfig, BertForSequenceClassification

    calls = {"varlen": 0, "padded_nq": []}
    varlen, padded = kernels.varlen_attention, kernels.fused_attention

    def counting_varlen(*args, **kwargs):
        calls["varlen"] += 1
        return varlen(*args, **kwargs)

    def recording_padded(q, *args, **kwargs):
        calls["padded_nq"].append(q.shape[2])
        return padded(q, *args, **kwargs)

    monkeypatch.setattr(kernels, "varlen_attention", counting_varlen)
    monkeypatch.setattr(kernels, "fused_attention", recording_padded)
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    reference = BertForSequenceClassification(config, attn_backend="reference").to(DEVICE)
    fused = BertForSequenceClassification(config, attn_backend="triton").to(DEVICE)
    fused.load_state_dict(reference.state_dict())
    ids = torch.randint(1, 40, (3, 12), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    mask = (torch.arange(12)[None] < torch.tensor([[12], [5], [1]])).long().to(DEVICE)
    labels = torch.tensor([0, 1, 1], device=DEVICE)
    losses = []
    for model in (reference, fused):
        model.train()  # gradients through the whole encoder (dropout is 0)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        losses.append(out)
    assert calls["varlen"] == 1 and calls["padded_nq"] == [1]  # layer 0; [CLS] in layer 1
    assert max_err(losses[1].logits, losses[0].logits) <= 1e-5
    for (name, p_ref), p_fused in zip(reference.named_parameters(), fused.parameters(),
                                      strict=True):
        assert max_err(p_fused.grad, p_ref.grad) <= 2e-5, name


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="autotuning needs the compiled kernel")
def test_gpu_autotuned_varlen_and_padded(monkeypatch):
    """With autotuning on (the default; the quick GPU tests turn it off), the tuner times every
    config of the lists, runs the fastest, and the answer still matches the reference."""
    from minitf.kernels.config import configs_for
    from minitf.kernels.flash_attention import FORWARD
    from minitf.kernels.flash_attention_bwd import DKDV, DQ

    monkeypatch.delenv("MINITF_AUTOTUNE", raising=False)
    got = check_varlen([1000, 17, 300], heads=4, head_dim=64, dtype=torch.bfloat16)
    assert torch.isfinite(got["dq"]).all()
    for kernel in (FORWARD, DKDV, DQ):
        names = [str(c) for c in configs_for(kernel.name, 64, torch.bfloat16)]
        assert kernel.last_config in names, (kernel.name, kernel.last_config)
    lengths = [512, 100]
    q, k, v = (packed(lengths, 4, 128, torch.float16, s) for s in range(3))
    mask = torch.arange(512, device=DEVICE)[None] < torch.tensor(lengths, device=DEVICE)[:, None]
    padded = [torch.zeros(2, 512, 4, 128, device=DEVICE, dtype=torch.float16) for _ in range(3)]
    for dst, src in zip(padded, (q, k, v), strict=True):
        dst[mask] = src
    out = kernels.fused_attention(*(t.transpose(1, 2) for t in padded), key_padding_mask=mask)
    ref = per_sequence_reference(q.float(), k.float(), v.float(), lengths, lengths, False)
    assert max_err(out.transpose(1, 2)[mask], ref) < 2e-2
