"""minitf's fused attention kernel in Triton (FlashAttention-2 style), forward and backward.

    from minitf.kernels import fused_attention, varlen_attention
    out = fused_attention(q, k, v, key_padding_mask=mask)  # (B, H, N, D), differentiable
    out = varlen_attention(q, k, v, cu_seqlens, max_seqlen)  # packed (T, H, D), no padding

Runs compiled on CUDA tensors, or on CPU tensors under Triton's interpreter (set
TRITON_INTERPRET=1 before importing). Importing touches no GPU driver. The story of the kernel
is told in minitf/kernels/flash_attention.py.
"""

from minitf.kernels.flash_attention import fused_attention, is_supported
from minitf.kernels.varlen import cu_seqlens_from_mask, varlen_attention, varlen_supported

__all__ = ["cu_seqlens_from_mask", "fused_attention", "is_supported", "varlen_attention",
           "varlen_supported"]
