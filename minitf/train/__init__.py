"""The training engine the recipes share: one step (step.py), the loop with its stops, resume
and evaluation schedule (loop.py), checkpoints (checkpoint.py), data parallelism
(distributed.py), progress, metrics and plots; and the pieces of data (data.py, mlm.py),
optimisation (optim.py) and freezing (freeze.py) the recipes choose from."""
