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

Masking is the forward's: key bias 0/−inf from the padding mask, causal triangle, sequence ends.
Key blocks past a batch element's last real key (kv_len) have P = 0: their dK, dV are written as
zeros without visiting any query.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minitf.kernels.config import LOG2_E, backward_configs, dot_and_acc_dtypes, interpreting


@triton.jit
def _attn_bwd_preprocess(
    O, DO, DELTA,  # (B, H, Nq, D) ×2 and (B·H, Nq)
    stride_ob, stride_oh, stride_om, stride_od,
    stride_dob, stride_doh, stride_dom, stride_dod,
    n_heads, n_q,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < n_q
    o = tl.load(O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
                + rows[:, None] * stride_om + offs_d[None, :] * stride_od,
                mask=row_ok[:, None], other=0.0).to(ACC_DTYPE)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
                 + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=row_ok[:, None], other=0.0).to(ACC_DTYPE)
    tl.store(DELTA + bh * n_q + rows, tl.sum(o * do, 1), mask=row_ok)


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, DELTA, KEEP, KV_LEN,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    n_heads, n_q, n_k,
    sm_scale, qk_scale,  # qk_scale = sm_scale · log2(e), as in the forward
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,  # queries per step of the loop
    BLOCK_N: tl.constexpr,  # keys owned by this program
    HAS_MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    do_base = DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh

    cols = start_n + tl.arange(0, BLOCK_N)  # the keys this program owns
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)

    kv_end = n_k
    if HAS_MASK:
        kv_end = tl.load(KV_LEN + b)
    col_ok = cols < kv_end
    if HAS_MASK:
        keep = tl.load(KEEP + b * n_k + cols, mask=col_ok, other=0)
        col_ok = col_ok & (keep != 0)
    bias = tl.where(col_ok, 0.0, float("-inf"))  # per key, as in the forward

    # k, v: (BLOCK_N, HEAD_DIM), kept in registers while we stream the queries past them.
    kv_mask = (cols < n_k)[:, None]
    k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=kv_mask, other=0.0).to(DOT_DTYPE)
    v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                mask=kv_mask, other=0.0).to(DOT_DTYPE)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC_DTYPE)

    # Queries that can see these keys: with a causal mask only rows >= start_n. If the whole
    # block lies past the last real key, no query sees it: loop over nothing, store zeros.
    q_lo = 0
    if CAUSAL:
        q_lo = (start_n // BLOCK_M) * BLOCK_M
    q_hi = tl.where(start_n < kv_end, n_q, 0)

    for start_m in range(q_lo, q_hi, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < n_q
        q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        do = tl.load(do_base + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                     mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        # Rows past Nq get lse = +inf, hence P = 0, like fully masked rows.
        lse = tl.load(LSE + bh * n_q + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + bh * n_q + rows, mask=row_ok, other=0.0)

        # Work with transposes so the reduction over queries is a plain matrix product:
        # sᵀ = k qᵀ (BLOCK_N, BLOCK_M), recomputed Pᵀ = exp2(sᵀ − lse).
        s_t = tl.dot(k, tl.trans(q), out_dtype=ACC_DTYPE, input_precision="ieee")
        s_t = s_t * qk_scale + bias[:, None]
        if CAUSAL:
            s_t = tl.where(rows[None, :] >= cols[:, None], s_t, float("-inf"))
        p_t = tl.exp2(s_t - lse[None, :])

        dv = tl.dot(p_t.to(DOT_DTYPE), do, dv, out_dtype=ACC_DTYPE, input_precision="ieee")
        dp_t = tl.dot(v, tl.trans(do), out_dtype=ACC_DTYPE, input_precision="ieee")
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(DOT_DTYPE), q, dk, out_dtype=ACC_DTYPE, input_precision="ieee")

    dk = dk * sm_scale  # dS was taken w.r.t. the scaled scores; chain rule through the scale
    store_mask = (cols < n_k)[:, None]
    tl.store(DK + b.to(tl.int64) * stride_dkb + h.to(tl.int64) * stride_dkh
             + cols[:, None] * stride_dkn + offs_d[None, :] * stride_dkd,
             dk.to(DK.dtype.element_ty), mask=store_mask)
    tl.store(DV + b.to(tl.int64) * stride_dvb + h.to(tl.int64) * stride_dvh
             + cols[:, None] * stride_dvn + offs_d[None, :] * stride_dvd,
             dv.to(DV.dtype.element_ty), mask=store_mask)


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, DELTA, KEEP, KV_LEN,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dqb, stride_dqh, stride_dqm, stride_dqd,
    n_heads, n_q, n_k,
    sm_scale, qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,  # queries owned by this program
    BLOCK_N: tl.constexpr,  # keys per step of the loop
    HAS_MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16 and HEAD_DIM >= 16)
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows < n_q
    q = tl.load(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
                + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
                 + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
    lse = tl.load(LSE + bh * n_q + rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + bh * n_q + rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC_DTYPE)

    kv_end = n_k  # the same key range as the forward
    if HAS_MASK:
        kv_end = tl.load(KV_LEN + b)
    if CAUSAL:
        kv_end = tl.minimum(kv_end, start_m + BLOCK_M)

    for start_n in range(0, kv_end, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < kv_end
        if HAS_MASK:
            keep = tl.load(KEEP + b * n_k + cols, mask=col_ok, other=0)
            col_ok = col_ok & (keep != 0)
        bias = tl.where(col_ok, 0.0, float("-inf"))
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=(cols < kv_end)[:, None], other=0.0).to(DOT_DTYPE)
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=(cols < kv_end)[:, None], other=0.0).to(DOT_DTYPE)

        s = tl.dot(q, tl.trans(k), out_dtype=ACC_DTYPE, input_precision="ieee")
        s = s * qk_scale + bias[None, :]
        if CAUSAL:
            s = tl.where(rows[:, None] >= cols[None, :], s, float("-inf"))
        p = tl.exp2(s - lse[:, None])  # the forward's probabilities, recomputed
        dp = tl.dot(do, tl.trans(v), out_dtype=ACC_DTYPE, input_precision="ieee")
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(DOT_DTYPE), k, dq, out_dtype=ACC_DTYPE, input_precision="ieee")

    dq = dq * sm_scale
    tl.store(DQ + b.to(tl.int64) * stride_dqb + h.to(tl.int64) * stride_dqh
             + rows[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


def attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       out: torch.Tensor, lse: torch.Tensor, keep: torch.Tensor | None,
                       kv_len: torch.Tensor | None, causal: bool, sm_scale: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels; returns (dq, dk, dv) laid out like (q, k, v)."""
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    interp = interpreting()
    dot_dtype, acc_dtype = dot_and_acc_dtypes(q.dtype, interp)
    dkdv_cfg, dq_cfg = backward_configs(head_dim, q.dtype, interp)
    # Strides handle any layout, even the stride-0 gradient of `out.sum()`; a copy is made only
    # when the gradient is in a different dtype.
    grad_out = grad_out.to(q.dtype)

    delta = torch.empty_like(lse)
    pre_block = 64
    _attn_bwd_preprocess[(triton.cdiv(n_q, pre_block), batch * heads)](
        out, grad_out, delta, *out.stride(), *grad_out.stride(), heads, n_q,
        HEAD_DIM=head_dim, BLOCK_M=pre_block, ACC_DTYPE=acc_dtype,
    )

    has_mask = keep is not None
    if not has_mask:  # placeholders, never read when HAS_MASK is False
        keep = torch.empty(1, device=q.device, dtype=torch.int8)
        kv_len = torch.empty(1, device=q.device, dtype=torch.int32)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    common = dict(HEAD_DIM=head_dim, HAS_MASK=has_mask, CAUSAL=causal, DOT_DTYPE=dot_dtype,
                  ACC_DTYPE=acc_dtype)
    qk_scale = sm_scale * LOG2_E

    _attn_bwd_dkdv[(triton.cdiv(n_k, dkdv_cfg.block_n), batch * heads)](
        q, k, v, grad_out, dk, dv, lse, delta, keep, kv_len,
        *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dk.stride(), *dv.stride(),
        heads, n_q, n_k, sm_scale, qk_scale,
        BLOCK_M=dkdv_cfg.block_m, BLOCK_N=dkdv_cfg.block_n, **common,
        num_warps=dkdv_cfg.num_warps, num_stages=dkdv_cfg.num_stages,
    )
    _attn_bwd_dq[(triton.cdiv(n_q, dq_cfg.block_m), batch * heads)](
        q, k, v, grad_out, dq, lse, delta, keep, kv_len,
        *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dq.stride(),
        heads, n_q, n_k, sm_scale, qk_scale,
        BLOCK_M=dq_cfg.block_m, BLOCK_N=dq_cfg.block_n, **common,
        num_warps=dq_cfg.num_warps, num_stages=dq_cfg.num_stages,
    )
    return dq, dk, dv
