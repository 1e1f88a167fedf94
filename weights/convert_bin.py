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
    index = directory / "pytorch_model.bin.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["pytorch_model.bin"]
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
        tensors.update({k: v.contiguous() for k, v in state.items()})
    target = directory / "model.safetensors"
    tmp = target.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, target)
    print(f"wrote {target} ({len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
