"""`minitf ...` with the fine-tuning tests' whitespace tokenizer (tests/ft_fakes.py), so that
tests/test_distributed.py can run `minitf finetune` under torchrun on a tiny random model.

Test-only fault injection, from the environment (the library has no such hooks):
MINITF_TEST_KILL_RANK=r, MINITF_TEST_KILL_STEP=n and MINITF_TEST_KILL_SIGNAL (default SIGKILL)
make rank r send itself that signal at its n-th training step (when the step's loss is
synchronised), so tests can check that the other ranks stop with an error instead of waiting."""

import os
import signal
import sys

from ft_fakes import FakeTokenizer

from minitf import cli
from minitf.tasks import classify as inference
from minitf.train.distributed import Context

inference.load_tokenizer = FakeTokenizer.from_pretrained

KILL_RANK = int(os.environ.get("MINITF_TEST_KILL_RANK", "-1"))
if KILL_RANK >= 0:
    kill_step = int(os.environ.get("MINITF_TEST_KILL_STEP", "0"))
    kill_signal = getattr(signal, os.environ.get("MINITF_TEST_KILL_SIGNAL", "SIGKILL"))
    steps = {"n": 0}
    mean_loss = Context.mean_loss

    def mean_loss_or_die(self, loss):
        steps["n"] += 1
        if self.rank == KILL_RANK and steps["n"] == kill_step:
            os.kill(os.getpid(), kill_signal)
        return mean_loss(self, loss)

    Context.mean_loss = mean_loss_or_die

sys.exit(cli.main(sys.argv[1:]))
