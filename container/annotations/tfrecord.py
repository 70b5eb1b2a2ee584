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


def _masked_crc(parts: list[bytes]) -> int:
    """TFRecord's masked CRC32C of the concatenated ``parts``, computed without concatenating them."""
    from google_crc32c import extend  # a plain function on ints: cheaper per record than a Checksum object

    crc = 0
    for part in parts:
        crc = extend(crc, part)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked(data: bytes) -> int:
    return _masked_crc([data])


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
    if 0 <= value < 16384:
        return _SMALL[value]
    if 0 <= value < 2097152:  # a JPEG's length, and the lengths around it: three bytes, no loop
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    return _slow_varint(value)


_KEYS: dict[str, bytes] = {}


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


_TAG = {1: b"\n", 2: b"\x12", 3: b"\x1a"}  # Feature.bytes_list, float_list, int64_list


def _entry(encoded_key: bytes, kind: int, list_len: int) -> bytes:
    """One ``features`` map entry up to the content of its list (``list_len`` bytes, which follow)."""
    feature_head = _TAG[kind] + _varint(list_len)
    value_len = len(feature_head) + list_len
    body_len = len(encoded_key) + 1 + len(_varint(value_len)) + value_len
    return b"\n" + _varint(body_len) + encoded_key + b"\x12" + _varint(value_len) + feature_head


_EMPTY: dict[tuple[str, int], bytes] = {}
_NUMBER = {"bytes": 1, "float": 2, "int64": 3}  # a feature with no values (an image without boxes): always the same


def example_parts(features: dict[str, tuple[str, Iterable]]) -> tuple[list[bytes], int]:
    """A serialized ``tf.train.Example`` as a few byte strings, and its length.

    ``features`` maps a key to ``("bytes"|"int64"|"float", values)``. A big bytes value (the image)
    is never copied into a bigger buffer: it stays its own part, written and checksummed as is.
    This runs once per image of a million-image conversion: plain loops, cached keys, no helpers per value.
    """
    small: list[bytes] = []
    big: list[bytes] = []
    varint, tags, pack = _varint, _TAG, struct.pack
    for key, (kind, values) in features.items():
        encoded_key = _KEYS.get(key)
        if encoded_key is None:
            encoded_key = _KEYS.setdefault(key, _field(1, key.encode()))
        values = values if isinstance(values, list) else list(values)
        number = _NUMBER.get(kind)
        if number is None:
            raise ValueError(f"unknown feature kind {kind!r}")
        if not values:
            empty = _EMPTY.get((key, number))
            if empty is None:
                empty = _EMPTY.setdefault((key, number), _entry(encoded_key, number, 0))
            small.append(empty)
            continue
        if number == 1:
            if len(values) == 1 and len(values[0]) >= 4096:
                head = b"\n" + varint(len(values[0]))
                big += [_entry(encoded_key, 1, len(head) + len(values[0])) + head, values[0]]
                continue
            content = b"".join([b"\n" + varint(len(v)) + v for v in values])
        else:
            packed = b"".join([varint(int(v)) for v in values]) if number == 3 else pack(f"<{len(values)}f", *values)
            content = b"\n" + varint(len(packed)) + packed
        # _entry inlined: this loop runs 14 times per image
        feature_head = tags[number] + varint(len(content))
        value_len = len(feature_head) + len(content)
        value_head = varint(value_len)
        small.append(b"".join((b"\n", varint(len(encoded_key) + 1 + len(value_head) + value_len), encoded_key,
                               b"\x12", value_head, feature_head, content)))
    body = b"".join(small)
    size = len(body) + sum(map(len, big))
    head = b"\n" + varint(size)
    return [head + body, *big], len(head) + size


def _key_head(key: str) -> bytes:
    """A ``features`` map entry's key field and the tag of its value field (what precedes the value's length)."""
    return _field(1, key.encode()) + b"\x12"


_OD_KEYS = {k: _key_head(k) for k in (
    "image/encoded", "image/format", "image/filename", "image/source_id", "image/height", "image/width",
    "image/object/bbox/xmin", "image/object/bbox/xmax", "image/object/bbox/ymin", "image/object/bbox/ymax",
    "image/object/class/label", "image/object/class/text", "image/object/area", "image/object/is_crowd")}


_SAME: dict[tuple[bytes, int, int], tuple[bytes, bytes]] = {}


def _od_entry(key_head: bytes, tag: bytes, content: bytes) -> bytes:
    varint = _varint
    feature_len = len(content)
    value_len = 1 + len(varint(feature_len)) + feature_len
    value_head = varint(value_len)
    return b"".join((b"\n", varint(len(key_head) + len(value_head) + value_len), key_head, value_head, tag,
                     varint(feature_len), content))


def od_example_parts(*, encoded: bytes, fmt: bytes, filename: bytes, source_id: bytes, height: int, width: int,
                     xmin: list[float], xmax: list[float], ymin: list[float], ymax: list[float], labels: list[int],
                     texts: list[bytes], areas: list[float], crowd: list[int]) -> tuple[list[bytes], int]:
    """:func:`example_parts` of a TF Object Detection example, the same bytes in the same order, without the
    generic loop: a conversion of a million images runs it once each, and it must keep up with copying the
    JPEGs (``benchmarks/bench_convert.py``). ``tests/unit/test_annotations.py`` holds the two equal."""
    keys, varint, pack = _OD_KEYS, _varint, struct.pack

    def strings(values: list[bytes]) -> bytes:
        return b"".join([b"\n" + varint(len(v)) + v for v in values])

    def floats(values: list[float]) -> bytes:  # packed, as example_parts writes them; nothing for no value
        return b"\n" + varint(4 * len(values)) + pack(f"<{len(values)}f", *values) if values else b""

    def ints(values: list[int]) -> bytes:
        if not values:
            return b""
        packed = b"".join([varint(v) for v in values])
        return b"\n" + varint(len(packed)) + packed

    same = _SAME.get((fmt, height, width))  # a dataset has few formats and sizes: their entries made once each
    if same is None:
        if len(_SAME) > 4096:
            _SAME.clear()
        same = _SAME[(fmt, height, width)] = (
            _od_entry(keys["image/format"], b"\n", strings([fmt])),
            _od_entry(keys["image/height"], b"\x1a", ints([height])) + _od_entry(keys["image/width"], b"\x1a",
                                                                                ints([width])))
    small = [
        same[0],
        _od_entry(keys["image/filename"], b"\n", strings([filename])),
        _od_entry(keys["image/source_id"], b"\n", strings([source_id])),
        same[1],
        _od_entry(keys["image/object/bbox/xmin"], b"\x12", floats(xmin)),
        _od_entry(keys["image/object/bbox/xmax"], b"\x12", floats(xmax)),
        _od_entry(keys["image/object/bbox/ymin"], b"\x12", floats(ymin)),
        _od_entry(keys["image/object/bbox/ymax"], b"\x12", floats(ymax)),
        _od_entry(keys["image/object/class/label"], b"\x1a", ints(labels)),
        _od_entry(keys["image/object/class/text"], b"\n", strings(texts)),
        _od_entry(keys["image/object/area"], b"\x12", floats(areas)),
        _od_entry(keys["image/object/is_crowd"], b"\x1a", ints(crowd)),
    ]
    # the image: its bytes stay their own part (never copied into a bigger buffer)
    list_head = b"\n" + varint(len(encoded))
    feature_len = len(list_head) + len(encoded)
    value_len = 1 + len(varint(feature_len)) + feature_len
    value_head = varint(value_len)
    key_head = keys["image/encoded"]
    image_head = b"".join((b"\n", varint(len(key_head) + len(value_head) + value_len), key_head, value_head,
                           b"\n", varint(feature_len), list_head))
    body = b"".join(small)
    size = len(image_head) + len(encoded) + len(body)
    head = b"\n" + varint(size)
    return [head + body + image_head, encoded], len(head) + size


def encode_example(features: dict[str, tuple[str, Iterable]]) -> bytes:
    """A serialized ``tf.train.Example`` (see :func:`example_parts`)."""
    return b"".join(example_parts(features)[0])


def write_records(fh: BinaryIO, records: Iterable[bytes | tuple[list[bytes], int]]) -> int:
    """TFRecord framing: length, its masked CRC32C, the data, its masked CRC32C."""
    count = 0
    for record in records:
        parts, size = ([record], len(record)) if isinstance(record, bytes) else record
        length = struct.pack("<Q", size)
        fh.write(length + struct.pack("<I", _masked(length)))
        fh.writelines(parts)
        fh.write(struct.pack("<I", _masked_crc(parts)))
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
