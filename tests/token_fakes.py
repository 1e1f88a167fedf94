"""A toy corpus for the token-task tests: random sentences over a small tagged lexicon, written
in the three token formats, and a tiny random 3-layer BERT with a character vocabulary."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from minitf.model.bert import BertModel
from minitf.model.config import BertConfig
from minitf.recipes.finetune import FinetuneConfig, FinetuneResult, finetune

WORDS = {"中国": "ns", "人民": "n", "北京": "ns", "大学": "n", "的": "u", "是": "v", "发展": "v",
         "经济": "n", "了": "u", "我们": "r", "和": "c", "新": "a", "世纪": "n", "改革开放": "v"}
SUFFIX = {"segment": "words", "tag": "pd", "ner": "conll"}


def sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(list(WORDS)) for _ in range(rng.randint(3, 12))] for _ in range(n)]


def conll_lines(rows: list[list[str]]) -> list[str]:
    """Places (ns) as LOC entities, a character per line, a blank line after each sentence."""
    lines = []
    for s in rows:
        for w in s:
            kind = "LOC" if WORDS[w] == "ns" else None
            lines += [f"{ch}\t{'O' if not kind else ('B-' if i == 0 else 'I-') + kind}"
                      for i, ch in enumerate(w)]
        lines.append("")
    return lines


def make_corpus(root: Path, train_size: int = 120, layers: int = 3) -> Path:
    """train.* and dev.* in each format, and model/: a random BertModel + vocab.txt."""
    for name, rows in (("train", sentences(train_size, 0)), ("dev", sentences(30, 1))):
        (root / f"{name}.words").write_text("\n".join(" ".join(s) for s in rows) + "\n",
                                            encoding="utf-8")
        (root / f"{name}.pd").write_text(
            "\n".join(" ".join(f"{w}/{WORDS[w]}" for w in s) for s in rows) + "\n",
            encoding="utf-8")
        (root / f"{name}.conll").write_text("\n".join(conll_lines(rows)) + "\n",
                                            encoding="utf-8")
    chars = sorted({c for w in WORDS for c in w})
    model = root / "model"
    model.mkdir()
    (model / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                *chars]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=layers,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(model)
    return root


def train(corpus: Path, task: str, out: Path, **changes) -> FinetuneResult:
    """`minitf finetune --task TASK` on the corpus (validation = test = dev)."""
    settings = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "max_length": 16,
                "progress": "off", **changes}
    suffix = SUFFIX[task]
    cfg = FinetuneConfig(task=task, train=str(corpus / f"train.{suffix}"),
                         validation=str(corpus / f"dev.{suffix}"),
                         test=str(corpus / f"dev.{suffix}"), model=str(corpus / "model"),
                         output=str(out), **settings)
    return finetune(cfg)
