"""minitf's fused attention kernel in Triton (FlashAttention-2 style), forward and backward.

    from minitf.kernels import fused_attention, is_supported
    out = fused_attention(q, k, v, key_padding_mask=mask)  # (B, H, N, D), differentiable

Runs compiled on CUDA tensors, or on CPU tensors under Triton's interpreter (set
TRITON_INTERPRET=1 before importing). Importing touches no GPU driver. The story of the kernel
is told in minitf/kernels/flash_attention.py.
"""

from minitf.kernels.flash_attention import fused_attention, is_supported

__all__ = ["fused_attention", "is_supported"]
