"""One in-memory form for every annotation format: images with pixel boxes and class names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


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
