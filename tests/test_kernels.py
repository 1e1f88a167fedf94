"""The fused Triton attention kernel (minitf/kernels/) against reference_attention
(minitf.model.attention).

Without a GPU these run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1);
with CUDA the same small cases run compiled on the GPU, and the `gpu`-marked tests add real
sizes. The interpreter costs ~15 ms per loop step, so the CPU shapes are small but still cross
block edges (interpreter blocks: 64 queries × 32 keys).

Tolerances:
    fp32      kernel vs the fp32 reference: ≤ 1e-5 (output), ≤ 2e-5 (gradients) absolute.
    fp16/bf16 FlashAttention's rule: the kernel's error against the fp32 reference (computed on
              the upcast inputs) is at most twice the error of the same formula run by PyTorch
              in fp16/bf16, plus a slack of 1/16 ulp at 1.0 (fp16 2^-14, bf16 2^-11). The slack
              only matters when PyTorch's error is ~0: at N = 1 softmax is exactly 1, PyTorch's
              dq is exactly 0 and the kernel's is ~4e-7 (p·(dp − Δ) with Δ from the rounded O).
    fp32, big the same 2× rule against an fp64 reference, slack 1e-6, where absolute 1e-5 is
              not meaningful (scores in the hundreds; N = 8k on the GPU).
Measured in the interpreter (fp32 dots): 16-bit kernel/PyTorch error ratios of 0.4–1.8 (N ≥ 17).
"""

from __future__ import annotations

import pytest
import torch

import minitf.kernels as kernels
import minitf.kernels.flash_attention as fa
from minitf.errors import MinitfError
from minitf.kernels.config import interpreting
from minitf.model.attention import get_attention, reference_attention

DEVICE = "cpu" if interpreting() else "cuda"
LOW_PRECISION_SLACK = {torch.float16: 2.0**-14, torch.bfloat16: 2.0**-11, torch.float32: 1e-6}
FP32_ATOL = {"out": 1e-5, "dq": 2e-5, "dk": 2e-5, "dv": 2e-5}

pytestmark = [
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                       reason="needs CUDA or the interpreter"),
    # triton 3.6's interpreter + numpy 2.3 warn on every runtime loop bound (triton #9171).
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def make_qkv(batch, heads, n_q, n_k, head_dim, dtype, seed=0, device=DEVICE, scale=1.0):
    """Random fp32 q, k, v (the 'true' inputs), rounded to dtype, as new leaf tensors."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, n_q, head_dim), (batch, heads, n_k, head_dim),
              (batch, heads, n_k, head_dim)]
    return [(torch.randn(s, generator=gen) * scale).to(device=device, dtype=dtype)
            for s in shapes]


def prefix_mask(lengths, n_k, device=DEVICE):
    """BERT-style right padding: row b attends to its first lengths[b] keys."""
    return torch.arange(n_k, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]


def out_and_grads(fn, q, k, v, do, **kwargs):
    """fn's output and (dq, dk, dv) for upstream gradient do, on fresh leaves of q, k, v."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves, **kwargs)
    grads = torch.autograd.grad(out, leaves, do.to(out.dtype))
    return {"out": out.detach(), "dq": grads[0], "dk": grads[1], "dv": grads[2]}


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def low_precision_slack(dtype: torch.dtype, n_keys: int, ref: torch.Tensor) -> float:
    """The error allowed on top of 2 × PyTorch's own. fp32: the textbook worst case of an n-term
    fp32 sum, n·eps·max|ref| (Higham's gamma_n), as the kernel sums over the keys in another
    order than PyTorch does; how accurate PyTorch's own order is differs between CPUs (on an
    Intel Xeon with AMX its dv error was 6× smaller than the kernel's 2e-5 on |dv| ≈ 5).
    16-bit: a fixed slack of the dtype's resolution."""
    if dtype == torch.float32:
        return max(LOW_PRECISION_SLACK[dtype],
                   n_keys * torch.finfo(torch.float32).eps * ref.abs().max().item())
    return LOW_PRECISION_SLACK[dtype]


def check_against_reference(q, k, v, key_padding_mask=None, causal=False, sm_scale=None,
                            fp32_rule="atol"):
    """Run the kernel and the fp32 reference (on upcast inputs) and assert the tolerances of the
    module docstring; returns the kernel's results. 16-bit inputs use the 2× rule against
    PyTorch run in that dtype. fp32 inputs use FP32_ATOL, or with fp32_rule="2x" (large
    gradients, long rows) the 2× rule against an fp64 reference with PyTorch fp32 as yardstick.
    """
    dtype = q.dtype
    kwargs = dict(key_padding_mask=key_padding_mask, causal=causal, sm_scale=sm_scale)
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(q.shape, generator=gen).to(q.device)

    got = out_and_grads(kernels.fused_attention, q, k, v, do, **kwargs)
    for name in got:
        assert got[name].dtype == dtype, name
        assert torch.isfinite(got[name]).all(), f"{name} has NaN/inf"
    if dtype == torch.float32 and fp32_rule == "atol":
        ref = out_and_grads(reference_attention, q, k, v, do, **kwargs)
        for name in got:
            err = max_err(got[name], ref[name])
            assert err <= FP32_ATOL[name], f"{name}: {err:.3g} > {FP32_ATOL[name]}"
        return got
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    ref = out_and_grads(reference_attention, q.to(ref_dtype), k.to(ref_dtype), v.to(ref_dtype),
                        do, **kwargs)
    plain = out_and_grads(reference_attention, q, k, v, do, **kwargs)  # PyTorch in dtype
    for name in got:
        err, err_torch = max_err(got[name], ref[name]), max_err(plain[name], ref[name])
        bound = 2 * err_torch + low_precision_slack(dtype, k.shape[-2], ref[name])
        assert err <= bound, f"{name}: kernel error {err:.3g} > 2 × torch {err_torch:.3g} + slack"
    return got


DTYPES = [torch.float32, torch.float16, torch.bfloat16]


# ----------------------------------------------------------------------------------------------
# correctness against the reference
# ----------------------------------------------------------------------------------------------
# (batch, heads, n_q, n_k, head_dim, key lengths or None, causal)
CASES = {
    "n1": (1, 2, 1, 1, 16, None, False),
    "n17": (1, 2, 17, 17, 32, None, False),
    "n100-padded": (2, 2, 100, 100, 64, [100, 37], False),
    "n130-causal-d128": (1, 2, 130, 130, 128, None, True),
    "nq130-nk70-padded-causal": (2, 1, 130, 70, 64, [70, 3], True),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_reference(case, dtype):
    batch, heads, n_q, n_k, head_dim, lengths, causal = CASES[case]
    q, k, v = make_qkv(batch, heads, n_q, n_k, head_dim, dtype)
    mask = None if lengths is None else prefix_mask(lengths, n_k)
    check_against_reference(q, k, v, key_padding_mask=mask, causal=causal)


@pytest.mark.parametrize("head_dim", [16, 32, 64, 128])
def test_head_dims(head_dim):
    q, k, v = make_qkv(1, 2, 40, 40, head_dim, torch.float32, seed=head_dim)
    check_against_reference(q, k, v, key_padding_mask=prefix_mask([33], 40))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fully_padded_rows_are_zero(dtype):
    """Batch element 1 has no real key at all: output 0, no NaN, and no gradient flows."""
    q, k, v = make_qkv(2, 2, 50, 50, 32, dtype)
    mask = prefix_mask([50, 0], 50)
    got = check_against_reference(q, k, v, key_padding_mask=mask)
    for name in ("out", "dq", "dk", "dv"):
        assert (got[name][1] == 0).all(), name


def test_general_mask_with_holes_and_left_padding():
    """The kernel skips keys past the last real one; everything before still obeys the mask."""
    q, k, v = make_qkv(3, 1, 70, 70, 32, torch.float32)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(3, 70, generator=gen) > 0.5  # random holes
    mask[1] = torch.arange(70) >= 45  # left padding
    mask[2, 60:] = False  # holes and right padding
    check_against_reference(q, k, v, key_padding_mask=mask.to(DEVICE))


def test_right_padding_is_read_as_lengths_and_only_other_masks_as_bytes():
    """Right padding reaches the kernels as one key count per row (no per-key mask loads); a
    mask with holes or left padding keeps its bytes."""
    right = prefix_mask([33, 20, 0], 33)
    layout = fa.padding_layout(right, right.device)
    assert layout.keep is None and layout.kv_len.tolist() == [33, 20, 0]
    holes = right.clone()
    holes[0, 5] = False
    layout = fa.padding_layout(holes, holes.device)
    assert layout.keep is not None and layout.kv_len.tolist() == [33, 20, 0]


def test_causal_with_padding_and_custom_scale():
    q, k, v = make_qkv(2, 2, 33, 33, 64, torch.float32)
    check_against_reference(q, k, v, key_padding_mask=prefix_mask([33, 20], 33), causal=True,
                            sm_scale=0.3)


def test_large_scores_need_the_running_max():
    """Logits in the hundreds overflow exp() without the max subtraction; the rescale keeps the
    answer right when the max keeps rising from key block to key block."""
    q, k, v = make_qkv(1, 1, 40, 100, 32, torch.float32, scale=4.0)
    k = k * torch.linspace(0.1, 1.0, 100, device=k.device)[None, None, :, None]  # rising max
    check_against_reference(q, k, v, fp32_rule="2x")


def test_int_mask_equals_bool_mask():
    q, k, v = make_qkv(2, 1, 20, 20, 16, torch.float32)
    mask = prefix_mask([20, 7], 20)
    out_bool = kernels.fused_attention(q, k, v, key_padding_mask=mask)
    out_int = kernels.fused_attention(q, k, v, key_padding_mask=mask.to(torch.int64))
    assert torch.equal(out_bool, out_int)


def test_non_contiguous_inputs_and_stride0_gradient():
    """q as BERT makes it: (B, N, H, D) transposed to (B, H, N, D); `.sum()` gives a stride-0
    upstream gradient. Both are read through their strides."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 45, 2, 32, generator=gen).to(DEVICE)  # (B, N, H, D)
    q = x.transpose(1, 2).requires_grad_(True)
    k = (x.flip(1) * 0.5).transpose(1, 2).detach().requires_grad_(True)
    v = torch.randn(2, 2, 32, 45, generator=gen).to(DEVICE).transpose(2, 3).requires_grad_(True)
    assert not q.is_contiguous() and not v.is_contiguous()
    mask = prefix_mask([45, 30], 45)
    kernels.fused_attention(q, k, v, key_padding_mask=mask).sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    reference_attention(q, k, v, key_padding_mask=mask).sum().backward()
    for g, t in zip(got, (q, k, v), strict=True):
        assert max_err(g, t.grad) <= 2e-5


def test_through_minitf_backend():
    q, k, v = make_qkv(2, 2, 30, 30, 32, torch.float32)
    mask = prefix_mask([30, 11], 30)
    out = get_attention("triton")(q, k, v, key_padding_mask=mask)
    assert max_err(out, reference_attention(q, k, v, key_padding_mask=mask)) <= 1e-5


def test_a_classifier_through_the_kernel_matches_the_reference():
    """The model's own calls: every layer over the padded batch, then the last layer with one
    [CLS] query per row (Nq = 1 against all keys)."""
    from minitf import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=16)
    torch.manual_seed(0)
    reference = BertForSequenceClassification(config, attn_backend="reference").eval()
    fused = BertForSequenceClassification(config, attn_backend="triton").eval()
    fused.load_state_dict(reference.state_dict())
    ids = torch.randint(1, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = (torch.arange(12)[None] < torch.tensor([[12], [5], [9]])).long()
    reference.to(DEVICE), fused.to(DEVICE)
    ids, mask = ids.to(DEVICE), mask.to(DEVICE)
    with torch.no_grad():
        assert max_err(fused(ids, mask).logits, reference(ids, mask).logits) <= 1e-5


@pytest.mark.skipif(DEVICE != "cpu", reason="float64 runs only under the interpreter")
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_fp64(causal):
    q, k, v = (t.requires_grad_(True) for t in make_qkv(2, 1, 19, 19, 16, torch.float64))
    mask = prefix_mask([19, 6], 19)
    assert torch.autograd.gradcheck(
        lambda q, k, v: kernels.fused_attention(q, k, v, key_padding_mask=mask, causal=causal),
        (q, k, v), fast_mode=True)


# ----------------------------------------------------------------------------------------------
# support checks and clear errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_dim", [8, 48, 256])
def test_unsupported_head_dim(head_dim):
    q, k, v = make_qkv(1, 1, 8, 8, head_dim, torch.float32)
    assert not kernels.is_supported(q)
    with pytest.raises(MinitfError, match="head_dim"):
        kernels.fused_attention(q, k, v)


def test_is_supported():
    q = torch.zeros(1, 1, 4, 64, device=DEVICE)
    assert kernels.is_supported(q)
    assert kernels.is_supported(q.half()) and kernels.is_supported(q.bfloat16())
    assert not kernels.is_supported(q.int())
    assert not kernels.is_supported(q[0])  # 3-D


def test_is_supported_refuses_more_programs_than_the_cuda_grid_holds():
    # batch × heads is grid axis 1 (at most 65535 on CUDA); expand() costs no memory.
    one = torch.zeros(1, 1, 4, 64, device=DEVICE)
    assert kernels.is_supported(one.expand(65535, 1, 4, 64))
    assert not kernels.is_supported(one.expand(65536, 1, 4, 64))
    assert not kernels.is_supported(one.expand(8192, 12, 4, 64))  # B·H = 98304


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(fa, "interpreting", lambda: False)
    q, k, v = make_qkv(1, 1, 8, 8, 32, torch.float32, device="cpu")
    assert not kernels.is_supported(q)
    with pytest.raises(MinitfError, match="CUDA GPU or TRITON_INTERPRET=1.*sdpa"):
        kernels.fused_attention(q, k, v)


@pytest.mark.parametrize("what", ["k-v", "head-dim", "batch", "rank", "mask-shape", "mask-float",
                                  "dtype", "empty"])
def test_bad_inputs(what):
    q, k, v = make_qkv(2, 2, 8, 8, 32, torch.float32)
    mask = None
    if what == "k-v":
        v = v[:, :, :5]
    elif what == "head-dim":
        k, v = make_qkv(2, 2, 8, 8, 16, torch.float32)[1:]
    elif what == "batch":
        q = q[:1]
    elif what == "rank":
        q = q[0]
    elif what == "mask-shape":
        mask = torch.ones(2, 7, dtype=torch.bool, device=DEVICE)
    elif what == "mask-float":
        mask = torch.ones(2, 8, device=DEVICE)
    elif what == "dtype":
        q = q.half()
    elif what == "empty":
        q = q[:, :, :0]
    with pytest.raises(MinitfError, match="fused_attention"):
        kernels.fused_attention(q, k, v, key_padding_mask=mask)


# ----------------------------------------------------------------------------------------------
# GPU: real sizes, compiled kernel (skipped without CUDA)
# ----------------------------------------------------------------------------------------------
# On a GPU machine run with TRITON_INTERPRET=1, these would interpret N = 8k: skip them there.
compiled_gpu_only = pytest.mark.skipif(DEVICE != "cuda", reason="needs the compiled kernel")

GPU_CASES = {
    # (batch, heads, n, head_dim, padded, causal)
    "n8192-d64-padded": (2, 2, 8192, 64, True, False),
    "n4097-d128-causal-padded": (2, 2, 4097, 128, True, True),
    "n1000-d64": (4, 4, 1000, 64, False, False),
    "n2048-d128": (2, 4, 2048, 128, False, False),
}


@pytest.mark.gpu
@compiled_gpu_only
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", list(GPU_CASES), ids=str)
def test_gpu_matches_reference(case, dtype):
    batch, heads, n, head_dim, padded, causal = GPU_CASES[case]
    q, k, v = make_qkv(batch, heads, n, n, head_dim, dtype, device="cuda")
    mask = None
    if padded:  # sequence 0 full, the others padded to random lengths
        gen = torch.Generator().manual_seed(0)
        lengths = [n] + torch.randint(1, n, (batch - 1,), generator=gen).tolist()
        mask = prefix_mask(lengths, n, device="cuda")
    # At N = 8k fp32 rounding in any implementation passes 1e-5: use the 2× rule for fp32 too.
    check_against_reference(q, k, v, key_padding_mask=mask, causal=causal, fp32_rule="2x")


@pytest.mark.gpu
@compiled_gpu_only
def test_gpu_fully_padded_rows_and_long_padding():
    """Keys past kv_len are skipped: a batch with lengths [8192, 1, 0] must still be exact."""
    q, k, v = make_qkv(3, 2, 8192, 64, 64, torch.bfloat16, device="cuda")
    mask = prefix_mask([8192, 1, 0], 8192, device="cuda")
    got = check_against_reference(q, k, v, key_padding_mask=mask)
    assert (got["out"][2] == 0).all() and (got["dk"][2] == 0).all()


@pytest.mark.gpu
@compiled_gpu_only
def test_gpu_no_nan_for_random_bf16_at_scale():
    q, k, v = make_qkv(8, 12, 512, 64, 64, torch.bfloat16, device="cuda", scale=3.0)
    out = kernels.fused_attention(q, k, v)
    assert torch.isfinite(out).all()
    assert max_err(out, reference_attention(q.float(), k.float(), v.float())) < 0.1
