"""The training engine the recipes share: one step (step), the loop with its stops, resume and
evaluation schedule (loop), checkpoints (checkpoint), data parallelism (distributed), the
frozen-prefix cache (freeze), optimisation (optim), progress lines and plots."""
