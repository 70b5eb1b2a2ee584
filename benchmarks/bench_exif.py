"""What the TFRecord writer pays per image to find out whether a JPEG is EXIF-turned.

    python benchmarks/bench_exif.py [--count 5000]

``container.annotations.upright.record_image`` reads a JPEG's orientation from its APP1 segment
(``jpeg_orientation``); the baselines are what it replaced: a search of the file's first 64 kB for the EXIF
header (then PIL for every camera JPEG), and PIL's ``Image.open(...).getexif()``. Each on a 640x480 JPEG
without EXIF and one with a camera's EXIF (orientation 1, so nothing is re-encoded). CPU microseconds per
image, and the ratio of each baseline to ours.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from container.annotations.upright import ORIENTATION, record_image


def jpeg(exif: bool) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    tags = Image.Exif()
    tags[0x010F], tags[0x0110], tags[ORIENTATION] = "Canon", "EOS 5D", 1
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **({"exif": tags} if exif else {}))
    return buf.getvalue()


def search_then_pil(data: bytes) -> int:
    if data.find(b"Exif\x00\x00", 0, 1 << 16) < 0:
        return 1
    return pil(data)


def pil(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return im.getexif().get(ORIENTATION, 1)


def per_image_us(fn, data: bytes, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        fn(data)
    return (time.process_time() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    for name, data in (("jpeg without exif", jpeg(False)), ("camera jpeg (orientation 1)", jpeg(True))):
        ours = per_image_us(record_image, data, args.count)
        line = [f"{name} ({len(data) // 1024} kB): record_image {ours:.1f} us"]
        for label, fn in (("head search + PIL", search_then_pil), ("PIL getexif", pil)):
            theirs = per_image_us(fn, data, args.count)
            line.append(f"{label} {theirs:.1f} us ({theirs / ours:.1f}x)")
        print("; ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
