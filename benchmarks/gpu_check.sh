#!/usr/bin/env bash
# The GPU check of minitf's Triton attention, in one command and at most 8 minutes on an H100 or
# H200 (written without a GPU: first run pending). Steps, each with its own time limit (sum of
# the limits 410 s, so a rerun still fits a 10-minute call); a step that fails or times out
# does not stop the next:
#   1. environment and a clock sampler (nvidia-smi every 500 ms, for the whole run);
#   2. compile every kernel variant × autotune config the sweep uses, in parallel, into
#      Triton's cache (also checks for register spills with this machine's ptxas);   45 s
#   3. the kernel tests compiled on the GPU (MINITF_AUTOTUNE=0: first config, no timing); 100 s
#   4. the sweep: fused (padded, varlen) vs SDPA flash/efficient/cuDNN/math pinned, fwd and
#      fwd+bwd, bf16 and fp16, D = 64 then 128, N = 128 … 8192 (stops itself at 180 s);  200 s
#   5. MiniLM forward and fine-tuning step, auto vs SDPA, bf16, real tweets (auto with the
#      varlen integration patched into a temporary copy if minitf lacks it);             60 s
# Files in $OUT (8 at most come back): gpu-env.txt, gpu-clocks.csv, gpu-run.log,
# attention-gpu.md / .json / .png, encoder-gpu.md.
#
#   bash benchmarks/gpu_check.sh            # into $OUT, else benchmarks/results/gpu-<date>
#   DRY_RUN=1 bash benchmarks/gpu_check.sh  # print the steps without running them
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEST="${OUT:-benchmarks/results/gpu-$(date -u +%Y-%m-%d)}"
PY="${PYTHON:-python3}"
LOG="$DEST/gpu-run.log"
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # compiled kernels on the GPU
status=0

step() {  # step <seconds> <name> <command...>: time-limited, logged, failure remembered
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)" | tee -a "$LOG"
  if [ -n "${DRY_RUN:-}" ]; then echo "$*" | tee -a "$LOG"; return; fi
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | grep -v "^USDT" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc $(date -u +%T)" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || status=1
}

# 1. Environment; clocks sampled in the background until the end.
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv
  "$PY" -c "import torch, triton, numpy; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'triton', triton.__version__, \
'numpy', numpy.__version__, 'capability', torch.cuda.get_device_capability())"
} > "$DEST/gpu-env.txt" 2>&1
cat "$DEST/gpu-env.txt"
ARCH=$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(); print(10 * a + b)" \
  2>/dev/null || echo 90)
CLOCKS_PID=""
if [ -z "${DRY_RUN:-}" ] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu \
    --format=csv -lms 500 > "$DEST/gpu-clocks.csv" 2>&1 &
  CLOCKS_PID=$!
fi

# 2. Compile into Triton's cache, in parallel (the variants the sweep and tests launch first).
step 45 "compile sm_$ARCH" "$PY" -m minitf.kernels.compile_check --arch "$ARCH" --quiet \
  --jobs "$(nproc)" --layouts none lens varlen --causal 0

# 3. Tests, compiled on this GPU; pytest-xdist (if present) compiles variants in parallel.
XDIST=""
if "$PY" -c "import xdist" 2>/dev/null; then XDIST="-n 8"; fi
step 100 "kernel tests" env MINITF_AUTOTUNE=0 "$PY" -m pytest -q -p no:cacheprovider $XDIST \
  tests/test_kernels.py tests/test_kernels_varlen.py -rs -x

# 4. The sweep (writes its table after every shape; stops itself before the limit).
step 200 "attention sweep" "$PY" benchmarks/attention_gpu.py --out "$DEST" --budget-s 180

# 5. The encoder end to end: auto (the varlen kernel on padded batches) against SDPA.
step 60 "encoder" "$PY" benchmarks/encoder_gpu.py \
  --out "$DEST" --texts 2048 --repeats 3

[ -n "$CLOCKS_PID" ] && kill "$CLOCKS_PID" 2>/dev/null
ls -l "$DEST" | tee -a "$LOG"
exit $status
