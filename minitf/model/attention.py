"""Scaled dot-product attention: the formula in one place, and the switch between backends.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + mask) V

Every backend takes `(batch, heads, seq, head_dim)` tensors and a key-padding mask of shape
`(batch, seq_k)` with True (or 1) meaning "attend to this key" — BERT's `attention_mask`.

- "reference": the formula spelled out below in plain PyTorch. It materialises the full
  (N × N) score matrix, so it is the slowest and the most readable. It is the ground truth.
- "sdpa":      torch.nn.functional.scaled_dot_product_attention (PyTorch picks its own kernel).
- "triton":    minitf's fused FlashAttention-style kernel (minitf/kernels/), for CUDA tensors
  or under Triton's CPU interpreter (TRITON_INTERPRET=1). A padded batch goes through its
  variable-length form on the packed real tokens (`packed_attention`): no padding computed.
- "auto":      the fused kernel for fp16/bf16 CUDA tensors when Triton is usable (varlen when
  the batch is padded), else SDPA
  (faster than the reference on CPU in benchmarks/encoder.py and benchmarks/attention.py;
  all three agree to fp32 rounding).

`Packing` (at the end) is the bridge to an encoder that works on packed real tokens (T, C):
it scatters them into the padded layout these functions take and gathers the result back, or,
for the fused kernel, hands its cumulative sequence lengths to `packed_attention`.

A query row whose keys are all masked out has no defined softmax (0/0); every backend returns
zeros for such a row instead of NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minitf.errors import MinitfError

BACKENDS = ("auto", "reference", "sdpa", "triton")

AttentionFn = Callable[..., torch.Tensor]


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """softmax(Q Kᵀ · sm_scale + mask) for q (B, H, Nq, D) and k (B, H, Nk, D) → (B, H, Nq, Nk).

    sm_scale defaults to 1/√d_k: with unit-variance q and k, each logit q·k is a sum of d_k
    unit-variance terms (variance d_k); dividing by √d_k brings it back to variance 1, so the
    softmax does not saturate into a one-hot as d_k grows.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, Nq, Nk)

    # The mask enters here, and only here: a masked key gets a score of -inf, so exp() gives
    # it exactly zero weight. Padding keys are masked; padding *queries* still compute (their
    # outputs are ignored downstream).
    allowed = _allowed(key_padding_mask, causal, q.shape[-2], k.shape[-2], q.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))

    weights = torch.softmax(scores, dim=-1)
    if allowed is not None:
        # A row with every key masked is softmax(-inf, ..., -inf) = 0/0 = NaN; define it as 0.
        weights = weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
    return weights


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √d_k + mask) V, written out: (B, H, Nq, D) for v of shape (B, H, Nk, D)."""
    weights = attention_weights(q, k, key_padding_mask, causal, sm_scale)  # (B, H, Nq, Nk)
    if dropout_p > 0:  # BERT drops attention probabilities while training
        weights = F.dropout(weights, dropout_p)
    return torch.matmul(weights, v)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The same computation through torch's scaled_dot_product_attention."""
    allowed = _allowed(key_padding_mask, causal, q.shape[-2], k.shape[-2], q.device)
    if allowed is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=sm_scale)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p,
                                         scale=sm_scale)
    # Some SDPA kernels return NaN for fully masked rows; make them zero like the reference.
    return out.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)


def triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The fused kernel in minitf/kernels/ (imported lazily so minitf works where Triton is absent).

    The kernel has no attention-probability dropout: with dropout_p > 0 (training) it warns
    once and attends without it. attn_backend="auto" picks SDPA for such calls instead.
    """
    if dropout_p > 0:
        _warn_once("the Triton kernel applies no attention-probability dropout; training "
                   "through it runs without attention dropout (hidden dropout is unaffected)")
    try:
        from minitf.kernels import fused_attention
    except ImportError as exc:  # triton missing or broken on this machine
        raise MinitfError(
            f"attn_backend='triton' needs the Triton package, which failed to import ({exc}). "
            "Install it (pip install 'triton>=3.6') or use attn_backend='sdpa'."
        ) from exc
    return fused_attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal,
                           sm_scale=sm_scale)


def auto_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    sm_scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Fused kernel for fp16/bf16 CUDA tensors it supports, without dropout; SDPA otherwise.

    fp32 stays on SDPA: the kernel's fp32 path uses exact (non-TF32) products without tensor
    cores, a correctness path rather than a fast one.
    """
    if (q.is_cuda and dropout_p == 0 and q.dtype in (torch.float16, torch.bfloat16)
            and _triton_supports(q)):
        return triton_attention(q, k, v, key_padding_mask, causal, sm_scale)
    return sdpa_attention(q, k, v, key_padding_mask, causal, sm_scale, dropout_p)


def uses_packed_attention(backend: str, x: torch.Tensor, head_dim: int, packing: Packing,
                          dropout_p: float = 0.0) -> bool:
    """Whether this layer's attention runs on the packed (T, H, D) tokens (`packed_attention`)
    instead of the padded (B, H, N, D) layout: for a padded batch, with "triton" always (when
    the kernel takes the head dim), with "auto" when it would pick the fused kernel. x is the
    layer input; under autocast the projections come out in the autocast dtype."""
    if packing.mask is None or backend not in ("triton", "auto"):
        return False
    try:
        from minitf.kernels.config import HEAD_DIMS
    except ImportError:
        return False
    if head_dim not in HEAD_DIMS:
        return False  # the padded path says why ("triton") or uses SDPA ("auto")
    if backend == "triton":
        return True
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    return (x.is_cuda and dropout_p == 0 and dtype in (torch.float16, torch.bfloat16)
            and packing.batch * x.shape[-1] // head_dim <= 65535)


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """The fused kernel on packed tokens: q, k, v (T, H, D) → (T, H, D), each sequence attending
    to its own real tokens (minitf.kernels.varlen_attention with the packing's lengths)."""
    if dropout_p > 0:
        _warn_once("the Triton kernel applies no attention-probability dropout; training "
                   "through it runs without attention dropout (hidden dropout is unaffected)")
    from minitf.kernels import varlen_attention

    return varlen_attention(q, k, v, packing.cu_seqlens, packing.seq)


def get_attention(backend: str) -> AttentionFn:
    """The attention function for a backend name (see the module docstring)."""
    table = {"auto": auto_attention, "reference": reference_attention,
             "sdpa": sdpa_attention, "triton": triton_attention}
    if backend not in table:
        raise MinitfError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    return table[backend]


def _allowed(
    key_padding_mask: torch.Tensor | None, causal: bool, n_q: int, n_k: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B or 1, 1, Nq, Nk) matrix of which query may look at which key; None = all."""
    allowed = None
    if key_padding_mask is not None:
        allowed = key_padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    if causal:
        # Query i sees keys j ≤ i (aligned at the start when Nq ≠ Nk).
        tri = torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()[None, None]
        allowed = tri if allowed is None else allowed & tri
    return allowed


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=3)


def _triton_supports(q: torch.Tensor) -> bool:
    try:
        from minitf.kernels import is_supported
    except ImportError:
        return False
    return is_supported(q)


# ---------------------------------------------------------------------------------------------
# The padded layout attention needs, for an encoder that works on packed real tokens
# ---------------------------------------------------------------------------------------------


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The attention key-padding mask, True = a real token; None when nothing is padded (the
    unmasked attention kernels are faster, and packing the tokens is then a free reshape)."""
    return None if bool(attention_mask.all()) else attention_mask.bool()


class Packing:
    """Where the real tokens of a padded batch are, computed once per forward.

    The encoder works on the packed real tokens, a (T, C) matrix with T = attention_mask.sum():
    every linear layer, LayerNorm and the feed-forward act on each token alone, so padding
    would only cost arithmetic. Attention is the one step that needs the (B, N) layout: each
    layer scatters its input back to (B, N, C) once (unpack), projects Q/K/V there and splits
    them into (B, H, N, D) heads for the attention kernels; the result is gathered back
    (merge_heads). Without padding the packing is a free reshape of (B, N, C) to (B·N, C).
    With padding, cu_seqlens (B + 1,) int32 says where each sequence starts in (T, C), for the
    fused kernel's variable-length form, which needs no padded layout at all.
    """

    def __init__(self, attention_mask: torch.Tensor | None, batch: int, seq: int,
                 device: torch.device):
        self.batch, self.seq = batch, seq
        if attention_mask is not None and attention_mask.shape != (batch, seq):
            raise MinitfError(f"attention_mask has shape {tuple(attention_mask.shape)} but the "
                              f"tokens are {(batch, seq)} (batch, seq)")
        self.mask = None if attention_mask is None else key_padding_mask(attention_mask)
        starts = torch.arange(batch, device=device) * seq          # flat index of (b, 0)
        if self.mask is None:
            self.index = self.cu_seqlens = None
            self.cls_rows = starts                                 # (B,) rows of [CLS] in (T, C)
        else:
            lengths = self.mask.sum(dim=1, dtype=torch.int32)
            self.cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # (B + 1,)
            flat = self.mask.reshape(-1)
            self.index = flat.nonzero().squeeze(1)                 # (T,) flat b·N + n, real
            # The packed row of (b, 0): real tokens up to and including it, minus one.
            self.cls_rows = flat.long().cumsum(0)[starts] - 1  # long: ONNX CumSum has no bool

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (T, C), the real tokens in row-major order."""
        flat = x.reshape(self.batch * self.seq, x.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(T, C) → (B, N, C), zeros at the padding positions."""
        if self.index is not None:  # in place into fresh zeros: one write, no clone
            x = x.new_zeros(self.batch * self.seq, x.shape[-1]).index_copy_(0, self.index, x)
        return x.view(self.batch, self.seq, -1)

    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """(B, N, H·D) → (B, H, N, D): each head sees its own D-wide slice of the projection."""
        return x.view(self.batch, self.seq, heads, -1).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, N, D) → (T, H·D), the inverse of split_heads."""
        merged = x.transpose(1, 2).reshape(self.batch, self.seq, -1)
        return self.pack(merged)
