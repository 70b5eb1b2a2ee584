"""TFRecord files of ``tf.Example`` protos, written and read without TensorFlow.

The record framing (length, masked CRC32C of the length, data, masked CRC32C of the data) and the
``tf.Example`` wire format are small and fixed; encoding them here keeps TensorFlow (a 600 MB
import) out of the SDK and out of the YOLO image. CRC32C comes from ``google-crc32c`` (C, with a
pure-Python fallback). The keys are the TF Object Detection ones Model Garden's
``TfExampleDecoder`` reads.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


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


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


_BYTES, _FLOATS, _INTS = b"\n", b"\x12", b"\x1a"  # the tags of Feature.bytes_list, float_list, int64_list
_TAG = {"bytes": _BYTES, "float": _FLOATS, "int64": _INTS}
_KEY_HEADS: dict[str, bytes] = {}


def _key_head(key: str) -> bytes:
    """A ``features`` map entry's key field and the tag of its value field (what precedes the value's length)."""
    head = _KEY_HEADS.get(key)
    if head is None:
        head = _KEY_HEADS[key] = _field(1, key.encode()) + b"\x12"
    return head


def _entry(key_head: bytes, tag: bytes, list_len: int) -> bytes:
    """One ``features`` map entry up to the content of its list (``list_len`` bytes, which follow): the one
    place the entry's framing is written, for both encoders below."""
    varint = _varint
    value_len = 1 + len(varint(list_len)) + list_len
    value_head = varint(value_len)
    return b"".join((b"\n", varint(len(key_head) + len(value_head) + value_len), key_head, value_head, tag,
                     varint(list_len)))


def example_parts(features: dict[str, tuple[str, Iterable]]) -> tuple[list[bytes], int]:
    """A serialized ``tf.train.Example`` as a few byte strings, and its length.

    ``features`` maps a key to ``("bytes"|"int64"|"float", values)``. A big bytes value (the image)
    is never copied into a bigger buffer: it stays its own part, written and checksummed as is. The
    general encoder; a conversion's hot path is :func:`od_example_parts`, which writes the same bytes.
    """
    small: list[bytes] = []
    big: list[bytes] = []
    varint, pack = _varint, struct.pack
    for key, (kind, values) in features.items():
        key_head = _key_head(key)
        values = values if isinstance(values, list) else list(values)
        tag = _TAG.get(kind)
        if tag is None:
            raise ValueError(f"unknown feature kind {kind!r}")
        if not values:  # a feature with no values (an image without boxes)
            small.append(_entry(key_head, tag, 0))
            continue
        if tag is _BYTES:
            if len(values) == 1 and len(values[0]) >= 4096:
                head = b"\n" + varint(len(values[0]))
                big += [_entry(key_head, tag, len(head) + len(values[0])) + head, values[0]]
                continue
            content = b"".join([b"\n" + varint(len(v)) + v for v in values])
        else:
            packed = b"".join([varint(int(v)) for v in values]) if tag is _INTS else pack(f"<{len(values)}f", *values)
            content = b"\n" + varint(len(packed)) + packed
        small.append(_entry(key_head, tag, len(content)) + content)
    body = b"".join(small)
    size = len(body) + sum(map(len, big))
    head = b"\n" + varint(size)
    return [head + body, *big], len(head) + size


_STRINGS: dict[bytes, bytes] = {}  # a class name -> its element of a bytes list
_LAYOUTS: dict[tuple, tuple[struct.Struct, tuple[bytes, ...]]] = {}  # see _layout
_LIMIT = 4096  # entries per cache; a dataset needs a few dozen (its box counts, label lengths, name lengths)
_IMAGE_HEAD = _key_head("image/encoded")


def _frame(key: str, tag: bytes, list_len: int) -> bytes:
    return _entry(_key_head(key), tag, list_len)


def _packed_frame(key: str, tag: bytes, packed_len: int) -> bytes:
    """The framing of a packed numeric list of ``packed_len`` bytes, up to the packed bytes (nothing for no value)."""
    if not packed_len:
        return _frame(key, tag, 0)
    head = b"\n" + _varint(packed_len)
    return _frame(key, tag, len(head) + packed_len) + head


def _layout(fmt: bytes, height: int, width: int, filename: int, source_id: int, boxes: int, label: int, text: int,
            crowd: int) -> tuple[struct.Struct, tuple[bytes, ...]]:
    """Everything of an object detection example but the image that is not a value: the entries' framings,
    which depend on lengths alone (a filename's, a box count, ...), with the format, height and width (few
    per dataset), as one packer and its constant parts. The packer takes the constants and the values
    interleaved: ``c0, filename, c1, source_id, c2, *xmin, c3, *xmax, c4, *ymin, c5, *ymax, c6, label, c7,
    text, c8, *areas, c9, crowd``; one C call writes the whole body."""
    def one_string(key: str, length: int) -> bytes:  # a bytes list of one value: framing up to the value
        head = b"\n" + _varint(length)
        return _frame(key, _BYTES, len(head) + length) + head

    h, w = _varint(height), _varint(width)
    nf = 4 * boxes
    consts = (
        one_string("image/format", len(fmt)) + fmt + one_string("image/filename", filename),
        one_string("image/source_id", source_id),
        _packed_frame("image/height", _INTS, len(h)) + h + _packed_frame("image/width", _INTS, len(w)) + w
        + _packed_frame("image/object/bbox/xmin", _FLOATS, nf),
        _packed_frame("image/object/bbox/xmax", _FLOATS, nf),
        _packed_frame("image/object/bbox/ymin", _FLOATS, nf),
        _packed_frame("image/object/bbox/ymax", _FLOATS, nf),
        _packed_frame("image/object/class/label", _INTS, label),
        _frame("image/object/class/text", _BYTES, text),
        _packed_frame("image/object/area", _FLOATS, nf),
        _packed_frame("image/object/is_crowd", _INTS, crowd),
    )
    c = [f"{len(k)}s" for k in consts]
    floats = f"{boxes}f"
    packer = struct.Struct("<" + "".join((c[0], f"{filename}s", c[1], f"{source_id}s", c[2], floats, c[3], floats,
                                          c[4], floats, c[5], floats, c[6], f"{label}s", c[7], f"{text}s", c[8],
                                          floats, c[9], f"{crowd}s")))
    return packer, consts


def _string(value: bytes) -> bytes:
    element = _STRINGS.get(value)
    if element is None:
        element = b"\n" + _varint(len(value)) + value
        if len(_STRINGS) < _LIMIT:
            _STRINGS[value] = element
    return element


def _packed_ints(values: list[int]) -> bytes:
    if values and min(values) >= 0 and max(values) < 128:  # labels and crowd flags: one byte each, their own varint
        return bytes(values)
    return b"".join([_varint(int(v)) for v in values])


def od_example_parts(*, encoded: bytes, fmt: bytes, filename: bytes, source_id: bytes, height: int, width: int,
                     xmin: list[float], xmax: list[float], ymin: list[float], ymax: list[float], labels: list[int],
                     texts: list[bytes], areas: list[float], crowd: list[int]) -> tuple[list[bytes], int]:
    """:func:`example_parts` of a TF Object Detection example, the same bytes in the same order, without the
    generic loop: a conversion of a million images runs it once each, and it must keep up with copying the
    JPEGs (``benchmarks/bench_convert.py``). The framing comes from a cached :func:`_layout` and the body is
    one ``struct`` call. ``tests/unit/test_annotations.py`` holds the two encoders equal."""
    n = len(xmin)
    if not len(xmax) == len(ymin) == len(ymax) == len(areas) == n:
        raise ValueError("xmin, xmax, ymin, ymax and areas must have one value per box")
    text, label, is_crowd = b"".join(map(_string, texts)), _packed_ints(labels), _packed_ints(crowd)
    key = (fmt, height, width, len(filename), len(source_id), n, len(label), len(text), len(is_crowd))
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _layout(*key)
        if len(_LAYOUTS) >= _LIMIT:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    packer, (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9) = layout
    body = packer.pack(c0, filename, c1, source_id, c2, *xmin, c3, *xmax, c4, *ymin, c5, *ymax, c6, label, c7, text,
                       c8, *areas, c9, is_crowd)
    # the image: its bytes stay their own part (never copied into a bigger buffer)
    list_head = b"\n" + _varint(len(encoded))
    image_head = _entry(_IMAGE_HEAD, _BYTES, len(list_head) + len(encoded)) + list_head
    size = len(body) + len(image_head) + len(encoded)
    head = b"\n" + _varint(size)
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
    """The records' bytes; ValueError for a file that is no TFRecord file (a length past the file's end: never
    allocated, a length field of 2^63 is a damaged or a hostile file, not a record)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        while header := fh.read(12):
            if len(header) < 12:
                raise ValueError(f"{path}: a record header cut short ({len(header)} of 12 bytes)")
            (length,) = struct.unpack("<Q", header[:8])
            if verify and struct.unpack("<I", header[8:])[0] != _masked(header[:8]):
                raise ValueError(f"{path}: corrupt record length")
            if length + 4 > size - fh.tell():
                raise ValueError(f"{path}: a record claims {length} bytes, the file has {size - fh.tell()} left")
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


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): bytes for a length-delimited field, an int for a varint, bytes for a fixed
    32/64-bit one. Any: the decoder trusts the schema of tf.train.Example, and a field of the wrong wire type fails as
    TypeError/AttributeError, which decode_example reports as no Example."""
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
    """``{key: [values]}`` of a serialized ``tf.train.Example`` (int64 signed, floats as float32); ValueError for
    bytes that are no ``tf.train.Example`` (a field of the wrong wire type, a key that is no UTF-8)."""
    try:
        return _decode_example(data)
    except (TypeError, AttributeError, IndexError, struct.error) as err:
        raise ValueError(f"not a tf.train.Example ({type(err).__name__}: {err})") from None


def _decode_example(data: bytes) -> dict[str, list]:
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
