#!/usr/bin/env bash
# The GPU checks of the Triton attention kernel, in one call (written without a GPU: first run
# pending). Runs the kernel tests compiled on the GPU (tests/test_kernels.py, the `gpu`-marked
# real-size cases included), then the benchmark sweep: bf16 in full (goal shapes D=64 first),
# fp16 quick. Each step has a time limit and the next step runs even if one fails; budget
# about 9 minutes in all (timeout_s 600 on the device tool). It leaves 8 files in $OUT, the
# most the device tool brings back.
#
#   bash benchmarks/gpu_check.sh        # logs and results into $OUT, else benchmarks/results
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-benchmarks/results}"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # compiled kernels on the GPU
status=0

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, triton, numpy; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'triton', triton.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$DEST/gpu-env.txt"

# 1. Tests. pytest-xdist (if present) compiles the many small variants in parallel.
XDIST=""
if "$PY" -c "import xdist" 2>/dev/null; then XDIST="-n 4"; fi
timeout 210 "$PY" -m pytest -q -p no:cacheprovider $XDIST tests/test_kernels.py -rs \
  2>&1 | tee "$DEST/gpu-tests.log" || status=1

# 2. Benchmark: bf16 full sweep (writes what it measured if the time limit stops it).
timeout 220 "$PY" benchmarks/attention.py --device cuda --dtype bf16 --out "$DEST" \
  2>&1 | grep -v "^USDT" | tee "$DEST/gpu-bench-bf16.log" || status=1

# 3. fp16, goal shapes only.
timeout 100 "$PY" benchmarks/attention.py --device cuda --dtype fp16 --quick --out "$DEST" \
  2>&1 | grep -v "^USDT" | tee "$DEST/gpu-bench-fp16.log" || status=1

ls -l "$DEST"
exit $status
