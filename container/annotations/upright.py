"""Images as the trainers see them: turned by their EXIF orientation.

A phone stores a portrait photo as landscape pixels plus an ``Orientation`` tag. ultralytics sizes it with the
tag applied (``exif_size``) and OpenCV decodes it turned, and LabelMe, CVAT and Roboflow show it turned while
boxes are drawn: so the size of an image, everywhere in this library, is its upright size. TensorFlow's
decoders ignore the tag, so a TFRecord stores such an image re-encoded upright (:func:`upright_bytes`).
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


def upright_bytes(data: bytes) -> tuple[bytes, bool]:
    """The image file ``data`` re-encoded upright when its EXIF orientation turns it, else ``data`` itself;
    and whether it was re-encoded. Only files with an EXIF block are opened (a search of their head, in C):
    most images cost nothing here. Re-encoded as JPEG at quality 95 (PNG stays PNG, lossless)."""
    if data.find(b"Exif\x00\x00", 0, 1 << 16) < 0 and not (data.startswith(b"\x89PNG") and b"eXIf" in data):
        return data, False
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        if orientation(im) == 1:
            return data, False
        fmt = "PNG" if im.format == "PNG" else "JPEG"
        turned = ImageOps.exif_transpose(im)
        if fmt == "JPEG" and turned.mode not in ("RGB", "L"):
            turned = turned.convert("RGB")
        out = io.BytesIO()
        # exif_transpose drops the tag from the copy's EXIF: a reader that applies EXIF does not turn it twice
        turned.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}), exif=turned.getexif())
    return out.getvalue(), True
