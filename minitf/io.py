"""The one way minitf writes files and folders: whole or not at all, never through a symlink.

    with atomic_file("model.onnx") as tmp:      # write tmp (a path); on success it becomes
        export_to(tmp)                           # model.onnx in one rename
    write_text("notes.txt", "...")               # the same for a string / bytes
    with atomic_directory("out/best") as tmp:    # fill a folder; on success it replaces
        save(tmp)                                # out/best, keeping the old one until then
    with staged_files("out") as tmp:             # fill a folder; on success each file is
        save(tmp)                                # renamed into out/, the rest of out/ kept

Every temporary name starts with `.<name>.minitf-tmp-` (files and folders being written) or
`.<name>.minitf-old-` (a folder being replaced), in the same folder as the destination, so a
rename is atomic and a crash leaves only hidden, recognisable leftovers. Files are created
with mode 0o666 and folders 0o777 minus the user's umask, as `open()` and `mkdir` would.
A destination that is a symlink is refused: minitf never writes through one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from minitf.errors import MinitfError

TEMP_MARK, OLD_MARK = ".minitf-tmp-", ".minitf-old-"


def is_temporary(name: str) -> bool:
    """Whether `name` is one of the hidden names this module writes through."""
    return name.startswith(".") and (TEMP_MARK in name or OLD_MARK in name)


def refuse_symlink(path: str | os.PathLike) -> Path:
    """`path`, or an error if it is a symlink (minitf writes no file through one)."""
    path = Path(path)
    if path.is_symlink():
        raise MinitfError(f"{path} is a symlink (to {os.readlink(path)}); minitf does not write "
                          "through symlinks: remove it or choose another path")
    return path


def open_append(path: str | os.PathLike, mode: str = "a") -> TextIO:
    """Open `path` for appending (or "w" writing) text without following a final symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else
                                                        os.O_TRUNC)
    try:
        fd = os.open(refuse_symlink(path), flags, 0o666)
    except OSError as exc:
        raise MinitfError(f"cannot write {path} ({exc.strerror}); choose a writable "
                          "output folder") from None
    return os.fdopen(fd, mode, encoding="utf-8")


def _temp_name(path: Path, mark: str = TEMP_MARK) -> Path:
    return path.with_name(f".{path.name}{mark}{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a new empty temporary file next to `path`; when the block ends without an error
    it is synced and renamed onto `path`. On any error (or Ctrl-C) it is removed.
    `overwrite=False` refuses an existing `path`."""
    path = refuse_symlink(path)
    if path.is_dir():
        raise MinitfError(f"{path} is a folder; give a file name")
    if not overwrite and path.exists():
        raise MinitfError(f"{path} already exists; pass --overwrite to replace it, or choose "
                          "another file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(path)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
    except OSError as exc:
        raise MinitfError(f"cannot write {path} ({exc.strerror}); choose a writable "
                          "folder") from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        refuse_symlink(path)  # checked again: one may have appeared meanwhile
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write `data` to `path` atomically (see atomic_file)."""
    with atomic_file(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write `text` (UTF-8, newlines as given) to `path` atomically (see atomic_file)."""
    return write_bytes(path, text.encode("utf-8"), overwrite)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to `directory`; on success it replaces `directory`.

    What the old `directory` holds that the writer did not produce (tokenizer files, a user's
    notes, a sub-folder) is copied into the new one first, and the old one is renamed aside
    until the new one is in place, so nothing is lost at any moment; then the old is removed.
    """
    target = refuse_symlink(directory)
    if target.exists() and not target.is_dir():
        raise MinitfError(f"{target} is a file, not a folder; remove it or choose another "
                          "output folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(target)
        tmp.mkdir()
    except OSError as exc:
        raise MinitfError(f"cannot write to {target.parent} ({exc.strerror}); choose a "
                          "writable output folder") from None
    try:
        yield tmp
        _swap_in(tmp, refuse_symlink(target))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def staged_files(folder: str | os.PathLike, last: str = "config.json") -> Iterator[Path]:
    """Yield an empty temporary folder inside `folder` (created if needed); when the block ends
    without an error each file written there is synced and renamed into `folder`, one atomic
    rename per file (`last` renamed last), replacing files of the same name but never a
    symlink; nothing else in `folder` is touched. On any error the temporary folder goes."""
    folder = refuse_symlink(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(folder / "staged")
        tmp.mkdir()
    except OSError as exc:
        raise MinitfError(f"cannot write to {folder} ({exc.strerror}); choose a writable "
                          "output folder") from None
    try:
        yield tmp
        _fsync_files(tmp)
        files = sorted(tmp.iterdir(), key=lambda f: f.name == last)
        for file in files:
            refuse_symlink(folder / file.name)
        for file in files:
            os.replace(file, folder / file.name)
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    """Rename the complete folder `new` onto `target`, carrying over what only `target` has."""
    if not target.is_dir():
        _fsync_files(new)
        os.replace(new, target)
        _fsync_dir(target.parent)
        return
    for old in target.iterdir():
        if (new / old.name).exists() or (new / old.name).is_symlink() or is_temporary(old.name):
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.copytree(old, new / old.name, symlinks=True)
        else:
            shutil.copy2(old, new / old.name, follow_symlinks=False)
    _fsync_files(new)
    aside = _temp_name(target, OLD_MARK)
    os.replace(target, aside)
    os.replace(new, target)
    _fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_files(folder: Path) -> None:
    """Flush every file written into `folder` to disk before it is renamed into place."""
    for file in folder.rglob("*"):
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
