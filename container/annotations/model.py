"""One in-memory form for every annotation format: images with pixel boxes and class names."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

IMG_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(slots=True)
class Box:
    """A box in pixels: ``xmin, ymin`` top-left, ``xmax, ymax`` bottom-right (exclusive), and its class name."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crowd: bool = False

    @property
    def area(self) -> float:
        return max(0.0, self.xmax - self.xmin) * max(0.0, self.ymax - self.ymin)


@dataclass(slots=True)
class Item:
    """One image: where it is (``path`` None when not found), its size when known, its boxes."""

    name: str  # the image's name as the annotation gives it (relative path or file name)
    path: Path | None
    width: int | None
    height: int | None
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None  # train/val/test when the source says so


@dataclass
class Annotations:
    """A dataset in any format, read: ``items`` and ``names`` (class names, in id order)."""

    items: list[Item]
    names: list[str]
    format: str
    source: Path
    notes: list[str] = field(default_factory=list)  # what the reader noticed (skipped files, ...)

    def boxes_per_class(self) -> dict[str, int]:
        counts = Counter(b.label for item in self.items for b in item.boxes)
        return {name: counts.get(name, 0) for name in self.names} | {
            k: v for k, v in counts.items() if k not in self.names}

    def summary(self) -> dict:
        return {"format": self.format, "images": len(self.items),
                "boxes": sum(len(i.boxes) for i in self.items), "classes": list(self.names),
                "boxes_per_class": self.boxes_per_class(),
                "splits": dict(Counter(i.split or "unsplit" for i in self.items))}


def image_index(root: Path) -> dict[str, Path]:
    """Every image under ``root`` by file name and by relative path (one walk)."""
    index: dict[str, Path] = {}
    base = str(root)
    for dirpath, _, files in os.walk(base):
        rel = dirpath[len(base):].lstrip(os.sep).replace(os.sep, "/")
        for name in files:
            if os.path.splitext(name)[1].lower() in IMG_SUFFIXES:
                path = Path(dirpath, name)
                index.setdefault(name, path)
                index[f"{rel}/{name}" if rel else name] = path
    return index


def find_image(index: dict[str, Path], name: str) -> Path | None:
    """The image an annotation names: by its relative path, else by its file name."""
    name = name.replace("\\", "/")
    return index.get(name) or index.get(name.lstrip("./")) or index.get(name.rsplit("/", 1)[-1])
