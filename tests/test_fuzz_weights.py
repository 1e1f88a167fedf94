"""Fuzzed checkpoints: a tiny model saved by minitf (and MiniLM's real safetensors header),
with a mutated safetensors header or body, a hostile config.json or a broken shard index, must
load exactly what the file holds, or be refused with a MinitfError naming the file."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
import torch
from fuzzing import Case, fuzz, hostile_value, mutate_bytes, mutate_json
from safetensors.torch import load_file

from minitf.model.bert import BertForMaskedLM, BertForSequenceClassification, BertModel
from minitf.model.config import BertConfig
from minitf.model.weights import INDEX_FILE, WEIGHTS_FILE, normalise_names
from minitf.paths import packaged_model_dir

TINY = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=16)
DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U64", "C64",
          "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "f32", "F99", "", "float32")
# Sizes a config may claim for a checkpoint of a few kB: memory must not follow the claim.
HUGE = {"vocab_size": 1 << 24, "hidden_size": 1 << 24, "num_hidden_layers": 1 << 20,
        "intermediate_size": 1 << 24, "max_position_embeddings": 1 << 24,
        "type_vocab_size": 1 << 24, "num_attention_heads": 1 << 3}


def split_file(content: bytes) -> tuple[dict, bytes]:
    """(header, body) of a safetensors file: 8-byte little-endian length, JSON, tensor bytes."""
    (n,) = struct.unpack("<Q", content[:8])
    return json.loads(content[8:8 + n]), content[8 + n:]


def join_file(header: object, body: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def mutate_header(rng: random.Random, header: dict, body: bytes) -> tuple[str, bytes]:
    """Change one field of one tensor entry, or the entries themselves, or the length."""
    header = json.loads(json.dumps(header))
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    op = rng.choice(("dtype", "shape", "offsets", "entries", "length", "json"))
    if op == "dtype":
        entry["dtype"] = rng.choice(DTYPES)
        return f"{name} dtype {entry['dtype']!r}", join_file(header, body)
    if op == "shape":
        shape = list(entry["shape"])
        choice = rng.choice(("huge", "negative", "swap", "rank", "zero", "hostile"))
        shape = {"huge": [1 << 40, 1 << 40], "negative": [-s for s in shape],
                 "swap": shape[::-1], "rank": [*shape, 1], "zero": [0, *shape[1:]],
                 "hostile": [hostile_value(rng)]}[choice]
        entry["shape"] = shape
        return f"{name} shape {str(shape)[:40]}", join_file(header, body)
    if op == "offsets":
        start, end = entry["data_offsets"]
        other = header[rng.choice(names)]["data_offsets"]
        entry["data_offsets"] = rng.choice((
            [end, start], [start, end + 4], [start - 4, end - 4], [0, len(body) + 1],
            list(other), [start, 1 << 62], [-1, end], [start, hostile_value(rng)]))
        return f"{name} offsets {str(entry['data_offsets'])[:40]}", join_file(header, body)
    if op == "entries":
        how = rng.choice(("delete", "rename", "duplicate", "extra", "metadata"))
        if how == "delete":
            del header[name]
        elif how == "rename":
            header[name + rng.choice(("x", ".weight", "\u00e9", ""))] = header.pop(name)
        elif how == "extra":
            header["extra.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        elif how == "metadata":
            header["__metadata__"] = rng.choice(({"format": 1}, {"a": "b"}, [], None, "pt"))
        else:  # the same name twice in the JSON text: the last entry wins in serde_json
            dup = json.dumps(name) + ": " + json.dumps({**entry, "dtype": "F16"}) + ", "
            raw = ("{" + dup + json.dumps(header)[1:]).encode()
            return f"{name} duplicated", struct.pack("<Q", len(raw)) + raw + body
        return f"entries: {how} {name}", join_file(header, body)
    if op == "length":
        raw_len = len(json.dumps(header).encode())
        length = rng.choice((0, 1, 7, raw_len - 1, raw_len + 1, raw_len + 8, 1 << 30,
                             (1 << 64) - 1, 100_000_000))
        return f"header length {length}", join_file(header, body, length)
    what, raw = mutate_json(rng, header)
    return f"header JSON: {what}", struct.pack("<Q", len(raw)) + raw + body


def mutate_body(rng: random.Random, body: bytes) -> tuple[str, bytes]:
    """Values that are legal bytes but hostile numbers: NaN, inf, denormals, random bits."""
    out = bytearray(body)
    for _ in range(rng.choice((1, 8, 64))):
        pos = rng.randrange(0, len(out) - 3, 4)
        out[pos:pos + 4] = rng.choice((b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f",
                                       b"\x01\x00\x00\x00", rng.randbytes(4)))
    return "body values overwritten (NaN, inf, random)", bytes(out)


class Checkpoints:
    """The unmutated inputs: a tiny BertModel and classifier saved by minitf, the tiny model
    in two shards with an index, and MiniLM's real safetensors header (without its 90 MB)."""

    def __init__(self, root: Path):
        torch.manual_seed(0)
        self.files = {}
        for kind, model in (("base", BertModel(TINY)), ("classifier",
                                                        BertForSequenceClassification(TINY))):
            model.save_pretrained(root / kind)
            self.files[kind] = {n: (root / kind / n).read_bytes()
                                for n in ("config.json", WEIGHTS_FILE)}
        self.shards = self._shards(self.files["base"][WEIGHTS_FILE])
        self.real_header = None
        real = packaged_model_dir()
        if real is not None:
            with open(real / WEIGHTS_FILE, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                self.real_header = (json.loads(f.read(n)), f.read(65536))

    @staticmethod
    def _shards(content: bytes) -> dict[str, bytes]:
        header, body = split_file(content)
        names = sorted(k for k in header if k != "__metadata__")
        files, weight_map = {}, {}
        for i, part in enumerate((names[::2], names[1::2])):
            shard = f"model-{i + 1:05d}-of-00002.safetensors"
            offset, chunks, entries = 0, [], {}
            for name in part:
                start, end = header[name]["data_offsets"]
                entries[name] = {**header[name], "data_offsets": [offset, offset + end - start]}
                chunks.append(body[start:end])
                offset += end - start
                weight_map[name] = shard
            files[shard] = join_file(entries, b"".join(chunks))
        files[INDEX_FILE] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
        return files

    def make_case(self, rng: random.Random) -> Case:
        kind = rng.choice(("base", "classifier"))
        files = dict(self.files[kind])
        header, body = split_file(files[WEIGHTS_FILE])
        op = rng.choice(("bytes", "header", "header", "body", "config", "shards", "real"))
        if op == "bytes":
            what, files[WEIGHTS_FILE] = mutate_bytes(rng, files[WEIGHTS_FILE])
        elif op == "header":
            what, files[WEIGHTS_FILE] = mutate_header(rng, header, body)
        elif op == "body":
            what, body = mutate_body(rng, body)
            files[WEIGHTS_FILE] = join_file(header, body)
        elif op == "config":
            config = json.loads(files["config.json"])
            if rng.random() < 0.5:
                key = rng.choice(sorted(HUGE))
                config[key] = HUGE[key]
                what = f"config {key} = {HUGE[key]}"
                files["config.json"] = json.dumps(config).encode()
            else:
                what, files["config.json"] = mutate_json(rng, config)
        elif op == "shards":
            kind = "base"
            files = {"config.json": self.files["base"]["config.json"], **self.shards}
            what, files[INDEX_FILE] = self._mutate_index(rng)
        elif self.real_header is not None:
            real_header, real_body = self.real_header
            what, files[WEIGHTS_FILE] = mutate_header(rng, real_header, real_body)
            what = f"real MiniLM header, {what}"
        else:
            what = "unchanged"
        cls = rng.choice((BertModel, BertForSequenceClassification, BertForMaskedLM))
        options = {"cls": cls}
        if cls is not BertModel:
            options["allow_missing_head"] = kind == "base" or rng.random() < 0.5
        return Case(f"{kind}: {what}", files, options)

    def _mutate_index(self, rng: random.Random) -> tuple[str, bytes]:
        index = json.loads(self.shards[INDEX_FILE])
        name = rng.choice(sorted(index["weight_map"]))
        shard = rng.choice(("../" + WEIGHTS_FILE, "/etc/hostname", "", "missing.safetensors",
                            INDEX_FILE, "config.json", None, 7, ["a"], {"a": 1}))
        if rng.random() < 0.5:
            index["weight_map"][name] = shard
            return f"index: {name} in shard {shard!r}", json.dumps(index).encode()
        return mutate_json(rng, index)


def load(directory: Path, cls: type, **options) -> torch.nn.Module:
    return cls.from_pretrained(directory, **options)


def check_model(model: torch.nn.Module, directory: Path) -> None:
    """A correct load holds exactly the file's tensors (NaN where the file has NaN); only a
    head or the pooler, missing from the file as a whole, may start fresh."""
    tensors = {}
    for file in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(file))
    expected = normalise_names(tensors, model)
    fresh = tuple(p for p in (model.head_prefix, model.checkpoint_prefix + "pooler.") if p)
    for name, value in model.state_dict().items():
        if name in model.tied_weights:
            continue
        if name not in expected:
            assert name.startswith(fresh), f"{name} not in the file"
            assert not any(n.startswith(name.rsplit(".", 2)[0]) for n in expected), \
                f"{name} started fresh, while its part is in the file"
            continue
        assert expected[name].is_floating_point(), f"{name} loaded from {expected[name].dtype}"
        torch.testing.assert_close(value, expected[name].to(value.dtype), rtol=0, atol=0,
                                   equal_nan=True, msg=f"{name} differs from the file")


@pytest.mark.usefixtures("one_thread")
def test_fuzz_weights(tmp_path: Path, fuzz_cases: int | None) -> None:
    checkpoints = Checkpoints(tmp_path / "base")
    fuzz("weights", checkpoints.make_case, load, check_model, tmp_path, fuzz_cases)
