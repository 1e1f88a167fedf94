"""MLM data: reading, packing into blocks, and BERT's dynamic 80/10/10 masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minitf.data.mlm import (
    IGNORE_INDEX,
    TRAIN,
    VALIDATION,
    MaskingPolicy,
    epoch_order,
    pack_blocks,
    read_documents,
)
from minitf.errors import MinitfError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
VOCAB = 50


def policy(p: float = 0.15) -> MaskingPolicy:
    return MaskingPolicy(VOCAB, MASK, SPECIAL, p)


def random_docs(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, VOCAB, size=rng.integers(1, 40)).tolist() for _ in range(n)]


# ---- packing ---------------------------------------------------------------------------------


def test_pack_blocks_cls_sep_and_document_boundaries():
    blocks = pack_blocks([[10, 11, 12], [20, 21], [30, 31, 32, 33]], 6, CLS, SEP)
    # stream: 10 11 12 SEP 20 21 SEP 30 31 32 33 → pieces of 4, the 3-token tail dropped
    assert blocks.tolist() == [[CLS, 10, 11, 12, SEP, SEP], [CLS, 20, 21, SEP, 30, SEP]]
    assert blocks.dtype == torch.int64


def test_packing_covers_every_token_but_the_short_tail():
    docs = random_docs(200)
    L = 16
    blocks = pack_blocks(docs, L, CLS, SEP)
    assert blocks.shape[1] == L and (blocks[:, 0] == CLS).all() and (blocks[:, -1] == SEP).all()
    stream = [t for i, d in enumerate(docs) for t in ([SEP] if i else []) + d]
    body = blocks[:, 1:-1].reshape(-1).tolist()
    assert body == stream[:len(body)]            # the tokens in order, none lost or repeated
    assert len(stream) - len(body) < L - 2       # only the last partial block is dropped


def test_empty_documents_are_skipped_and_too_little_text_is_an_error():
    assert pack_blocks([[], [5, 6], [], [7]], 5, CLS, SEP).tolist() == [[CLS, 5, 6, SEP, SEP]]
    with pytest.raises(MinitfError, match="corpus.txt: 3 tokens, fewer than one block"):
        pack_blocks([[5, 6, 7]], 8, CLS, SEP, source="corpus.txt")
    with pytest.raises(MinitfError, match="at least 3"):
        pack_blocks([[5, 6, 7]], 2, CLS, SEP)


# ---- masking ---------------------------------------------------------------------------------


def masked_corpus(p: float = 0.15, epoch: int = 0, n_blocks: int = 400, L: int = 64):
    blocks = pack_blocks(random_docs(2000, seed=1), L, CLS, SEP)[:n_blocks]
    batch = policy(p).mask(blocks, range(len(blocks)), seed=0, epoch=epoch)
    return blocks, batch["input_ids"], batch["labels"]


def test_masking_statistics_15_percent_and_80_10_10():
    blocks, inputs, labels = masked_corpus()
    ordinary = ~torch.isin(blocks, torch.tensor(SPECIAL))
    chosen = labels != IGNORE_INDEX
    rate = chosen.sum() / ordinary.sum()
    assert 0.14 < rate < 0.16, rate
    n = chosen.sum()
    to_mask = (inputs == MASK) & chosen
    unchanged = (inputs == blocks) & chosen
    to_random = chosen & ~to_mask & ~unchanged
    # Over ~3,700 chosen tokens the fractions sit within ~2 points of 80/10/10; a random token
    # can by chance equal the original (1 in 45 here), which moves ~0.2% from "random" to
    # "unchanged".
    assert abs(to_mask.sum() / n - 0.8) < 0.025
    assert abs(to_random.sum() / n - 0.1) < 0.02
    assert abs(unchanged.sum() / n - 0.1) < 0.02
    # Labels: the original id where chosen, ignored elsewhere; inputs unchanged elsewhere.
    assert (labels[chosen] == blocks[chosen]).all()
    assert (inputs[~chosen] == blocks[~chosen]).all()


def test_special_tokens_never_masked_nor_drawn():
    blocks, inputs, labels = masked_corpus(p=0.9)
    special = torch.isin(blocks, torch.tensor(SPECIAL))
    assert (labels[special] == IGNORE_INDEX).all()
    assert (inputs[special] == blocks[special]).all()
    random_positions = (labels != IGNORE_INDEX) & (inputs != MASK) & (inputs != blocks)
    assert random_positions.any()
    assert not torch.isin(inputs[random_positions], torch.tensor(SPECIAL)).any()
    # and an [UNK] in the text is never a target either
    block = torch.tensor([[CLS, UNK, 7, UNK, 8, SEP]])
    for seed in range(20):
        out = policy(0.99).mask(block, [0], seed=seed, epoch=0)
        assert out["labels"][0, [0, 1, 3, 5]].eq(IGNORE_INDEX).all()


def test_every_block_gets_at_least_one_target():
    blocks = pack_blocks(random_docs(300), 6, CLS, SEP)
    labels = policy(0.01).mask(blocks, range(len(blocks)), seed=3, epoch=0)["labels"]
    assert ((labels != IGNORE_INDEX).sum(1) >= 1).all()


def test_masks_are_deterministic_per_seed_epoch_block_and_redrawn_each_epoch():
    blocks = pack_blocks(random_docs(500), 32, CLS, SEP)
    mask = policy().mask
    a = mask(blocks, [5, 9, 2], seed=0, epoch=1)
    # Same (seed, epoch, block) → same masks, whatever the batch it is drawn in.
    b = mask(blocks, [2, 7, 5], seed=0, epoch=1)
    assert torch.equal(a["input_ids"][0], b["input_ids"][2])
    assert torch.equal(a["labels"][2], b["labels"][0])
    for other in (dict(seed=0, epoch=2), dict(seed=1, epoch=1),
                  dict(seed=0, epoch=1, split=VALIDATION)):
        c = mask(blocks, [5, 9, 2], **other)
        assert not torch.equal(a["labels"], c["labels"]), other
    assert TRAIN != VALIDATION


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(100, 0, 0)) == list(range(100))
    assert epoch_order(100, 0, 0) == epoch_order(100, 0, 0)
    assert epoch_order(100, 0, 0) != epoch_order(100, 0, 1)


def test_bad_policies():
    with pytest.raises(MinitfError, match="mlm-probability"):
        MaskingPolicy(VOCAB, MASK, SPECIAL, 1.5)
    with pytest.raises(MinitfError, match="outside the vocabulary"):
        MaskingPolicy(VOCAB, VOCAB, SPECIAL)


# ---- reading ---------------------------------------------------------------------------------


def test_read_documents_text_csv_and_bad_files(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text("第一篇\n\n  \nsecond doc \n", encoding="utf-8")
    assert read_documents(txt) == ["第一篇", "second doc"]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("label\treview\n1\t好\n0\t差\n", encoding="utf-8")
    assert read_documents(tsv, text_column="review") == ["好", "差"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(MinitfError, match="empty.txt: no text"):
        read_documents(empty)
    binary = tmp_path / "w.bin"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(MinitfError, match="w.bin: not a text file: looks binary"):
        read_documents(binary)
    latin = tmp_path / "l.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(MinitfError, match="l.txt:2: bytes that are not valid utf-8"):
        read_documents(latin)
    with pytest.raises(MinitfError, match="no such file"):
        read_documents(tmp_path / "missing.txt")
