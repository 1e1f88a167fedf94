"""The README's commands, run exactly as written, so the tutorial cannot rot.

Convention (README.md):

    <!-- tested -->
    ```bash
    .venv/bin/minitf attention --text "The cat sat on the mat." -o attn.png
    ```

A fenced ```bash (or ```sh / ```shell) block directly after an `<!-- tested -->` line is run as
one bash script (`set -eo pipefail`, so the block stops at the first failing command), the way a
reader pastes it into a terminal after `make demo` has created .venv:

* from a scratch directory that mirrors the repository root (a symlink to every top-level entry
  except .git), so relative paths such as `benchmarks/encoder.py` or `.venv/bin/minitf` work
  and any file a command writes into the current directory lands in the scratch directory,
  not in the checkout. (Write outputs to the current directory, e.g. `-o attn.png`.)
* with the Python that runs pytest (its `bin/` first on PATH, so `python` and `minitf` work
  too), MPLBACKEND=Agg, and MINITF_README_TEST=1.
* commands starting with `make`, `torchrun`, `pip`, `git`, `cd`, `sudo` or `apt-get` are left
  out: CI runs make and torchrun separately (or they are too slow), and installing or cloning
  is the job of the machine that runs the tests.
* one test per block, marked `slow`; the time limit per block is MINITF_README_TIMEOUT seconds
  (default 900).

A ```python block after the marker is run the same way, as one script fed to that Python's
stdin (`python -` in the scratch directory, so `import minitf` finds the checkout's package):
the README's Python examples are tested too.

Blocks without the marker are documentation only and never run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = "<!-- tested -->"
FENCES = ("```bash", "```sh", "```shell")
PYTHON_FENCE = "```python"
SKIPPED_PROGRAMS = ("make", "torchrun", "pip", "pip3", "git", "cd", "sudo", "apt-get", "apt")
TIMEOUT = int(os.environ.get("MINITF_README_TIMEOUT", "900"))


@dataclass
class Block:
    heading: str         # the README section the block sits in
    line: int            # 1-based line of the opening fence
    commands: list[str]  # logical commands (continuation lines joined), comments dropped
    skipped: list[str]   # commands left out (see SKIPPED_PROGRAMS)
    language: str = "bash"  # or "python": commands is then the one script

    @property
    def name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"{slug}-line{self.line}"


def is_skipped(command: str) -> bool:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # unbalanced quotes: let bash report it
        words = command.split()
    program = Path(words[0]).name if words else ""
    if program.startswith("python") and words[1:3] == ["-m", "pip"]:
        return True
    return program in SKIPPED_PROGRAMS


def find_tested_blocks(markdown: str) -> list[Block]:
    """Every fenced shell block that directly follows a `<!-- tested -->` line."""
    lines = markdown.splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#") and not blocks_open(lines, i):
            heading = line.lstrip("#").strip()
        if line == MARKER:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            fence = lines[j].strip() if j < len(lines) else ""
            if fence not in (*FENCES, PYTHON_FENCE):
                raise ValueError(f"README.md line {i + 1}: {MARKER} must be followed by a "
                                 f"```bash or ```python block")
            body, k = [], j + 1
            while k < len(lines) and lines[k].strip() != "```":
                body.append(lines[k])
                k += 1
            blocks.append(make_block(heading, j + 1, body, fence == PYTHON_FENCE))
            i = k
        i += 1
    return blocks


def make_block(heading: str, line: int, body: list[str], python: bool) -> Block:
    if python:
        return Block(heading, line, ["\n".join(body) + "\n"], [], "python")
    commands = logical_commands(body)
    return Block(heading, line, [c for c in commands if not is_skipped(c)],
                 [c for c in commands if is_skipped(c)])


def blocks_open(lines: list[str], index: int) -> bool:
    """Whether line `index` sits inside a fenced block (so a `# comment` is not a heading)."""
    return sum(line.strip().startswith("```") for line in lines[:index]) % 2 == 1


def logical_commands(body: list[str]) -> list[str]:
    """Join `\\` continuation lines; drop blank lines, comments and a leading `$ ` prompt."""
    commands, current = [], ""
    for raw in body:
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if not current and line.startswith("$ "):
            line = line[2:]
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        commands.append(current + line)
        current = ""
    if current.strip():
        commands.append(current.strip())
    return commands


def mirror_repository(scratch: Path) -> Path:
    """A directory that looks like the repository root but keeps new files to itself."""
    root = scratch / "minitf"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name != ".git":
            (root / entry.name).symlink_to(entry)
    return root


def readme_env(scratch: Path) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    shims = scratch / "bin"
    shims.mkdir()
    for name, runs in (("python", ""), ("minitf", " -m minitf")):
        if not (bin_dir / name).exists():  # e.g. tests run by a python without the script
            (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{runs} "$@"\n')
            (shims / name).chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shims), str(bin_dir), env.get("PATH", "")])
    env.update(MPLBACKEND="Agg", MINITF_README_TEST="1", PYTHONDONTWRITEBYTECODE="1")
    return env


# ---------------------------------------------------------------------------------------------
# The parser, on a small README
# ---------------------------------------------------------------------------------------------

SAMPLE = """\
# minitf

## Study

<!-- tested -->
```bash
# draw one head
.venv/bin/minitf attention --text "Hi there." \\
    --head 0 -o attn.png
make test
$ python -c "print('ok')"
```

```bash
minitf never-run
```

## Fine-tune
<!-- tested -->

```sh
torchrun --nproc-per-node 2 train.py
python -m pip install -e .
```

## Python
<!-- tested -->
```python
import minitf
# a comment, not a heading
print(minitf.__name__)
```
"""


def test_the_readme_parser_finds_marked_blocks_and_joins_continuations() -> None:
    blocks = find_tested_blocks(SAMPLE)
    assert [b.heading for b in blocks] == ["Study", "Fine-tune", "Python"]
    assert blocks[0].commands == [
        '.venv/bin/minitf attention --text "Hi there." --head 0 -o attn.png',
        "python -c \"print('ok')\"",
    ]
    assert blocks[0].skipped == ["make test"]
    assert blocks[1].commands == []
    assert blocks[1].skipped == ["torchrun --nproc-per-node 2 train.py",
                                 "python -m pip install -e ."]
    assert blocks[0].name == "study-line6"
    assert blocks[2].language == "python" and blocks[2].skipped == []
    assert blocks[2].commands == ["import minitf\n# a comment, not a heading\n"
                                  "print(minitf.__name__)\n"]


def test_a_marker_without_a_shell_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="must be followed by a ```bash or ```python block"):
        find_tested_blocks("<!-- tested -->\nplain text\n")


# ---------------------------------------------------------------------------------------------
# The README itself
# ---------------------------------------------------------------------------------------------

BLOCKS = find_tested_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MINITF_README_TEST") == "1",
                    reason="already inside a README command (no recursion)")
@pytest.mark.parametrize("block", BLOCKS or [None], ids=[b.name for b in BLOCKS] or ["none"])
def test_readme_block_runs_as_written(block: Block | None, tmp_path: Path) -> None:
    if block is None:
        pytest.skip(f"README.md has no {MARKER} blocks")
    if not block.commands:
        pytest.skip(f"every command of README.md line {block.line} is run elsewhere: "
                    f"{block.skipped}")
    root = mirror_repository(tmp_path)
    if block.language == "python":  # as pasted into `python` started in the repository root
        command, script = [sys.executable, "-"], block.commands[0]
    else:
        command, script = ["bash", "-c", "set -eo pipefail\n" + "\n".join(
            f"echo {shlex.quote('+ ' + c)} >&2\n{c}" for c in block.commands)], None
    try:
        result = subprocess.run(command, cwd=root, env=readme_env(tmp_path), input=script,
                                capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md line {block.line} ({block.heading}) ran over {TIMEOUT} s "
                    f"(MINITF_README_TIMEOUT); last output:\n{(exc.stderr or '')[-2000:]}")
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.heading}) failed with exit code "
        f"{result.returncode}.\n--- stdout ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-3000:]}")
