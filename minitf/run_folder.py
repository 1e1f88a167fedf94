"""Output folders: minitf writes only into folders that are its own, one run at a time.

An output folder is minitf's or it is refused:

* a folder minitf creates gets a marker, `minitf-run.json` (command, minitf version, time);
* an existing folder is written into only if it is empty or carries that marker; anything
  else is one error naming the folder and what is in it, and nothing in it is touched;
* a folder that already holds a run's results (`holds`: last/, config.json, ...) needs
  `--resume` or `--overwrite`, as each command says;
* a symlink as the output folder is refused (minitf.io refuses symlinked files inside it);
* one run per folder: `.minitf-run.lock` is locked (fcntl.flock) for the whole run and
  released on exit, crash or kill; a second run is told the first one's PID and start time.
  Under torchrun rank 0 holds it.

    folder = RunFolder("out", "finetune")            # nothing happens yet
    folder.check(resume=False, overwrite=False)      # read-only: refuse early, before work
    out = folder.open()                              # create + mark + lock
    ...
    folder.close()                                   # or `with RunFolder(...) as folder:`
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError
from minitf.io import is_temporary, refuse_symlink, write_text

MARKER = "minitf-run.json"
LOCK = ".minitf-run.lock"
SHOWN = 5  # entries of a foreign folder named in the error


def is_minitf_folder(folder: Path) -> bool:
    """Whether `folder` carries minitf's marker."""
    return (folder / MARKER).is_file() and not (folder / MARKER).is_symlink()


def write_marker(folder: Path, command: str) -> None:
    """The marker: which command made the folder, with which minitf, when."""
    from minitf import __version__

    record = {"command": command, "version": __version__,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text(folder / MARKER, json.dumps(record) + "\n")


def check_folder(folder: str | os.PathLike, *, what: str = "--output") -> Path:
    """`folder` if minitf may write into it (absent, empty or marked); else one MinitfError
    naming it and what is in it. Read-only."""
    folder = Path(folder)
    if folder.is_symlink():
        raise MinitfError(f"{what} {folder} is a symlink (to {os.readlink(folder)}); minitf "
                          "does not write through symlinks: give the real folder")
    if folder.exists() and not folder.is_dir():
        raise MinitfError(f"{what} {folder} is a file, not a folder; choose another {what}")
    if not folder.is_dir() or is_minitf_folder(folder):
        return folder
    try:
        entries = sorted(e.name for e in folder.iterdir()
                         if not is_temporary(e.name) and e.name != LOCK)
    except OSError as exc:
        raise MinitfError(f"cannot read the output folder {folder} ({exc.strerror}); choose "
                          f"another {what}") from None
    if entries:
        shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more"
                                              if len(entries) > SHOWN else "")
        raise MinitfError(f"{what} {folder} is not empty and was not made by minitf (no "
                          f"{MARKER}); it holds {shown}. minitf writes only into a new or "
                          f"empty folder, or one of its own: choose another {what}")
    return folder


class RunFolder:
    """One run's output folder: checked, created, marked and locked (see the module)."""

    def __init__(self, folder: str | os.PathLike, command: str, main: bool = True):
        self.folder, self.command, self.main = Path(folder), command, main
        self._fd: int | None = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, resume: bool = False, overwrite: bool = False,
              holds: tuple[str, ...] = ("last",)) -> Path:
        """Read-only: the folder may be written (see check_folder); it holds no run unless
        `resume`/`overwrite`; no other run holds its lock (rank 0 only)."""
        folder = check_folder(self.folder)
        present = [name for name in holds if (folder / name).exists()]
        if present and not (resume or overwrite):
            raise MinitfError(f"{folder} already holds a minitf run ({', '.join(present)}); "
                              "pass --resume to continue it, --overwrite to start again "
                              "there, or choose another --output")
        if self.main and self._fd is None and (folder / LOCK).is_file():
            self._take_lock(probe=True)
        return folder

    def open(self) -> Path:
        """Create the folder if needed, mark it as minitf's and lock it (rank 0); the others
        just check it. Returns the folder."""
        folder = check_folder(self.folder)
        if not self.main:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MinitfError(f"cannot write to the output directory {folder} "
                              f"({exc.strerror}); choose a writable --output") from None
        if not is_minitf_folder(folder):
            write_marker(folder, self.command)
        if self._fd is None:
            self._take_lock()
        return folder

    def close(self) -> None:
        """Release the lock (the OS does it too when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _take_lock(self, probe: bool = False) -> None:
        path = refuse_symlink(self.folder / LOCK)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise MinitfError(f"cannot write {path} ({exc.strerror}); choose a writable "
                              "output folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise MinitfError(
                f"{self.folder} is in use by another minitf run (PID {holder.get('pid', '?')}, "
                f"{holder.get('command', 'minitf')}, started {holder.get('started', '?')}); "
                "wait for it to finish or stop it, or choose another --output") from None
        if probe:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return
        record = {"pid": os.getpid(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
