"""minitf: a readable BERT-family encoder with a Triton fused-attention kernel."""
