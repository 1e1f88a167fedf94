"""A SentencePiece model's character map ("precompiled charsmap"), applied the way Hugging Face's
`tokenizers` applies it (its `Precompiled` normaliser), not the way SentencePiece does.

The map is a double-array trie (darts-clone) from UTF-8 byte strings to replacements, stored in
the model file's NormalizerSpec. SentencePiece replaces the longest key at each position.
The reference instead walks the text by grapheme cluster: a cluster shorter than 6 bytes that
starts with a key is replaced whole by the SHORTEST such key's replacement (so "\\ufffd" followed
by a combining mark becomes one space, the mark dropped); every other cluster is mapped
character by character. tests/test_tokenizer_spm.py pins this against the reference.

Grapheme clusters are approximated (Python has no UAX #29 segmentation) by a character that is
not a control followed by combining marks (Mn, Mc, Me) or the few other extenders, and "\\r\\n":
the only clusters that fit in 5 bytes, bar Prepend characters and Hangul jamo.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from array import array
from pathlib import Path

from minitf.errors import MinitfError

_MAX_CLUSTER_BYTES = 6  # clusters this long or longer are mapped character by character
_CONTROLS = ("Cc", "Cf", "Zl", "Zp")
# Extenders that are not marks: ZWNJ, ZWJ, Thai/Lao SARA AM, half-width (semi-)voiced marks.
_EXTENDERS = (0x200C, 0x200D, 0x0E33, 0x0EB3, 0xFF9E, 0xFF9F)
_PREPEND = (*range(0x600, 0x606), 0x6DD, 0x70F, 0x890, 0x891, 0x8E2, 0x110BD, 0x110CD)


@functools.cache
def _cluster_pattern() -> re.Pattern:
    """Runs of two or more characters that form one short grapheme cluster (UAX #29): a
    character that is not a control, then marks, ZWJ/ZWNJ or the few other extenders."""
    extend = [cp for cp in range(0x300, 0x20000) if unicodedata.category(chr(cp))[0] == "M"]
    extend += [*range(0xE0100, 0xE01F0), *_EXTENDERS]
    # Controls (GB4/GB5): Cc, Cf, Zl, Zp, except ZWNJ/ZWJ and the Prepend characters.
    controls = [cp for cp in range(0x20000) if unicodedata.category(chr(cp)) in _CONTROLS
                and cp not in _EXTENDERS and cp not in _PREPEND]
    return re.compile(f"\r\n|[^{_char_class(controls)}][{_char_class(sorted(extend))}]+")


def _char_class(points: list[int]) -> str:
    """The inside of a regex [...] matching exactly `points` (sorted)."""
    ranges, start = [], points[0]
    for prev, cp in zip(points, [*points[1:], -1], strict=True):
        if cp != prev + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start
                                                   else ""))
            start = cp
    return "".join(ranges)


class Charsmap:
    """The character map of one SentencePiece model; `normalize(text)` as the reference."""

    def __init__(self, blob: bytes) -> None:
        """`blob`: the precompiled_charsmap bytes (empty: the identity map)."""
        self._units = array("I")
        self._replacements = b""
        if blob:
            size = int.from_bytes(blob[:4], "little")
            self._units.frombytes(blob[4:4 + size])
            if sys.byteorder == "big":
                self._units.byteswap()
            self._replacements = blob[4 + size:]
        self._char_map: dict[int, str] = _CharMap(self)
        self._clusters = _cluster_pattern() if blob else None

    @classmethod
    def from_model_file(cls, model_file: Path) -> Charsmap:
        try:
            data = model_file.read_bytes()
        except OSError as e:
            raise MinitfError(f"cannot read {model_file}: {e}") from e
        try:
            spec = _field(data, 3)  # ModelProto.normalizer_spec
            return cls(_field(spec, 2) if spec else b"")  # NormalizerSpec.precompiled_charsmap
        except (IndexError, ValueError):
            raise MinitfError(f"{model_file} is not a SentencePiece model (its normaliser "
                              "cannot be read); train it again with `minitf tokenizer train`"
                              ) from None

    def normalize(self, text: str) -> str:
        if self._clusters is None:
            return text
        if text.isascii() and "\r\n" not in text:
            return text.translate(self._char_map)
        pieces, last = [], 0
        for match in self._clusters.finditer(text):
            pieces.append(text[last:match.start()].translate(self._char_map))
            cluster = match.group()
            encoded = cluster.encode("utf-8", "surrogatepass")
            found = self._prefix_values(encoded) if len(encoded) < _MAX_CLUSTER_BYTES else []
            pieces.append(self._replacement(found[0]) if found
                          else cluster.translate(self._char_map))
            last = match.end()
        pieces.append(text[last:].translate(self._char_map))
        return "".join(pieces)

    def map_char(self, char: str) -> str:
        """One character on its own: its replacement if it is a key, else itself."""
        encoded = char.encode("utf-8", "surrogatepass")
        found = [v for v, length in self._prefix_matches(encoded) if length == len(encoded)]
        return self._replacement(found[0]) if found else char

    def _prefix_values(self, key: bytes) -> list[int]:
        return [value for value, _ in self._prefix_matches(key)]

    def _prefix_matches(self, key: bytes) -> list[tuple[int, int]]:
        """(value, key length) of every trie key that is a prefix of `key`, shortest first
        (darts-clone's commonPrefixSearch)."""
        units, results = self._units, []
        pos = _offset(units[0])
        for i, byte in enumerate(key):
            pos ^= byte
            if pos >= len(units):
                break
            unit = units[pos]
            if unit & ((1 << 31) | 0xFF) != byte:  # the unit's label
                break
            pos ^= _offset(unit)
            if (unit >> 8) & 1:  # has a leaf: a key ends here
                results.append((units[pos] & ((1 << 31) - 1), i + 1))
        return results

    def _replacement(self, value: int) -> str:
        end = self._replacements.index(b"\0", value)
        return self._replacements[value:end].decode("utf-8", "replace")


class _CharMap(dict):
    """A `str.translate` table filled on first sight of each character."""

    def __init__(self, charsmap: Charsmap) -> None:
        super().__init__()
        self.charsmap = charsmap

    def __missing__(self, cp: int) -> str:
        self[cp] = replacement = self.charsmap.map_char(chr(cp))
        return replacement


def _offset(unit: int) -> int:
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)


def _field(message: bytes, number: int) -> bytes | None:
    """The last length-delimited field `number` of a protobuf message (None if absent)."""
    pos, found = 0, None
    while pos < len(message):
        key, pos = _varint(message, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(message, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(message, pos)
            if key >> 3 == number:
                found = message[pos:pos + length]
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(message):
            raise ValueError("truncated protobuf message")
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
