"""Convert a trusted pickle checkpoint (pytorch_model.bin) into model.safetensors.

    python weights/convert_bin.py DIR

Uses torch.load(weights_only=True), which refuses arbitrary objects, and writes the
safetensors file beside the original (atomically: temp file, then rename).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[0])
    shards = read_shards(directory)
    if isinstance(shards, str):
        print(shards, file=sys.stderr)
        return 2
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = directory / shard
        if not path.is_file():
            print(f"{path}: not found", file=sys.stderr)
            return 2
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is reported the same
            print(f"{path}: cannot load with weights_only=True ({exc})", file=sys.stderr)
            return 2
        wrong = next((f"{k!r} is a {type(v).__name__}" for k, v in state.items()
                      if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None) \
            if isinstance(state, dict) else f"the file holds a {type(state).__name__}"
        if wrong:
            print(f"{path}: not a state dict of tensors ({wrong[:200]}); nothing written",
                  file=sys.stderr)
            return 2
        tensors.update({k: v.contiguous() for k, v in state.items()})
    target = directory / "model.safetensors"
    tmp = target.with_suffix(".safetensors.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, target)
    except (OSError, ValueError, RuntimeError) as exc:  # a read-only folder, shared tensors
        print(f"{target}: cannot write it ({str(exc)[:200]}); nothing written", file=sys.stderr)
        return 2
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {target} ({len(tensors)} tensors)")
    return 0


def read_shards(directory: Path) -> list[str] | str:
    """The shard file names (next to the index: no paths), or an error message."""
    index = directory / "pytorch_model.bin.index.json"
    if not index.is_file():
        return ["pytorch_model.bin"]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        return f"{index}: not a valid index ({str(exc)[:200]}); it needs a 'weight_map'"
    bad = [s for s in shards if not isinstance(s, str) or s in ("", ".", "..")
           or Path(s).name != s]
    if bad:
        return (f"{index} lists shard {str(bad[0])[:80]!r}, not a file name in {directory}; "
                "the weight_map names files next to the index")
    return shards


if __name__ == "__main__":
    sys.exit(main())
