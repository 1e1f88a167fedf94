"""Variable-length attention over packed tokens: no padded query or key is ever computed.

    from minitf.kernels import varlen_attention
    out = varlen_attention(q, k, v, cu_seqlens, max_seqlen)  # q, k, v, out: (T, H, D)

An encoder that keeps its real tokens packed as (T, C) (minitf does: `Packing` in
minitf/model/attention.py) only has to view each projection as (T, H, D). Sequence b owns tokens
cu_seqlens[b] .. cu_seqlens[b + 1] − 1, cu_seqlens = [0, len₀, len₀ + len₁, …] in int32 (the
interface of FlashAttention-2's `flash_attn_varlen_func`). The kernels are the padded ones of
flash_attention.py with VARLEN=True: `_sequence` reads where each sequence starts and how long
it is, the grid covers max_seqlen query rows per (sequence, head) and programs past the end of a
shorter sequence return at once. Work is therefore Σ lenᵦ² instead of B · N².

Queries and keys may come from different packings (cu_seqlens_k, max_seqlen_k); by default they
are the same (self-attention). Causal masks align each sequence's queries and keys at its start.
max_seqlen only sizes the grid: it must be ≥ every length, and cu_seqlens must end at T; neither
is checked on the device (that would need a host sync per call).
"""

from __future__ import annotations

import torch

from minitf.errors import MinitfError
from minitf.kernels.config import GPU_DTYPES, HEAD_DIMS, MAX_GRID_Y, interpreting
from minitf.kernels.flash_attention import Layout, attend, check_scale


def cu_seqlens_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B + 1,) int32 cumulative lengths of the real tokens of a (B, N) mask, on its device.

    The packed order is row-major over the mask (as minitf's `Packing.pack`), so a mask with
    holes also works: each sequence's real tokens are contiguous once packed."""
    lengths = (attention_mask != 0).sum(dim=1, dtype=torch.int32)
    return torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


def varlen_supported(q: torch.Tensor) -> bool:
    """Whether varlen_attention can take a packed (T, H, D) tensor like q here."""
    if q.dim() != 3 or q.shape[-1] not in HEAD_DIMS:
        return False
    if interpreting():
        return q.dtype in GPU_DTYPES + (torch.float64,)
    return q.is_cuda and q.dtype in GPU_DTYPES


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor,
           cu_k: torch.Tensor) -> None:
    if not interpreting() and not q.is_cuda:
        raise MinitfError(f"varlen_attention needs a CUDA GPU or TRITON_INTERPRET=1 (got a tensor "
                          f"on {q.device}); use attn_backend='sdpa' on this machine")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise MinitfError(f"varlen_attention: {name} must be packed (tokens, heads, "
                              f"head_dim), got shape {tuple(t.shape)}")
    if k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise MinitfError(f"varlen_attention: q {tuple(q.shape)}, k {tuple(k.shape)} and v "
                          f"{tuple(v.shape)} must share heads and head_dim (k and v all dims)")
    if not varlen_supported(q) or not (q.dtype == k.dtype == v.dtype):
        raise MinitfError(f"varlen_attention: dtype {q.dtype}/{k.dtype}/{v.dtype} or head_dim "
                          f"{q.shape[-1]} not supported here (head_dim in {HEAD_DIMS})")
    if not (q.device == k.device == v.device == cu_q.device == cu_k.device):
        raise MinitfError("varlen_attention: q, k, v and cu_seqlens must be on one device")
    for name, cu in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        if cu.dim() != 1 or cu.dtype != torch.int32 or cu.shape[0] < 2:
            raise MinitfError(f"varlen_attention: {name} must be 1-D int32 [0, len0, …] with "
                              f"batch + 1 entries, got {cu.dtype} {tuple(cu.shape)}")
    if cu_q.shape != cu_k.shape:
        raise MinitfError("varlen_attention: cu_seqlens_q and cu_seqlens_k differ in batch size")
    if (cu_q.shape[0] - 1) * q.shape[1] > MAX_GRID_Y:
        raise MinitfError(f"varlen_attention: batch × heads exceeds {MAX_GRID_Y} (CUDA grid "
                          "limit); split the batch")


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    max_seqlen_q: int,
    cu_seqlens_k: torch.Tensor | None = None,
    max_seqlen_k: int | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · sm_scale) v within each packed sequence; differentiable in q, k and v.

    q: (Tq, H, D), k and v: (Tk, H, D), any strides (a (T, H·D) projection viewed as
    (T, H, D) needs no copy). Returns (Tq, H, D) laid out like q. A sequence with no keys
    gets zeros. sm_scale defaults to 1/√D."""
    if cu_seqlens_k is None:
        cu_seqlens_k, max_seqlen_k = cu_seqlens_q, max_seqlen_q
    _check(q, k, v, cu_seqlens_q, cu_seqlens_k)
    max_q, max_k = int(max_seqlen_q), int(max_seqlen_k if max_seqlen_k is not None else 0)
    if max_q < 1 or max_k < 1:
        raise MinitfError("varlen_attention: max_seqlen_q and max_seqlen_k must be at least 1")
    layout = Layout(cu_q=cu_seqlens_q.contiguous(), cu_k=cu_seqlens_k.contiguous(),
                    max_q=max_q, max_k=max_k)
    return attend(q, k, v, layout, causal, check_scale(sm_scale, q.shape[-1]))
