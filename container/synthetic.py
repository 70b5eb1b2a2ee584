"""A small generated detection dataset of shapes, for tests, examples and benchmarks.

Draws filled rectangles and ellipses (two classes) on noisy backgrounds and writes a YOLO tree:
``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

NAMES = ["rectangle", "ellipse"]


def make_shapes(root: Path, *, train: int = 16, val: int = 4, size: int = 64, seed: int = 0,
                splits: bool = True, data_yaml: bool = True) -> Path:
    """Write the dataset under ``root``; with ``splits=False`` everything goes to ``images/``."""
    rng = random.Random(seed)
    root = Path(root)
    for split, count in (("train", train), ("val", val)):
        if not count:
            continue
        sub = split if splits else ""
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            bg = tuple(rng.randint(0, 80) for _ in range(3))
            img = Image.new("RGB", (size, size), bg)
            draw = ImageDraw.Draw(img)
            lines = []
            for _ in range(rng.randint(1, 3)):
                cls = rng.randrange(len(NAMES))
                w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
                x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
                colour = tuple(rng.randint(150, 255) for _ in range(3))
                (draw.rectangle if cls == 0 else draw.ellipse)([x0, y0, x0 + w - 1, y0 + h - 1], fill=colour)
                lines.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            stem = f"{split}_{i:04d}"
            img.save(root / "images" / sub / f"{stem}.jpg", quality=90)
            (root / "labels" / sub / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    if data_yaml:
        (root / "data.yaml").write_text(yaml.safe_dump({"names": dict(enumerate(NAMES))}))
    return root


def make_photos(root: Path, *, train: int = 8, val: int = 2, size: tuple[int, int] = (4000, 3000), seed: int = 0,
                quality: int = 90, portrait_every: int = 4) -> Path:
    """Large photo-like JPEGs (smooth colour fields, sensor-like grain, shapes) in a YOLO tree.

    Laid out like :func:`make_shapes`.

    For the input-pipeline benchmark and tests: what a phone or drone photo costs to decode (entropy
    near a real photo's, a few MB at 12 MP), with the same two classes. Every ``portrait_every``-th
    image is portrait. Uses OpenCV and NumPy (ultralytics' own dependencies).
    """
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            w, h = size if not portrait_every or i % portrait_every else size[::-1]
            field = rng.integers(0, 160, (max(2, h // 150), max(2, w // 150), 3), dtype=np.uint8)
            img = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(len(NAMES)))
                bw, bh = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                colour = tuple(int(c) for c in rng.integers(170, 256, 3))
                if cls == 0:
                    cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + bh - 1), colour, thickness=-1)
                else:
                    cv2.ellipse(img, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, colour, thickness=-1)
                lines.append(f"{cls} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
            grain = rng.normal(0, 6, (h, w, 1)).astype(np.int16)
            img = np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)
            stem = f"{split}_{i:04d}"
            _, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            data.tofile(root / "images" / split / f"{stem}.jpg")
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": dict(enumerate(NAMES))}))
    return root
