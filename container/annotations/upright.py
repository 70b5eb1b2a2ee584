"""Images as the trainers see them: turned by their EXIF orientation.

A phone stores a portrait photo as landscape pixels plus an ``Orientation`` tag. ultralytics sizes it with the
tag applied (``exif_size``) and OpenCV decodes it turned, and LabelMe, CVAT and Roboflow show it turned while
boxes are drawn: so the size of an image, everywhere in this library, is its upright size. TensorFlow's
decoders ignore the tag, so a TFRecord stores such an image re-encoded upright (:func:`record_image`).
"""

from __future__ import annotations

import io
from typing import Any

ORIENTATION = 0x0112  # the EXIF tag
SWAPS = frozenset({5, 6, 7, 8})  # orientations that turn by 90 degrees: width and height swap (ultralytics' set)


def orientation(im: Any) -> int:
    """The EXIF orientation of an open PIL image, 1 (as stored) when it has none or it cannot be read. Reads
    the headers only: a PNG's EXIF after its pixels is not looked for (getting it would decode the image, and
    ``verify()`` refuses an image already decoded)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(ORIENTATION, 1)
    except Exception:  # a broken EXIF block: the image is still an image, shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(im: Any) -> tuple[int, int]:
    """``(width, height)`` of an open PIL image once turned by its EXIF orientation."""
    width, height = im.size
    return (height, width) if orientation(im) in SWAPS else (width, height)


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation of a JPEG file's bytes, read from its APP1 segment without decoding anything (a few
    microseconds; PIL's getexif costs 100+): 1 when there is none. Walks the segments before the pixels."""
    pos, end = 2, len(data)
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no EXIF before the pixels
            return 1
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[pos + 10:pos + 2 + length])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 of an EXIF block (a TIFF header, then 12-byte entries); 1 when absent or broken."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)  # type: ignore[arg-type]
    count = int.from_bytes(tiff[ifd:ifd + 2], order)  # type: ignore[arg-type]
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        if int.from_bytes(tiff[entry:entry + 2], order) == ORIENTATION:  # type: ignore[arg-type]
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)  # type: ignore[arg-type]  # a SHORT
            return value if 1 <= value <= 8 else 1
    return 1


def record_image(data: bytes) -> tuple[bytes, bytes]:
    """An image file's bytes as a TFRecord holds them, and their ``image/format`` (``b"jpeg"`` or ``b"png"``).

    A JPEG or PNG stays as it is, unless its EXIF orientation turns it: then it is re-encoded upright (JPEG at
    quality 95, PNG lossless), without the tag. Any other image (WebP, BMP, TIFF, ...) becomes a lossless PNG
    of its upright pixels: Model Garden decodes with ``tf.io.decode_image``, which refuses TIFF and returns
    WebP as a stack of frames its ``set_shape([None, None, 3])`` rejects. A JPEG's orientation is read from its
    bytes (:func:`jpeg_orientation`); only a turned one, or a PNG with an ``eXIf`` chunk, is opened."""
    if data.startswith(b"\xff\xd8\xff"):
        kind, tagged = b"jpeg", jpeg_orientation(data) != 1
    elif data.startswith(b"\x89PNG"):
        kind, tagged = b"png", b"eXIf" in data
    else:
        kind, tagged = b"", True
    if not tagged:
        return data, kind
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        if kind and orientation(im) == 1:
            return data, kind
        kind = kind or b"png"
        turned = ImageOps.exif_transpose(im)
        if turned.mode not in (("RGB", "L") if kind == b"jpeg" else ("RGB", "RGBA", "L", "LA", "P")):
            turned = turned.convert("RGBA" if "A" in turned.mode else "RGB")
        out = io.BytesIO()
        # exif_transpose drops the tag from the copy's EXIF: a reader that applies EXIF does not turn it twice
        turned.save(out, "JPEG" if kind == b"jpeg" else "PNG", **({"quality": 95} if kind == b"jpeg" else {}),
                    exif=turned.getexif())
    return out.getvalue(), kind
