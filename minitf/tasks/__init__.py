"""Using a model: classify texts (classify), fill a [MASK] (fill_mask), sentence embeddings
(encode), ONNX export (export), PEFT's adapter format (peft_format) and the metrics tasks are
scored with (metrics). Never imports the training engine (minitf.train), so `minitf predict`
does not load it."""
