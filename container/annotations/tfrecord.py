"""TFRecord files of ``tf.Example`` protos, written and read without TensorFlow.

The record framing (length, masked CRC32C of the length, data, masked CRC32C of the data) and the
``tf.Example`` wire format are small and fixed; encoding them here keeps TensorFlow (a 600 MB
import) out of the SDK and out of the YOLO image. CRC32C comes from ``google-crc32c`` (C, with a
pure-Python fallback). The keys are the TF Object Detection ones Model Garden's
``TfExampleDecoder`` reads.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

Feature = bytes | list[bytes] | list[int] | list[float]


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return google_crc32c.value(data)


def _masked(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _slow_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf writes negatives
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [_slow_varint(v) for v in range(1 << 14)]  # tags, lengths, labels, sizes: the common case


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else _slow_varint(value)


_KEYS: dict[str, bytes] = {}


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_example(features: dict[str, tuple[str, Iterable]]) -> bytes:
    """A serialized ``tf.train.Example``; ``features`` maps a key to ``("bytes"|"int64"|"float", values)``."""
    entries = bytearray()
    for key, (kind, values) in features.items():
        values = list(values)
        if kind == "bytes":
            inner = _field(1, b"".join(_field(1, v) for v in values))
        elif kind == "int64":
            inner = _field(3, _field(1, b"".join(_varint(int(v)) for v in values)) if values else b"")
        elif kind == "float":
            inner = _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)) if values else b"")
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
        encoded_key = _KEYS.get(key)
        if encoded_key is None:
            encoded_key = _KEYS.setdefault(key, _field(1, key.encode()))
        entries += _field(1, encoded_key + _field(2, inner))
    return _field(1, bytes(entries))


def write_records(fh: BinaryIO, records: Iterable[bytes]) -> int:
    count = 0
    for data in records:
        length = struct.pack("<Q", len(data))
        fh.write(length + struct.pack("<I", _masked(length)) + data + struct.pack("<I", _masked(data)))
        count += 1
    return count


# -- reading (tests, checks) ------------------------------------------------------------------------
def read_records(path: Path, *, verify: bool = True) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while header := fh.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            if verify and struct.unpack("<I", header[8:])[0] != _masked(header[:8]):
                raise ValueError(f"{path}: corrupt record length")
            data = fh.read(length)
            (crc,) = struct.unpack("<I", fh.read(4))
            if verify and crc != _masked(data):
                raise ValueError(f"{path}: corrupt record")
            yield data


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 2:
            size, pos = _read_varint(buf, pos)
            yield number, wire, buf[pos:pos + size]
            pos += size
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")


def decode_example(data: bytes) -> dict[str, list]:
    """``{key: [values]}`` of a serialized ``tf.train.Example`` (int64 signed, floats as float32)."""
    out: dict[str, list] = {}
    for _, _, features in _fields(data):
        for _, _, entry in _fields(features):
            key, feature = "", b""
            for number, _, value in _fields(entry):
                if number == 1:
                    key = value.decode()
                else:
                    feature = value
            values: list = []
            for kind, _, lst in _fields(feature):
                for _, wire, v in _fields(lst):
                    if kind == 1:
                        values.append(bytes(v))
                    elif kind == 2:
                        values += list(struct.unpack(f"<{len(v) // 4}f", v)) if wire == 2 else [
                            struct.unpack("<f", v)[0]]
                    elif wire == 2:
                        pos = 0
                        while pos < len(v):
                            n, pos = _read_varint(v, pos)
                            values.append(n - (1 << 64) if n >= 1 << 63 else n)
                    else:
                        values.append(v - (1 << 64) if v >= 1 << 63 else v)
            out[key] = values
    return out
