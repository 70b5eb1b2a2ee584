"""One in-memory form for every annotation format: images with pixel boxes and class names."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A class id indexes the list of class names, which spans 0..the largest id: an id is never allowed to size it
# beyond this (no detection dataset comes near: LVIS has 1,203 classes, Open Images 600).
MAX_CLASSES = 100_000


def coordinate(value: Any, what: str, *, text: bool = False) -> float:
    """``value`` (a JSON number; with ``text``, the text of one in XML, CSV or a label line) as a finite float;
    ValueError naming ``what`` for anything else: ``inf``, ``nan``, ``1e400`` (inf once read), a string in a JSON
    number's place, ``true``, a list. Every reader takes its coordinates through here, so no non-finite number
    reaches a check, a writer or ``int()`` (``int(inf)`` is an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str) if text else (int, float)):
        raise ValueError(f"{what} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int of 400 digits
        raise ValueError(f"{what} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {_shown(value)}")
    return number


def image_size(value: Any, what: str, *, text: bool = False) -> int | None:
    """An image's width or height as the annotation gives it: None when absent (``None``, ``""``, 0, as tools
    write an unknown size), else a positive whole number of pixels; ValueError naming ``what`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = coordinate(value, what, text=text)
    if number < 0 or number != int(number):
        raise ValueError(f"{what} must be a whole number of pixels, got {_shown(value)}")
    return int(number) or None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(slots=True)
class Box:
    """A box in pixels: ``xmin, ymin`` top-left, ``xmax, ymax`` bottom-right (exclusive), and its class name.

    ``crowd`` (COCO ``iscrowd``) and ``difficult`` (VOC) objects are left out of training by default,
    as ultralytics' COCO converter and the VOC evaluation protocol do; see ``convert(keep_crowd=...)``."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crowd: bool = False
    difficult: bool = False

    @property
    def area(self) -> float:
        return max(0.0, self.xmax - self.xmin) * max(0.0, self.ymax - self.ymin)


@dataclass(slots=True)
class Item:
    """One image: ``name`` is its path relative to the dataset root when it was found (unique), else the
    name the annotation gives; ``path`` None when not found; its size when known; its boxes."""

    name: str
    path: Path | None
    width: int | None
    height: int | None
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None  # train/val/test when the source says so
    failed: str = ""  # why labelling failed (Ground Truth's failure-reason): not a background image

    @property
    def file(self) -> Path:
        """``path``, where an image must exist: the check (check.py) leaves out every item whose image was not
        found, so writers and later checks read this."""
        if self.path is None:
            raise ValueError(f"image {self.name!r} was not found")
        return self.path


@dataclass
class Annotations:
    """A dataset in any format, read: ``items`` and ``names`` (class names, in id order).

    ``issues`` are what the reader noticed: ``(kind, example, warning, item)``, reported by ``check``; an
    issue that names an item (a label line it could not read) leaves that image out."""

    items: list[Item]
    names: list[str]
    format: str
    source: Path
    issues: list[tuple[str, str, bool, Item | None]] = field(default_factory=list)

    def note(self, kind: str, example: str, *, warning: bool = False, item: Item | None = None) -> None:
        self.issues.append((kind, example, warning, item))

    def boxes_per_class(self) -> dict[str, int]:
        counts = Counter(b.label for item in self.items for b in item.boxes)
        return {name: counts.get(name, 0) for name in self.names} | {
            k: v for k, v in counts.items() if k not in self.names}

    def summary(self) -> dict:
        return {"format": self.format, "images": len(self.items),
                "boxes": sum(len(i.boxes) for i in self.items), "classes": list(self.names),
                "boxes_per_class": self.boxes_per_class(),
                "splits": dict(Counter(i.split or "unsplit" for i in self.items))}
