"""The backward pass of the fused attention (FlashAttention-2 style, as in the Triton tutorial).

With S = Q Kᵀ · scale, P = softmax(S) (row-wise, masked), O = P V and dO the gradient of the
loss with respect to O, the chain rule gives

    dV = Pᵀ dO
    dP = dO Vᵀ
    dS = P ∘ (dP − Δ),   Δ_i = Σ_j P_ij dP_ij = rowsum(dO ∘ O)_i   (the softmax Jacobian)
    dQ = dS K · scale
    dK = dSᵀ Q · scale

P is never stored. The forward saved lse_i = log2 Σ_j exp2(s_ij) (base-2 log-sum-exp, s in
base-2 units), so each block of P is recomputed exactly as P_ij = exp2(s_ij − lse_i) — no
running max needed, because lse is the final normaliser. Fully masked rows have lse = +inf and
recompute P = 0, so they contribute nothing.

Three kernels, none of them with atomics (so nothing to zero, and autotuning would stay safe):

    1. _attn_bwd_preprocess: Δ = rowsum(dO ∘ O), one fp32 number per query row.
    2. _attn_bwd_dkdv: one program per BLOCK_N keys; walks over all query blocks that can see
       them and accumulates dK and dV in registers (the sums run over queries).
    3. _attn_bwd_dq: one program per BLOCK_M queries; walks over key blocks and accumulates dQ
       (the sum runs over keys). It recomputes P a second time — cheaper than atomics.

Masking and layouts are the forward's (`_sequence`, `_key_ok`): per-row key counts, a byte mask
only for masks that are not right padding, the causal triangle, sequence ends, and the packed
varlen layout. Padded key blocks past a row's last real key (kv_len) have P = 0: their dK, dV
are written as zeros without visiting any query. As in the forward, P = exp2(s · scale − lse)
is one fused multiply-add per score.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minitf.kernels.config import (
    LOG2_E,
    LaunchConfig,
    TunedKernel,
    dot_and_acc_dtypes,
    interpreting,
    length_bucket,
)
from minitf.kernels.flash_attention import Layout, _key_ok, _keys_ok, _offset, _sequence


@triton.jit
def _attn_bwd_preprocess(
    O, DO, DELTA, CU_Q,  # o, dO like q; DELTA like the forward's LSE
    stride_ob, stride_oh, stride_om, stride_od,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_lb, stride_lh,
    n_heads, n_q,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, VARLEN: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    q_start, q_len, _, _ = _sequence(b, n_q, n_q, CU_Q, CU_Q, CU_Q, VARLEN, False)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < q_len
    tok = (q_start + rows).to(tl.int64)
    o = tl.load(O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
                + tok[:, None] * stride_om + offs_d[None, :] * stride_od,
                mask=row_ok[:, None], other=0.0).to(ACC_DTYPE)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
                 + tok[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=row_ok[:, None], other=0.0).to(ACC_DTYPE)
    tl.store(DELTA + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + tok,
             tl.sum(o * do, 1), mask=row_ok)


@triton.jit
def _attn_bwd_dkdv_inner(
    dk, dv, k, v, cols, col_ok,  # this program's keys and their running gradients
    q_ptr, do_ptr, lse_ptr, delta_ptr,  # row 0 of this sequence's q, dO (same strides), stats
    q_lo, q_hi, q_len, stride_qm, stride_qd, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """The query loop of dK/dV: add the contribution of queries q_lo .. q_hi - 1."""
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_m in range(q_lo, q_hi, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < q_len
        q = tl.load(q_ptr + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        do = tl.load(do_ptr + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                     mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        # Rows past the end get lse = +inf, hence P = 0, like fully masked rows.
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(delta_ptr + rows, mask=row_ok, other=0.0)

        # Work with transposes so the reduction over queries is a plain matrix product:
        # sᵀ = k qᵀ (BLOCK_N, BLOCK_M), recomputed Pᵀ = exp2(sᵀ · scale − lse).
        s_t = tl.dot(k, tl.trans(q), out_dtype=ACC_DTYPE, input_precision="ieee")
        ok_t = col_ok[:, None]
        if CAUSAL:
            ok_t = ok_t & (rows[None, :] >= cols[:, None])
        s_t = tl.where(ok_t, s_t, float("-inf"))
        p_t = tl.exp2(s_t * qk_scale - lse[None, :])

        dv = tl.dot(p_t.to(DOT_DTYPE), do, dv, out_dtype=ACC_DTYPE, input_precision="ieee")
        dp_t = tl.dot(v, tl.trans(do), out_dtype=ACC_DTYPE, input_precision="ieee")
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(DOT_DTYPE), q, dk, out_dtype=ACC_DTYPE, input_precision="ieee")

    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, DELTA, KV_LEN, KEEP, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qm, stride_qd,  # dO shares q's strides, dK/dV k's (host)
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_lb, stride_lh,  # LSE and DELTA
    n_heads, n_q, n_k,
    sm_scale, qk_scale,  # qk_scale = sm_scale · log2(e), as in the forward
    n_bucket,  # autotune key only
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,  # queries per step of the loop
    BLOCK_N: tl.constexpr,  # keys owned by this program
    VARLEN: tl.constexpr, HAS_LENS: tl.constexpr, HAS_HOLES: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    q_start, q_len, k_start, k_len = _sequence(b, n_q, n_k, CU_Q, CU_K, KV_LEN, VARLEN, HAS_LENS)
    # Keys to write: varlen has no padding keys; padded keys past kv_len get zero gradients.
    store_end = n_k
    if VARLEN:
        store_end = k_len
    if start_n >= store_end:
        return
    bh_q = _offset(b, h, q_start, stride_qb, stride_qh, stride_qm)  # also dO's and dQ's
    bh_k = _offset(b, h, k_start, stride_kb, stride_kh, stride_kn)  # also dK's
    bh_v = _offset(b, h, k_start, stride_vb, stride_vh, stride_vn)  # also dV's
    l_base = _offset(b, h, q_start, stride_lb, stride_lh, 1)  # LSE's and DELTA's

    cols = start_n + tl.arange(0, BLOCK_N)  # the keys this program owns
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = _keys_ok(cols, k_len, KEEP, b, n_k, HAS_HOLES)  # (BLOCK_N,)

    # k, v: (BLOCK_N, HEAD_DIM), kept in registers while we stream the queries past them.
    kv_mask = (cols < store_end)[:, None]
    k = tl.load(K + bh_k + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=kv_mask, other=0.0).to(DOT_DTYPE)
    v = tl.load(V + bh_v + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                mask=kv_mask, other=0.0).to(DOT_DTYPE)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC_DTYPE)

    # Queries that can see these keys: with a causal mask only rows >= start_n. If the whole
    # block lies past the last real key, no query sees it: loop over nothing, store zeros.
    q_lo = 0
    if CAUSAL:
        q_lo = (start_n // BLOCK_M) * BLOCK_M
    q_hi = tl.where(start_n < k_len, q_len, 0)

    dk, dv = _attn_bwd_dkdv_inner(
        dk, dv, k, v, cols, col_ok, Q + bh_q, DO + bh_q, LSE + l_base, DELTA + l_base,
        q_lo, q_hi, q_len, stride_qm, stride_qd, qk_scale,
        HEAD_DIM, BLOCK_M, CAUSAL, DOT_DTYPE, ACC_DTYPE)

    dk = dk * sm_scale  # dS was taken w.r.t. the scaled scores; chain rule through the scale
    tl.store(DK + bh_k + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + bh_v + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _attn_bwd_dq_inner(
    dq, q, do, lse, delta,  # this program's queries, their upstream gradients and statistics
    k_ptr, v_ptr, rows, kv_end, KEEP, b, n_k,  # k_ptr, v_ptr: key 0 of this sequence
    stride_kn, stride_kd, stride_vn, stride_vd, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_HOLES: tl.constexpr,
    CAUSAL: tl.constexpr, DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """The key loop of dQ: add the contribution of keys 0 .. kv_end - 1."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(0, kv_end, BLOCK_N):
        cols = start_n + offs_n
        load_ok = (cols < kv_end)[:, None]
        k = tl.load(k_ptr + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=load_ok, other=0.0).to(DOT_DTYPE)
        v = tl.load(v_ptr + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=load_ok, other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), out_dtype=ACC_DTYPE, input_precision="ieee")
        s = tl.where(_key_ok(cols, rows, kv_end, KEEP, b, n_k, HAS_HOLES, CAUSAL), s,
                     float("-inf"))
        p = tl.exp2(s * qk_scale - lse[:, None])  # the forward's probabilities, recomputed
        dp = tl.dot(do, tl.trans(v), out_dtype=ACC_DTYPE, input_precision="ieee")
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(DOT_DTYPE), k, dq, out_dtype=ACC_DTYPE, input_precision="ieee")

    return dq


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, DELTA, KV_LEN, KEEP, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qm, stride_qd,  # dO and dQ share q's strides (host)
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_lb, stride_lh,
    n_heads, n_q, n_k,
    sm_scale, qk_scale,
    n_bucket,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,  # queries owned by this program
    BLOCK_N: tl.constexpr,  # keys per step of the loop
    VARLEN: tl.constexpr, HAS_LENS: tl.constexpr, HAS_HOLES: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    q_start, q_len, k_start, k_len = _sequence(b, n_q, n_k, CU_Q, CU_K, KV_LEN, VARLEN, HAS_LENS)
    if start_m >= q_len:
        return
    bh_q = _offset(b, h, q_start, stride_qb, stride_qh, stride_qm)  # also dO's and dQ's
    bh_k = _offset(b, h, k_start, stride_kb, stride_kh, stride_kn)  # also dK's
    bh_v = _offset(b, h, k_start, stride_vb, stride_vh, stride_vn)  # also dV's
    l_base = _offset(b, h, q_start, stride_lb, stride_lh, 1)  # LSE's and DELTA's

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < q_len
    q = tl.load(Q + bh_q + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
    do = tl.load(DO + bh_q + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                 mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
    lse = tl.load(LSE + l_base + rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + l_base + rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC_DTYPE)

    kv_end = k_len  # the same key range as the forward
    if CAUSAL:
        kv_end = tl.minimum(kv_end, start_m + BLOCK_M)

    dq = _attn_bwd_dq_inner(
        dq, q, do, lse, delta, K + bh_k, V + bh_v, rows, kv_end, KEEP, b, n_k,
        stride_kn, stride_kd, stride_vn, stride_vd, qk_scale,
        HEAD_DIM, BLOCK_N, HAS_HOLES, CAUSAL, DOT_DTYPE, ACC_DTYPE)

    dq = dq * sm_scale
    tl.store(DQ + bh_q + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


DKDV = TunedKernel("dkdv", _attn_bwd_dkdv)
DQ = TunedKernel("dq", _attn_bwd_dq)


def attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       out: torch.Tensor, lse: torch.Tensor, layout: Layout, causal: bool,
                       sm_scale: float, configs: tuple[LaunchConfig, LaunchConfig] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels; returns (dq, dk, dv) laid out like (q, k, v).

    dO is read through q's strides and dQ written through them (dK, dV through k's and v's),
    so the gradients are made in those layouts; configs = (dK/dV, dQ) forces launch configs."""
    batch, heads, n_q, n_k = layout.shape(q, k)
    head_dim = q.shape[-1]
    dot_dtype, acc_dtype = dot_and_acc_dtypes(q.dtype, interpreting())
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if (dq.stride(), dk.stride(), dv.stride()) != (q.stride(), k.stride(), v.stride()):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # overlapping strides
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    # A stride-0 (from `out.sum()`) or differently laid-out gradient is copied into q's layout.
    if grad_out.dtype != q.dtype or grad_out.stride() != q.stride():
        grad_out = torch.empty_like(q).copy_(grad_out)

    delta, stride_lb, stride_lh = layout.new_stats(q, lse.dtype)  # laid out like lse
    lengths = layout.tensors(q.device)
    pre_block = 64
    _attn_bwd_preprocess[(triton.cdiv(n_q, pre_block), batch * heads)](
        out, grad_out, delta, lengths[2], *layout.strides(out), *layout.strides(grad_out),
        stride_lb, stride_lh, heads, n_q,
        HEAD_DIM=head_dim, BLOCK_M=pre_block, VARLEN=layout.varlen, ACC_DTYPE=acc_dtype,
    )
    strides = [*layout.strides(q), *layout.strides(k), *layout.strides(v), stride_lb, stride_lh,
               heads, n_q, n_k, sm_scale, sm_scale * LOG2_E, length_bucket(n_k)]
    meta = dict(HEAD_DIM=head_dim, CAUSAL=causal, DOT_DTYPE=dot_dtype, ACC_DTYPE=acc_dtype,
                **layout.flags())
    dkdv_cfg, dq_cfg = configs if configs is not None else (None, None)
    DKDV.launch(lambda m: (triton.cdiv(n_k, m["BLOCK_N"]), batch * heads),
                [q, k, v, grad_out, dk, dv, lse, delta, *lengths, *strides], meta,
                head_dim, q.dtype, dkdv_cfg)
    DQ.launch(lambda m: (triton.cdiv(n_q, m["BLOCK_M"]), batch * heads),
              [q, k, v, grad_out, dq, lse, delta, *lengths, *strides], meta,
              head_dim, q.dtype, dq_cfg)
    return dq, dk, dv
