"""A small seeded fuzzer shared by tests/test_fuzz_*.py.

Each fuzz test describes its loader by two functions:

    make_case(rng) -> Case            a mutated input: {file name: bytes}, loader options
    load(directory, **options)        the loader under test, reading that directory
    check(result, directory)          what a correct load must satisfy (asserts)

and `fuzz()` runs the cases. Case i is drawn from `random.Random(f"{name}:{i}")`, so a failing
case is replayed by its index alone. Every case must end in one of two ways:

- a correct load: `load` returns and `check` passes;
- a refusal: `load` raises `MinitfError` whose message names the case's directory (every file
  of a case lives there, so naming the file names it).

Anything else is a crash: another exception (including `check` failing, or a Rust panic, which
is a BaseException), a case running longer than `time_limit` seconds (a SIGALRM interrupts it),
or peak memory growing by more than `memory_limit_mb` during the case (a refused allocation is
fine; an attempted one is not: the inputs are a few kB to a few MB).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError

QUICK_CASES = 150  # per loader, when --fuzz-cases is not given
MAX_SHOWN = 8      # crashes printed in the failure message


class CaseTimeout(BaseException):
    """Raised by the watchdog inside a case that runs past its time limit (a BaseException,
    so that a loader's `except Exception` cannot swallow it)."""


@dataclass
class Case:
    what: str                 # how the input was mutated, for the failure message
    files: dict[str, bytes]   # written into the case's own directory
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `load`


@dataclass
class Report:
    name: str
    cases: int = 0
    loaded: int = 0
    refused: int = 0
    crashes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"fuzz {self.name}: {self.cases} cases, {self.loaded} loaded, {self.refused} "
                f"refused with MinitfError, {len(self.crashes)} crashes, {self.seconds:.1f} s")


def fuzz(name: str, make_case: Callable[[random.Random], Case], load: Callable[..., Any],
         check: Callable[[Any, Path], None], tmp_path: Path, cases: int | None,
         time_limit: float = 20.0, memory_limit_mb: int = 512) -> Report:
    """Run `cases` seeded cases (QUICK_CASES if None) and assert that none crashed."""
    report = Report(name)
    started = time.perf_counter()
    for index in range(QUICK_CASES if cases is None else cases):
        rng = random.Random(f"{name}:{index}")
        case = make_case(rng)
        directory = tmp_path / f"{name}-case-{index:05d}"
        directory.mkdir()
        for file_name, content in case.files.items():
            (directory / file_name).write_bytes(content)
        problem = _run_case(directory, partial(load, **case.options), check, time_limit,
                            memory_limit_mb)
        report.cases += 1
        if problem is None:
            report.loaded += 1
        elif problem == "refused":
            report.refused += 1
        else:
            report.crashes.append(f"case {index} ({case.what}, {case.options}): {problem}")
        shutil.rmtree(directory, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    print(report.summary())
    shown = "\n".join(report.crashes[:MAX_SHOWN])
    assert not report.crashes, f"{report.summary()}\n{shown}"
    return report


def _run_case(directory: Path, load: Callable[[Path], Any], check: Callable[[Any, Path], None],
              time_limit: float, memory_limit_mb: int) -> str | None:
    """None for a correct load, "refused" for a proper MinitfError, else what went wrong."""
    peak_before = _peak_rss_mb()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        result = load(directory)
        check(result, directory)
        outcome = None
    except MinitfError as exc:
        outcome = ("refused" if str(directory) in str(exc)
                   else f"MinitfError that does not name the file: {exc}")
    except CaseTimeout:
        outcome = f"still running after {time_limit:.0f} s (a hang?)"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any other exception is what we look for
        outcome = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grown = _peak_rss_mb() - peak_before
    if grown > memory_limit_mb:
        outcome = f"peak memory grew by {grown:.0f} MB (then: {outcome or 'loaded'})"
    return outcome


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


# ---- A memory ceiling: a child process whose address space is capped --------------------------


def limit_address_space(extra_mb: int) -> None:
    """Cap this process's address space (RLIMIT_AS) at what it maps now plus `extra_mb`, so an
    allocation of gigabytes fails (MemoryError / RuntimeError: a crash the fuzzer reports)
    instead of swapping the machine. Call it in a child process only, after the imports."""
    status = Path("/proc/self/status").read_text()
    mapped_kb = int(next(line.split()[1] for line in status.splitlines()
                         if line.startswith("VmSize:")))
    limit = mapped_kb * 1024 + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def run_in_child(test_file: str | Path, function: str, tmp_path: Path, cases: int | None,
                 extra_mb: int = 1536, timeout: float = 900) -> None:
    """Run `function(tmp_path, cases)` of the test module `test_file` in a fresh Python whose
    address space is capped (limit_address_space); fail with its output unless it passes."""
    test_file = Path(test_file)
    code = (f"import sys, torch; sys.path.insert(0, {str(test_file.parent)!r}); "
            "torch.set_num_threads(1); "
            f"import fuzzing, {test_file.stem} as m; from pathlib import Path; "
            f"fuzzing.limit_address_space({extra_mb}); "
            f"m.{function}(Path({str(tmp_path)!r}), {cases!r})")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout, env=env)
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


# ---- Mutations of bytes ----------------------------------------------------------------------

# Byte strings that break parsers: NUL, invalid UTF-8, BOMs, quotes, delimiters, line ends,
# numbers that overflow, and the start of deep nesting.
HOSTILE_BYTES = (b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xff\xfe",
                 b'"', b"'", b"\\", b",", b"\t", b"\n", b"\r", b"\r\n", b"{", b"}", b"[", b"]",
                 b":", b"NaN", b"-Infinity", b"1e999", b"-1", b"9" * 400, b"[" * 5000,
                 b"\x80" * 64, "\u00e9\u4e2d\U0001f600".encode())


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One random byte-level mutation: (what was done, the new bytes)."""
    n = len(data)
    pos = rng.randrange(n + 1)
    op = rng.choice(("truncate", "overwrite", "insert", "delete", "duplicate", "garbage",
                     "hostile"))
    if op == "truncate":
        return f"truncated to {pos} bytes", data[:pos]
    if op == "overwrite":
        count = rng.choice((1, 1, 2, 4, 16))
        out = bytearray(data)
        for _ in range(count):
            if out:
                out[rng.randrange(len(out))] = rng.randrange(256)
        return f"{count} random bytes overwritten", bytes(out)
    if op == "insert":
        chunk = rng.randbytes(rng.choice((1, 3, 50)))
        return f"{len(chunk)} random bytes inserted at {pos}", data[:pos] + chunk + data[pos:]
    if op == "delete":
        end = min(n, pos + rng.choice((1, 2, 10, 1000)))
        return f"bytes {pos}:{end} deleted", data[:pos] + data[end:]
    if op == "duplicate":
        end = min(n, pos + rng.choice((1, 10, 200)))
        return f"bytes {pos}:{end} duplicated", data[:end] + data[pos:end] + data[end:]
    if op == "garbage":
        size = rng.choice((0, 1, 7, 100, 4096))
        return f"{size} bytes of random garbage", rng.randbytes(size)
    token = rng.choice(HOSTILE_BYTES)
    return f"{token[:12]!r} inserted at {pos}", data[:pos] + token + data[pos:]


# ---- Mutations of JSON documents -------------------------------------------------------------

DEEP = "__deeply_nested__"  # replaced by 100,000 nested lists after serialising


def hostile_value(rng: random.Random) -> Any:
    """A JSON value that a settings reader must not trust."""
    return rng.choice((
        math.nan, math.inf, -math.inf, -1, 0, 1, 2**63, -(2**63), 10**30, 1e308, 0.5, -0.0,
        "", "x" * 10_000, "\udcff", "[UNK]", "gelu", [], [1, 2], {}, {"a": {"b": []}}, None,
        True, False, DEEP, 10**200, "9" * 5000))


def mutate_json(rng: random.Random, doc: Any, keys: Sequence[str] = ()) -> tuple[str, bytes]:
    """A structural mutation of a parsed JSON document, serialised (with NaN/Infinity, as
    Python's json writes and reads them), or (40%) a byte mutation. `keys`: settings the
    reader knows, tried as added keys next to odd ones."""
    text = json.dumps(doc)
    if rng.random() < 0.4:
        return mutate_bytes(rng, text.encode())
    doc = json.loads(text)  # a private copy
    paths = list(_paths(doc))
    path = rng.choice(paths)
    op = rng.choice(("replace", "replace", "replace", "delete", "add", "duplicate", "wrap"))
    value = hostile_value(rng)
    if op == "wrap" or not path:
        what, doc = "document replaced by a hostile value", value
    elif op == "delete":
        what = f"{path} deleted"
        del _parent(doc, path)[path[-1]]
    elif op == "add" and isinstance(_parent(doc, path), dict):
        key = rng.choice((*keys, *keys, "", "\u0000", "x" * 1000, "__metadata__", "\udcff"))
        what = f"key {key[:20]!r} = {_short(value)} added next to {path}"
        _parent(doc, path)[key] = value
    else:
        what = f"{path} = {_short(value)}"
        _parent(doc, path)[path[-1]] = value
    text = json.dumps(doc)
    if op == "duplicate" and path and text.startswith("{") and len(text) > 2:
        key = path[0] if isinstance(path[0], str) else "x"
        what = f"key {key!r} duplicated with {_short(value)}"
        text = "{" + json.dumps(key) + ": " + json.dumps(value) + ", " + text[1:]
    text = text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000)
    return what, text.encode("utf-8", "surrogatepass")


def _paths(doc: Any, prefix: tuple = (), depth: int = 0):
    yield prefix
    if depth > 6:
        return
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) \
        else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key), depth + 1)


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _short(value: Any) -> str:
    return repr(value)[:30]
