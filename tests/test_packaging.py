"""What an installed minitf looks like from outside: its import names beside Hugging Face's.

transformers (5.25 on) installs Hugging Face's `kernels` package, whose import name `kernels` was
once also minitf's top-level kernel package: from the repository root `import peft` failed, and
from anywhere else `attn_backend="triton"` found their package instead of ours. These tests run
fresh interpreters (so no module cached by this session hides a collision), from the repository
root and from an unrelated directory, and install a built wheel into a fresh venv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One script for a fresh interpreter: the oracles import, and a tiny classifier through the fused
# kernel (Triton's interpreter) matches the reference. Prints where each package came from.
BESIDE_HF_KERNELS = """
import json, os, sys
import kernels, peft, transformers
import torch
import minitf, minitf.kernels
from minitf import BertConfig, BertForSequenceClassification
config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=48, max_position_embeddings=16)
torch.manual_seed(0)
reference = BertForSequenceClassification(config, attn_backend="reference").eval()
fused = BertForSequenceClassification(config, attn_backend="triton").eval()
fused.load_state_dict(reference.state_dict())
ids = torch.randint(1, 40, (2, 12), generator=torch.Generator().manual_seed(1))
mask = (torch.arange(12)[None] < torch.tensor([[12], [5]])).long()
with torch.no_grad():
    err = (fused(ids, mask).logits - reference(ids, mask).logits).abs().max().item()
print(json.dumps({"hf_kernels": kernels.__file__, "minitf": minitf.__file__,
                  "minitf_kernels": minitf.kernels.__file__, "max_err": err}))
"""


def run_python(python: str | Path, script: str, cwd: Path) -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def have_hf_kernels() -> bool:
    spec = importlib.util.find_spec("kernels")
    return spec is not None and not ours(spec.origin or "")


def ours(path: str) -> bool:
    """A file from this checkout's sources (a .venv inside the checkout does not count)."""
    return any(Path(path).is_relative_to(ROOT / top) for top in ("kernels", "minitf"))


needs_hf_kernels = pytest.mark.skipif(
    not have_hf_kernels() or importlib.util.find_spec("peft") is None,
    reason="needs Hugging Face's `kernels` and PEFT installed (make test installs both)")


@needs_hf_kernels
@pytest.mark.parametrize("where", ["repository root", "another directory"])
def test_peft_transformers_and_the_fused_kernel_beside_hf_kernels(where, tmp_path):
    cwd = ROOT if where == "repository root" else tmp_path
    found = run_python(sys.executable, BESIDE_HF_KERNELS, cwd)
    assert not ours(found["hf_kernels"])  # theirs, not a folder of ours
    assert Path(found["minitf_kernels"]).parent.parent == Path(found["minitf"]).parent
    assert found["max_err"] <= 1e-5


def test_no_top_level_kernels_package_in_the_checkout():
    """The name `kernels` belongs to Hugging Face on PyPI; ours lives at minitf/kernels."""
    assert not (ROOT / "kernels").exists()
    assert (ROOT / "minitf" / "kernels" / "flash_attention.py").is_file()


# --- The wheel, installed into a fresh venv, used from outside the checkout ---------------------

# What the installed package must hold, checked from a fresh interpreter in the new venv.
INSTALLED = """
import json
from importlib import resources
import minitf, minitf.kernels.flash_attention
page = resources.files("minitf.study")
files = sorted(p.name for p in page.iterdir() if p.suffix in (".html", ".css", ".js"))
print(json.dumps({"minitf": minitf.__file__, "kernel": minitf.kernels.flash_attention.__file__,
                  "page": files}))
"""


def copy_sources(destination: Path) -> Path:
    """The tracked files only (what a clone has): no .venv, no build outputs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("needs a git checkout to know which files are sources")
    for name in listed.stdout.splitlines():
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources with the dev environment's setuptools."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("needs setuptools to build the wheel")
    work = tmp_path_factory.mktemp("wheel")
    source = copy_sources(work / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(work / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (work / "dist").glob("minitf-*.whl")
    return built


def test_the_wheel_installs_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"minitf"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    assert "minitf = minitf.cli:main" in scripts.split("[console_scripts]")[1]


def test_the_installed_wheel_finds_its_kernel_and_page_files(wheel, tmp_path):
    """A fresh venv (torch and friends reached through a .pth to this environment's
    site-packages, so torch is held and nothing is downloaded) with the wheel installed,
    used from a directory outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True, check=True)
    # A plain path line: the dev site-packages' own .pth files (the editable minitf) stay off.
    Path(new_site.stdout.strip(), "dev-environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    found = run_python(python, INSTALLED, outside)
    assert Path(found["minitf"]).is_relative_to(venv)
    assert Path(found["kernel"]).is_relative_to(venv)
    assert found["page"] == ["explorer.css", "explorer.html", "explorer.js", "explorer_views.js"]
    if have_hf_kernels() and importlib.util.find_spec("peft") is not None:
        beside = run_python(python, BESIDE_HF_KERNELS, outside)
        assert Path(beside["minitf"]).is_relative_to(venv) and beside["max_err"] <= 1e-5
    help_text = subprocess.run([str(venv / "bin" / "minitf"), "--help"], cwd=outside,
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "finetune" in help_text.stdout
