"""Fused attention in Triton, FlashAttention-2 style: softmax(Q Kᵀ · scale + mask) V.

The story
---------
The plain formula (minitf/model/attention.py, `reference_attention`) builds the (Nq × Nk) score
matrix S = Q Kᵀ, softmaxes each row and multiplies by V. For N = 4096 tokens and 12 heads that
matrix is ~800 MB in fp32 per sequence, and moving it through GPU memory costs far more than the
arithmetic.

This kernel never materialises S. One program owns BLOCK_M query rows of one (batch, head) and
walks over the keys in blocks of BLOCK_N. For each key block it computes the scores of its rows
against those keys, folds them into a running softmax, and forgets them. Only the output rows
(BLOCK_M × HEAD_DIM) and two statistics per row stay on chip:

    m_i : the largest score seen so far in row i        (the "running max")
    l_i : Σ_j exp(s_ij − m_i) over the keys seen so far (the "running sum")
    acc : Σ_j exp(s_ij − m_i) · v_j                      (the un-normalised output row)

Why the running max: exp(s) overflows fp32 once s > 88, so softmax is computed as
exp(s − max) / Σ exp(s − max). The max over *all* keys is not known until the last block, so we
use the max seen so far. When a later block raises it from m_old to m_new, every term summed so
far is too large by a factor exp(m_new − m_old); multiplying l_i and acc by
alpha = exp(m_old − m_new) ("the rescale") fixes them. At the end, out_i = acc_i / l_i.
This is the online softmax of Milakov & Gimelshein (2018) as used by FlashAttention-2 (Dao, 2023).

Two cheap tricks from the Triton tutorial: we work in base 2 (exp2 is one GPU instruction), so
the scale is sm_scale · log2(e), folded into one multiply; and the 1/l_i division happens once at
the end instead of per block.

Masks. BERT's attention_mask says which keys are real (True/1) and which are padding. The mask
enters as an additive bias of 0 or −inf per *key* (column), so exp2 gives masked keys exactly zero
weight. A causal mask (query i sees keys j ≤ i, aligned at the start when Nq ≠ Nk) is a −inf where
the column is ahead of the row. Both rows and columns past the sequence end are masked on every
load and store, so any length works. A row whose keys are *all* masked has l_i = 0; we define its
output as 0 (not 0/0 = NaN), matching the reference.

Skipping padding. For each batch element we compute kv_len = (index of its last real key) + 1,
without a host synchronisation. Programs stop walking keys at kv_len, so right-padded batches skip
the padding blocks entirely. Keys before kv_len are still checked against the mask, so any mask
(holes, left padding) stays correct; it is just not faster.

The forward also stores, per query row, the log-sum-exp lse_i = m_i + log2(l_i) (base 2) so that
the backward (flash_attention_bwd.py) can recompute P = exp2(S · scale − lse) block by block
without storing it.

Limits, enforced with MinitfError by `fused_attention`:
    * q (B, H, Nq, D), k and v (B, H, Nk, D); same B, H, D, dtype and device; any strides.
    * D (head_dim) ∈ {16, 32, 64, 128}: tl.arange needs a power of two, tl.dot needs ≥ 16,
      and D > 128 would not fit the fp32 accumulator in registers with these block sizes.
    * dtypes float16, bfloat16, float32; float64 only under the interpreter (for gradcheck).
    * Nq, Nk ≥ 1; Nq ≠ Nk is allowed. B·H ≤ 65535 (CUDA grid axis 1).
    * key_padding_mask (B, Nk), bool or integer, nonzero = attend.
    * Runs compiled on a CUDA tensor, or on CPU tensors under Triton's interpreter
      (TRITON_INTERPRET=1 set before `kernels` is imported). Anything else → MinitfError.

Precision: scores, softmax statistics and acc are fp32 (fp64 for fp64 inputs). On the GPU the
matrix products take fp16/bf16 operands on tensor cores (wgmma on Hopper) with fp32
accumulation; P and dS are rounded to the input dtype before their products, as in FA-2.
fp32 inputs use input_precision="ieee" (no TF32; plain FMAs, slow but exact enough to compare
with the reference). Under the interpreter every dot runs in fp32 because its bf16 dot is
wrong (triton issue #11584). Tolerances used by tests/test_kernels.py: fp32 ≤ 1e-5 (output) /
2e-5 (gradients) absolute at test sizes; fp16/bf16: at most 2× the error of PyTorch's own
fp16/bf16 computation against an fp32 reference, plus a slack of 1/16 ulp at 1.0.

Block sizes (minitf/kernels/config.py; fixed per head dim, no autotuning): on the GPU the forward
takes BLOCK_M=128 query rows per program and BLOCK_N=64 keys per step (32 for D = 128), 8 warps,
3 pipeline stages; fp32 uses 64 × 32. Under the interpreter 64 × 32, which keeps CPU tests fast
while small test shapes still cross block edges. The causal triangle is applied in every visited
key block (simple); blocks wholly above the diagonal are never visited.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from minitf.errors import MinitfError
from minitf.kernels.config import (
    GPU_DTYPES,
    HEAD_DIMS,
    LOG2_E,
    MAX_GRID_Y,
    dot_and_acc_dtypes,
    forward_config,
    interpreting,
)
from minitf.kernels.flash_attention_bwd import attention_backward


# ----------------------------------------------------------------------------------------------
# The forward kernel
# ----------------------------------------------------------------------------------------------
@triton.jit
def _attn_fwd(
    Q, K, V, O, LSE,  # (B, H, Nq, D), (B, H, Nk, D) ×2, (B, H, Nq, D), (B·H, Nq) fp32
    KEEP, KV_LEN,  # (B, Nk) int8 key-padding mask (1 = attend) and (B,) int32; if HAS_MASK
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    n_heads, n_q, n_k,
    qk_scale,  # sm_scale · log2(e): scores go straight into base 2
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr,  # operand type of tl.dot: the input dtype, or fp32 when interpreting
    ACC_DTYPE: tl.constexpr,  # fp32 (fp64 for fp64 inputs)
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)  # tl.dot on NVIDIA
    start_m = tl.program_id(0) * BLOCK_M  # first query row of this program
    bh = tl.program_id(1)  # which (batch, head)
    b = bh // n_heads
    h = bh % n_heads
    # int64 offsets: B·H·N·D can pass 2³¹ elements for long sequences.
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    o_base = O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh

    rows = start_m + tl.arange(0, BLOCK_M)  # query indices held by this program
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < n_q  # the last block may stick out past Nq

    # q: (BLOCK_M, HEAD_DIM), loaded once and kept in registers for the whole key loop.
    q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC_DTYPE)  # running max (base-2 units)
    l_i = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC_DTYPE)  # running Σ exp2(s - m_i) v

    # Which keys can matter: none past the last real key of this batch element, and with a
    # causal mask none past the last row of this block.
    kv_end = n_k
    if HAS_MASK:
        kv_end = tl.load(KV_LEN + b)
    if CAUSAL:
        kv_end = tl.minimum(kv_end, start_m + BLOCK_M)

    for start_n in range(0, kv_end, BLOCK_N):
        cols = start_n + offs_n  # key indices of this block
        col_ok = cols < kv_end
        if HAS_MASK:  # the key-padding mask: 1 = real token, 0 = padding
            keep = tl.load(KEEP + b * n_k + cols, mask=col_ok, other=0)
            col_ok = col_ok & (keep != 0)
        # The mask as a per-key bias: 0 where the key counts, -inf where it must get no weight.
        bias = tl.where(col_ok, 0.0, float("-inf"))

        # s = q kᵀ for this block: (BLOCK_M, BLOCK_N) scores, in base-2 units after the scale.
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=(cols < kv_end)[:, None], other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), out_dtype=ACC_DTYPE, input_precision="ieee")
        s = s * qk_scale + bias[None, :]
        if CAUSAL:  # query i sees keys j <= i
            s = tl.where(rows[:, None] >= cols[None, :], s, float("-inf"))

        # Online softmax. New running max; a row that has seen only masked keys still has
        # max -inf, and we subtract 0 instead so that exp2(-inf - (-inf)) never makes a NaN.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_sub[:, None])  # (BLOCK_M, BLOCK_N), masked keys → exactly 0
        alpha = tl.exp2(m_i - m_sub)  # the rescale of everything summed so far (≤ 1)
        l_i = l_i * alpha + tl.sum(p, 1)

        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=(cols < kv_end)[:, None], other=0.0).to(DOT_DTYPE)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(DOT_DTYPE), v, acc, out_dtype=ACC_DTYPE, input_precision="ieee")
        m_i = m_new

    # Normalise once. Fully masked rows (l_i = 0) get output 0 and lse = +inf, which makes the
    # backward's recomputed probabilities exp2(s - lse) exactly 0 for them.
    empty = l_i == 0.0
    l_div = tl.where(empty, 1.0, l_i)
    out = acc / l_div[:, None]
    lse = tl.where(empty, float("inf"), m_i + tl.log2(l_div))
    tl.store(LSE + bh * n_q + rows, lse, mask=row_ok)
    tl.store(o_base + rows[:, None] * stride_om + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------------------------
# Host side: checks, forward launch, autograd
# ----------------------------------------------------------------------------------------------
def is_supported(q: torch.Tensor) -> bool:
    """Whether fused_attention can run on a tensor like q right now (dtype, head dim, device,
    and batch × heads within the CUDA grid limit, which the interpreter does not enforce)."""
    if q.dim() != 4 or q.shape[-1] not in HEAD_DIMS or q.shape[0] * q.shape[1] > MAX_GRID_Y:
        return False
    if interpreting():
        return q.dtype in GPU_DTYPES + (torch.float64,)
    return q.is_cuda and q.dtype in GPU_DTYPES


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  key_padding_mask: torch.Tensor | None) -> None:
    if not interpreting() and not q.is_cuda:
        raise MinitfError(
            f"fused_attention needs a CUDA GPU or TRITON_INTERPRET=1 (got a tensor on {q.device}); "
            "use attn_backend='sdpa' on this machine"
        )
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise MinitfError(f"fused_attention: {name} must be (batch, heads, seq, head_dim), "
                              f"got shape {tuple(t.shape)}")
    if k.shape != v.shape:
        raise MinitfError(f"fused_attention: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise MinitfError(f"fused_attention: q {tuple(q.shape)} and k {tuple(k.shape)} must share "
                          "batch, heads and head_dim")
    if q.dtype != k.dtype or q.dtype != v.dtype or not (q.device == k.device == v.device):
        raise MinitfError("fused_attention: q, k, v must share dtype and device, got "
                          f"{q.dtype}/{k.dtype}/{v.dtype} on {q.device}/{k.device}/{v.device}")
    head_dim = q.shape[-1]
    if head_dim not in HEAD_DIMS:
        raise MinitfError(f"fused_attention: head_dim {head_dim} is not supported; the kernel "
                          f"needs one of {HEAD_DIMS}. Use attn_backend='sdpa' for this model")
    allowed = GPU_DTYPES + ((torch.float64,) if interpreting() else ())
    if q.dtype not in allowed:
        raise MinitfError(f"fused_attention: dtype {q.dtype} is not supported here; use one of "
                          f"{allowed} (float64 only under TRITON_INTERPRET=1)")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise MinitfError("fused_attention: sequence lengths must be at least 1")
    if q.shape[0] * q.shape[1] > MAX_GRID_Y:
        raise MinitfError(f"fused_attention: batch × heads = {q.shape[0] * q.shape[1]} exceeds "
                          f"{MAX_GRID_Y} (CUDA grid limit); split the batch")
    if key_padding_mask is not None:
        expected = (k.shape[0], k.shape[2])
        if tuple(key_padding_mask.shape) != expected:
            raise MinitfError(f"fused_attention: key_padding_mask must have shape (batch, seq_k) "
                              f"= {expected}, got {tuple(key_padding_mask.shape)}")
        if key_padding_mask.is_floating_point() or key_padding_mask.is_complex():
            raise MinitfError("fused_attention: key_padding_mask must be bool or integer "
                              f"(1 = attend), got {key_padding_mask.dtype}")


def _prepare_mask(key_padding_mask: torch.Tensor, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, kv_len): an int8 (B, Nk) copy of the mask and each row's last real key + 1.

    kv_len comes from a max over (position + 1) · keep, on the device: no host sync.
    """
    keep = (key_padding_mask.to(device) != 0).to(torch.int8).contiguous()
    positions = torch.arange(1, keep.shape[1] + 1, device=device, dtype=torch.int32)
    kv_len = (keep.to(torch.int32) * positions).amax(dim=1).to(torch.int32).contiguous()
    return keep, kv_len


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      keep: torch.Tensor | None, kv_len: torch.Tensor | None,
                      causal: bool, sm_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch _attn_fwd: returns (out like q, lse of shape (B·H, Nq) in base 2)."""
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    interp = interpreting()
    cfg = forward_config(head_dim, q.dtype, interp)
    dot_dtype, acc_dtype = dot_and_acc_dtypes(q.dtype, interp)
    out = torch.empty_like(q)  # same layout as q: a (B, N, H, D)-major q gives an o that merges
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    lse = torch.empty((batch * heads, n_q), device=q.device, dtype=lse_dtype)
    has_mask = keep is not None
    if not has_mask:  # placeholders, never read when HAS_MASK is False
        keep = torch.empty(1, device=q.device, dtype=torch.int8)
        kv_len = torch.empty(1, device=q.device, dtype=torch.int32)
    grid = (triton.cdiv(n_q, cfg.block_m), batch * heads)
    _attn_fwd[grid](
        q, k, v, out, lse, keep, kv_len,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, n_q, n_k, sm_scale * LOG2_E,
        HEAD_DIM=head_dim, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        HAS_MASK=has_mask, CAUSAL=causal, DOT_DTYPE=dot_dtype, ACC_DTYPE=acc_dtype,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out, lse


class _FusedAttention(torch.autograd.Function):
    """Forward saves (q, k, v, out, lse); backward recomputes P from them (no N×N storage)."""

    @staticmethod
    def forward(ctx, q, k, v, keep, kv_len, causal: bool, sm_scale: float):
        out, lse = attention_forward(q, k, v, keep, kv_len, causal, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse, keep, kv_len)
        ctx.causal = causal
        ctx.sm_scale = sm_scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, keep, kv_len = ctx.saved_tensors
        dq, dk, dv = attention_backward(grad_out, q, k, v, out, lse, keep, kv_len,
                                        ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None, None, None


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · sm_scale + mask) v with the fused kernel; differentiable in q, k and v.

    q: (B, H, Nq, D); k, v: (B, H, Nk, D); key_padding_mask: (B, Nk) bool/int, nonzero = attend.
    sm_scale defaults to 1/√D. Rows with every key masked come out as zeros. Raises MinitfError
    for inputs the kernel cannot take (see the module docstring for the limits).
    """
    _check_inputs(q, k, v, key_padding_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    keep = kv_len = None
    if key_padding_mask is not None:
        keep, kv_len = _prepare_mask(key_padding_mask, q.device)
    return _FusedAttention.apply(q, k, v, keep, kv_len, bool(causal), scale)
