"""Training pieces shared by the recipes: data, optimizer, checkpoints, progress, metrics,
freezing and data parallelism."""
