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
the scale is sm_scale · log2(e), folded into the exponent's multiply-add (below); and the 1/l_i
division happens once at the end instead of per block.

Masks and lengths. BERT's attention_mask says which keys are real and which are padding. With
right padding (the usual case) all a program needs is each row's key count kv_len: keys at or
past it get a score of −inf (exp2 gives them exactly zero weight), and key blocks wholly past it
are never visited. Any other mask (holes, left padding) is loaded as one byte per key and
combined with the same −inf select, but it is not faster. A causal mask (query i sees keys
j ≤ i, aligned at the start when Nq ≠ Nk) is a −inf where the column is ahead of the row; key
blocks wholly above the diagonal are never visited. Rows and columns past the sequence end are
masked on every load and store, so any length works. A row whose keys are *all* masked has
l_i = 0; we define its output as 0 (not 0/0 = NaN), matching the reference.

One multiply-add per score. The raw score q·k is scaled into base 2 only inside exp2: the
running max is taken over the raw scores and scaled once per row (max commutes with a positive
scale), so p = exp2(s · scale − m) is a single fused multiply-add per score.

Variable length (minitf/kernels/varlen.py). A padded batch still runs the query rows of padding
through every kernel only for the caller to throw them away. The encoder already packs its real
tokens into a (T, C) matrix, so the same kernels also read q, k, v as packed (T, H, D) tensors
with cumulative sequence lengths cu_seqlens (FlashAttention-2's variable-length interface):
sequence b owns tokens cu_seqlens[b] .. cu_seqlens[b+1] − 1. Only where a sequence starts and
how long it is change (`_sequence`); the grid covers the longest sequence and programs past
the end of a shorter one return at once. No padded query or key is ever computed.

The forward also stores, per query row, the log-sum-exp lse_i = m_i + log2(l_i) (base 2) so that
the backward (flash_attention_bwd.py) can recompute P = exp2(S · scale − lse) block by block
without storing it.

Limits, enforced with MinitfError by `fused_attention`:
    * q (B, H, Nq, D), k and v (B, H, Nk, D); same B, H, D, dtype and device; any strides.
    * D (head_dim) ∈ {16, 32, 64, 128}: tl.arange needs a power of two, tl.dot needs ≥ 16,
      and D > 128 would not fit the fp32 accumulator in registers with these block sizes.
    * dtypes float16, bfloat16, float32; float64 only under the interpreter (for gradcheck).
    * Nq, Nk ≥ 1; Nq ≠ Nk is allowed. B·H ≤ 65535 (CUDA grid axis 1).
    * key_padding_mask (B, Nk), bool or integer, nonzero = attend. sm_scale > 0.
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

Launch configs (minitf/kernels/config.py): on the GPU each kernel is autotuned over a short list
of block sizes × stages × warps per head-dim group, keyed on the sequence-length bucket, causal
and masking mode; every config on the list compiles spill-free for sm_90 and sm_80
(`python -m minitf.kernels.compile_check`). Under the interpreter one fixed 64 × 32 config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from minitf.errors import MinitfError
from minitf.kernels.config import (
    GPU_DTYPES,
    HEAD_DIMS,
    LOG2_E,
    MAX_GRID_Y,
    LaunchConfig,
    TunedKernel,
    dot_and_acc_dtypes,
    interpreting,
    length_bucket,
)


# ----------------------------------------------------------------------------------------------
# Where a sequence lives: the one place the padded and the packed (varlen) layouts differ
# ----------------------------------------------------------------------------------------------
@triton.jit
def _sequence(b, n_q, n_k, CU_Q, CU_K, KV_LEN,
              VARLEN: tl.constexpr, HAS_LENS: tl.constexpr):
    """(first query token, query count, first key token, key count) of batch element b.

    Padded: every sequence starts at token 0 of its own (b, h) slice and has Nq queries; its
    keys end at kv_len[b] with right padding. Varlen: tokens cu[b] .. cu[b+1] - 1 of the
    packed tensors (the batch stride is 0 there)."""
    if VARLEN:
        q_start = tl.load(CU_Q + b)
        q_len = tl.load(CU_Q + b + 1) - q_start
        k_start = tl.load(CU_K + b)
        k_len = tl.load(CU_K + b + 1) - k_start
    else:
        q_start = b * 0  # an int32 zero like the loads above
        k_start = b * 0
        q_len = n_q
        k_len = n_k
        if HAS_LENS:
            k_len = tl.load(KV_LEN + b)
    return q_start, q_len, k_start, k_len


@triton.jit
def _offset(b, h, first, stride_b, stride_h, stride_t):
    """Element offset of token `first` of (batch b, head h), in int64: B·H·N·D can pass 2³¹."""
    return b.to(tl.int64) * stride_b + h.to(tl.int64) * stride_h + first.to(tl.int64) * stride_t


@triton.jit
def _keys_ok(cols, k_len, KEEP, b, n_k, HAS_HOLES: tl.constexpr):
    """(BLOCK_N,): which keys are real. Per-row lengths need one compare; only a general mask
    (holes, left padding) loads its bytes."""
    ok = cols < k_len
    if HAS_HOLES:
        ok = ok & (tl.load(KEEP + b * n_k + cols, mask=ok, other=0) != 0)
    return ok


@triton.jit
def _key_ok(cols, rows, k_len, KEEP, b, n_k, HAS_HOLES: tl.constexpr, CAUSAL: tl.constexpr):
    """Which scores of a (rows × cols) block count: real keys, and the causal triangle."""
    ok = _keys_ok(cols, k_len, KEEP, b, n_k, HAS_HOLES)[None, :]
    if CAUSAL:  # query i sees keys j <= i
        ok = ok & (rows[:, None] >= cols[None, :])
    return ok


# ----------------------------------------------------------------------------------------------
# The forward kernel
# ----------------------------------------------------------------------------------------------
@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q,  # the running state of BLOCK_M query rows, and the rows themselves
    k_base, v_base, rows, kv_end, KEEP, b, n_k,
    stride_kn, stride_kd, stride_vn, stride_vd, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_HOLES: tl.constexpr,
    CAUSAL: tl.constexpr, DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """The key loop: fold keys 0 .. kv_end - 1 into (acc, l_i, m_i), BLOCK_N keys at a time."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(0, kv_end, BLOCK_N):
        cols = start_n + offs_n  # key indices of this block
        load_ok = (cols < kv_end)[:, None]
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=load_ok, other=0.0).to(DOT_DTYPE)
        # s = q kᵀ: (BLOCK_M, BLOCK_N) raw scores; masked ones become -inf.
        s = tl.dot(q, tl.trans(k), out_dtype=ACC_DTYPE, input_precision="ieee")
        s = tl.where(_key_ok(cols, rows, kv_end, KEEP, b, n_k, HAS_HOLES, CAUSAL), s,
                     float("-inf"))

        # Online softmax, in base 2. New running max; a row that has seen only masked keys
        # still has max -inf, and we subtract 0 instead so exp2(-inf - (-inf)) never makes NaN.
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s * qk_scale - m_sub[:, None])  # one FMA per score; masked keys → 0
        alpha = tl.exp2(m_i - m_sub)  # the rescale of everything summed so far (≤ 1)
        l_i = l_i * alpha + tl.sum(p, 1)

        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=load_ok, other=0.0).to(DOT_DTYPE)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(DOT_DTYPE), v, acc, out_dtype=ACC_DTYPE, input_precision="ieee")
        m_i = m_new

    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, O, LSE,  # q, o (B, H, Nq, D) or (T, H, D); k, v likewise; LSE (B, H, Nq) or (H, T)
    KV_LEN, KEEP, CU_Q, CU_K,  # (B,) key counts, (B, Nk) int8 mask, (B+1,) ×2 cumulative lengths
    stride_qb, stride_qh, stride_qm, stride_qd,  # batch strides are 0 for varlen
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_lb, stride_lh,  # LSE's batch and head strides (its token stride is 1)
    n_heads, n_q, n_k,
    qk_scale,  # sm_scale · log2(e) > 0: scores go into base 2
    n_bucket,  # only for the autotune key (length bucket); unused here
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    VARLEN: tl.constexpr, HAS_LENS: tl.constexpr, HAS_HOLES: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr,  # operand type of tl.dot: the input dtype, or fp32 when interpreting
    ACC_DTYPE: tl.constexpr,  # fp32 (fp64 for fp64 inputs)
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)  # tl.dot on NVIDIA
    start_m = tl.program_id(0) * BLOCK_M  # first query row of this program, within its sequence
    bh = tl.program_id(1)  # which (batch, head)
    b = bh // n_heads
    h = bh % n_heads
    q_start, q_len, k_start, k_len = _sequence(b, n_q, n_k, CU_Q, CU_K, KV_LEN, VARLEN, HAS_LENS)
    if start_m >= q_len:  # varlen: the grid covers the longest sequence, this one is shorter
        return
    q_base = Q + _offset(b, h, q_start, stride_qb, stride_qh, stride_qm)
    k_base = K + _offset(b, h, k_start, stride_kb, stride_kh, stride_kn)
    v_base = V + _offset(b, h, k_start, stride_vb, stride_vh, stride_vn)
    o_base = O + _offset(b, h, q_start, stride_ob, stride_oh, stride_om)

    rows = start_m + tl.arange(0, BLOCK_M)  # query indices held by this program
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < q_len  # the last block may stick out past the sequence

    # q: (BLOCK_M, HEAD_DIM), loaded once and kept in registers for the whole key loop.
    q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC_DTYPE)  # running max (base-2 units)
    l_i = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC_DTYPE)  # running Σ exp2(s - m_i) v

    # Which keys can matter: none past the sequence's last real key, and with a causal mask
    # none past the last row of this block.
    kv_end = k_len
    if CAUSAL:
        kv_end = tl.minimum(kv_end, start_m + BLOCK_M)

    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, rows, kv_end, KEEP, b, n_k,
        stride_kn, stride_kd, stride_vn, stride_vd, qk_scale,
        HEAD_DIM, BLOCK_N, HAS_HOLES, CAUSAL, DOT_DTYPE, ACC_DTYPE)

    # Normalise once. Fully masked rows (l_i = 0) get output 0 and lse = +inf, which makes the
    # backward's recomputed probabilities exp2(s - lse) exactly 0 for them.
    empty = l_i == 0.0
    l_div = tl.where(empty, 1.0, l_i)
    out = acc / l_div[:, None]
    lse = tl.where(empty, float("inf"), m_i + tl.log2(l_div))
    l_base = LSE + _offset(b, h, q_start, stride_lb, stride_lh, 1)
    tl.store(l_base + rows, lse, mask=row_ok)
    tl.store(o_base + rows[:, None] * stride_om + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=row_ok[:, None])


FORWARD = TunedKernel("fwd", _attn_fwd)


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


@dataclass
class Layout:
    """Where the sequences of one call live (see `_sequence` in the kernel).

    Padded (B, H, N, D): optional per-row key counts kv_len (B,) int32 for right padding, and
    the mask itself as (B, Nk) int8 only when it is not right padding (holes, left padding).
    Varlen (T, H, D): cumulative lengths cu_q, cu_k (B + 1,) int32 and the longest sequences."""

    kv_len: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    cu_q: torch.Tensor | None = None
    cu_k: torch.Tensor | None = None
    max_q: int = 0
    max_k: int = 0

    @property
    def varlen(self) -> bool:
        return self.cu_q is not None

    def shape(self, q: torch.Tensor, k: torch.Tensor) -> tuple[int, int, int, int]:
        """(batch, heads, n_q, n_k): n_q and n_k are the longest sequences for varlen."""
        if self.varlen:
            return self.cu_q.shape[0] - 1, q.shape[1], self.max_q, self.max_k
        return q.shape[0], q.shape[1], q.shape[2], k.shape[2]

    def strides(self, t: torch.Tensor) -> tuple[int, int, int, int]:
        """(batch, head, token, dim) strides; varlen tensors (T, H, D) have no batch stride."""
        return (0, t.stride(1), t.stride(0), t.stride(2)) if self.varlen else tuple(t.stride())

    def new_stats(self, q: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, int, int]:
        """An empty per-query-row statistic (lse, Δ) and its (batch, head) strides."""
        if self.varlen:  # (H, T), rows padded to a multiple of 16 elements: the head stride
            # then specialises like the padded layout's (Triton compiles per divisibility by 16)
            width = -(-q.shape[0] // 16) * 16
            stats = torch.empty((q.shape[1], width), device=q.device, dtype=dtype)
            return stats[:, :q.shape[0]], 0, width
        stats = torch.empty(q.shape[:3], device=q.device, dtype=dtype)  # (B, H, Nq)
        return stats, stats.stride(0), stats.stride(1)

    def tensors(self, device: torch.device) -> list[torch.Tensor]:
        """KV_LEN, KEEP, CU_Q, CU_K for the kernels; 1-element placeholders where unused."""
        def or_empty(t, dtype):
            return t if t is not None else torch.zeros(1, device=device, dtype=dtype)
        return [or_empty(self.kv_len, torch.int32), or_empty(self.keep, torch.int8),
                or_empty(self.cu_q, torch.int32), or_empty(self.cu_k, torch.int32)]

    def flags(self) -> dict:
        return dict(VARLEN=self.varlen, HAS_LENS=self.kv_len is not None,
                    HAS_HOLES=self.keep is not None)


def padding_layout(key_padding_mask: torch.Tensor, device: torch.device) -> Layout:
    """The Layout of a padded call: kv_len = each row's last real key + 1, computed on the
    device; the byte mask is kept only when some row is not a prefix of ones (one host sync)."""
    keep = (key_padding_mask.to(device) != 0).to(torch.int8).contiguous()
    positions = torch.arange(1, keep.shape[1] + 1, device=device, dtype=torch.int32)
    kv_len = (keep.to(torch.int32) * positions).amax(dim=1).to(torch.int32).contiguous()
    right_padded = bool((keep.sum(dim=1, dtype=torch.int32) == kv_len).all())
    return Layout(kv_len=kv_len, keep=None if right_padded else keep)


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout,
                      causal: bool, sm_scale: float, config: LaunchConfig | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch _attn_fwd: returns (out like q, lse per query row in base 2, layout's stats)."""
    batch, heads, n_q, n_k = layout.shape(q, k)
    head_dim = q.shape[-1]
    dot_dtype, acc_dtype = dot_and_acc_dtypes(q.dtype, interpreting())
    out = torch.empty_like(q)  # same layout as q: a (B, N, H, D)-major q gives an o that merges
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    lse, stride_lb, stride_lh = layout.new_stats(q, lse_dtype)
    args = [q, k, v, out, lse, *layout.tensors(q.device),
            *layout.strides(q), *layout.strides(k), *layout.strides(v), *layout.strides(out),
            stride_lb, stride_lh, heads, n_q, n_k, sm_scale * LOG2_E, length_bucket(n_k)]
    meta = dict(HEAD_DIM=head_dim, CAUSAL=causal, DOT_DTYPE=dot_dtype, ACC_DTYPE=acc_dtype,
                **layout.flags())
    FORWARD.launch(lambda m: (triton.cdiv(n_q, m["BLOCK_M"]), batch * heads), args, meta,
                   head_dim, q.dtype, config)
    return out, lse


class _FusedAttention(torch.autograd.Function):
    """Forward saves (q, k, v, out, lse); backward recomputes P from them (no N×N storage)."""

    @staticmethod
    def forward(ctx, q, k, v, layout: Layout, causal: bool, sm_scale: float):
        out, lse = attention_forward(q, k, v, layout, causal, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.layout, ctx.causal, ctx.sm_scale = layout, causal, sm_scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from minitf.kernels.flash_attention_bwd import attention_backward  # imports this file

        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(grad_out, q, k, v, out, lse, ctx.layout,
                                        ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None, None


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout, causal: bool,
           sm_scale: float) -> torch.Tensor:
    """The differentiable kernel call shared by fused_attention and varlen_attention."""
    return _FusedAttention.apply(q, k, v, layout, bool(causal), sm_scale)


def check_scale(sm_scale: float | None, head_dim: int) -> float:
    scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else float(sm_scale)
    if not scale > 0:
        raise MinitfError(f"fused_attention: sm_scale must be positive, got {scale}")
    return scale


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
    scale = check_scale(sm_scale, q.shape[-1])
    layout = Layout()
    if key_padding_mask is not None:
        layout = padding_layout(key_padding_mask, q.device)
    return attend(q, k, v, layout, causal, scale)
