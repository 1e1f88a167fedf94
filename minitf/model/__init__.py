"""The model and its formats: the configuration (config), attention and its backends
(attention; the fused Triton kernel is minitf.kernels), the BERT encoder and its heads (bert),
Hugging Face weights in and out (weights), which parameters train (freeze), LoRA adapters
(lora), and precision and device choice (precision). Imports nothing above it."""
