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
