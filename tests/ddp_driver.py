"""`minitf ...` with the fine-tuning tests' whitespace tokenizer (tests/ft_fakes.py), so that
tests/test_distributed.py can run `minitf finetune` under torchrun on a tiny random model."""

import sys

from ft_fakes import FakeTokenizer

from minitf import cli, evaluate

evaluate.load_tokenizer = FakeTokenizer.from_pretrained
sys.exit(cli.main(sys.argv[1:]))
