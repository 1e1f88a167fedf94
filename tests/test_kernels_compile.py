"""`python -m minitf.kernels.compile_check` on one small variant: every autotune config of the
D = 64 lists compiles for sm_80 with Triton's own ptxas (no GPU needed), the summary is printed,
and a spill (simulated by wrapping ptxas's report) makes it exit non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import minitf.kernels.compile_check as cc
argv = ["compile_check", "--arch", "80", "--dtypes", "bf16", "--head-dims", "64",
        "--layouts", "varlen", "--causal", "0", "--quiet"]
sys.argv = argv
cc.main()  # must not exit
real = cc.ptxas_report
def spilling(ptx, arch):
    regs, spill, text = real(ptx, arch)
    return regs, spill + (8 if "_attn_bwd_dkdv" in ptx else 0), text
cc.ptxas_report = spilling
try:
    cc.main()
except SystemExit as exc:
    print("exit", exc.code)
"""


def test_compile_check_passes_and_fails_on_a_spill():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = result.stdout.split("summary sm_80", 1)[1], result.stdout.split("exit")[-1]
    assert "OK: 13 kernels, no spills" in first  # 5 fwd + 4 dK/dV + 3 dQ configs + preprocess
    assert "_attn_bwd_dkdv" in first and "spill 0" in first
    assert "FAIL: 4 kernels spill registers" in result.stdout and second.strip() == "1"
