"""Checking and splitting a dataset, and the one-call conversion built on them."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from container.annotations.model import IMG_SUFFIXES, Annotations, Item
from container.annotations.readers import read
from container.annotations.writers import WRITERS
from container.failure import UserError

EXAMPLES = 3
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Report:
    """Problems (fatal with ``strict``) and warnings, each kind with a count and the first examples."""

    images: int
    problems: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    bad_items: set[int] = field(default_factory=set)  # ids of items with a problem

    def add(self, kind: str, example: str, item: Item | None = None, *, warning: bool = False) -> None:
        (self.warnings if warning else self.problems).setdefault(kind, []).append(example)
        if item is not None and not warning:
            self.bad_items.add(id(item))

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"{self.images} images checked: " + ("no problems" if self.ok else
                                                       f"{sum(map(len, self.problems.values()))} problem(s)")]
        for title, group in (("problem", self.problems), ("warning", self.warnings)):
            for kind, examples in group.items():
                lines.append(f"  {title}: {kind}: {len(examples)} (e.g. {'; '.join(examples[:EXAMPLES])})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"images": self.images, "ok": self.ok,
                "problems": {k: {"count": len(v), "examples": v[:EXAMPLES]} for k, v in self.problems.items()},
                "warnings": {k: {"count": len(v), "examples": v[:EXAMPLES]} for k, v in self.warnings.items()}}


def check(ann: Annotations, *, names: Sequence[str] | None = None, verify_images: bool = True,
          progress: Callable[[int], None] | None = None) -> Report:
    """Missing or unreadable images, boxes outside the image or without area, unknown classes,
    duplicate images (problems); images without boxes and images no annotation mentions (warnings)."""
    report = Report(len(ann.items))
    known = set(names or ann.names)
    by_size: dict[int, list[Item]] = defaultdict(list)
    for item in ann.items:
        if progress:
            progress(1)
        if item.path is None or not item.path.is_file():
            report.add("missing image", item.name, item)
            continue
        if verify_images:
            try:
                from PIL import Image

                with Image.open(item.path) as im:
                    size = im.size
                    im.verify()
                if item.width and item.height and (item.width, item.height) != size:
                    report.add("size differs from the annotation",
                               f"{item.name}: annotated {item.width}x{item.height}, image {size[0]}x{size[1]}", item)
                item.width, item.height = size
            except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a broken file
                report.add("unreadable image", f"{item.name} ({type(err).__name__})", item)
                continue
        by_size[item.path.stat().st_size].append(item)
        if not item.boxes:
            report.add("image without labels", item.name, warning=True)
        for b in item.boxes:
            where = f"{item.name}: {b.label} [{b.xmin:g},{b.ymin:g},{b.xmax:g},{b.ymax:g}]"
            if b.label not in known:
                report.add("unknown class", where, item)
            if b.xmax <= b.xmin or b.ymax <= b.ymin:
                report.add("zero-area box", where, item)
            elif item.width and item.height and (b.xmin < -1 or b.ymin < -1 or b.xmax > item.width + 1
                                                 or b.ymax > item.height + 1):
                report.add("box outside the image", f"{where} in {item.width}x{item.height}", item)
    for same_size in by_size.values():  # hash only files that share a size
        if len(same_size) < 2:
            continue
        seen: dict[str, Item] = {}
        for item in same_size:
            digest = hashlib.sha1(item.path.read_bytes(), usedforsecurity=False).hexdigest()
            if digest in seen:
                report.add("duplicate image", f"{item.name} = {seen[digest].name}", item)
            else:
                seen[digest] = item
    if ann.source.is_dir():
        used = {item.path.resolve() for item in ann.items if item.path}
        stray = [p for p in ann.source.rglob("*") if p.suffix.lower() in IMG_SUFFIXES and p.resolve() not in used]
        for p in stray:
            report.add("image no annotation mentions", p.relative_to(ann.source).as_posix(), warning=True)
    for note in ann.notes:
        report.add("unreadable annotation", note)
    return report


def split(items: list[Item], ratios: Sequence[float], *, seed: int = 0) -> dict[str, list[Item]]:
    """Shuffle with ``seed`` and cut by ``ratios`` (train, val[, test]), placing the rarest classes
    first so that each class lands in every split where it has enough images."""
    if not 2 <= len(ratios) <= 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise UserError(f"split ratios must be 2 or 3 non-negative numbers adding up to 1, got {list(ratios)}")
    names = SPLIT_NAMES[:len(ratios)]
    order = list(items)
    random.Random(seed).shuffle(order)
    targets = [round(r * len(order)) for r in ratios]
    targets[0] = len(order) - sum(targets[1:])
    out: dict[str, list[Item]] = {n: [] for n in names}
    placed: set[int] = set()
    counts = Counter(b.label for item in order for b in item.boxes)
    for label in sorted(counts, key=lambda k: (counts[k], k)):  # rarest first
        holders = [it for it in order if id(it) not in placed and any(b.label == label for b in it.boxes)]
        for name, target in zip(names[1:], targets[1:]):  # one image of the class in each held-out split
            if not any(any(b.label == label for b in it.boxes) for it in out[name]) and len(out[name]) < target \
                    and len(holders) > 1:
                item = holders.pop()
                out[name].append(item)
                placed.add(id(item))
    rest = [it for it in order if id(it) not in placed]
    for name, target in zip(names[1:], targets[1:]):
        while len(out[name]) < target and rest:
            out[name].append(rest.pop())
    out[names[0]].extend(rest)
    return out


def convert(src: str | Path, to: str, out: str | Path, *, fmt: str = "auto", ratios: Sequence[float] | None = None,
            seed: int = 0, names: list[str] | None = None, strict: bool = False, verify_images: bool = True,
            progress: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> tuple[Annotations, Report]:
    """Read ``src`` (any format), check it, split it (``ratios``; else the source's own splits), write ``to``."""
    if to not in WRITERS:
        raise UserError(f"cannot write {to!r}; writable formats: {', '.join(WRITERS)}")
    ann = read(src, fmt, names=names)
    report = check(ann, names=names, verify_images=verify_images, progress=progress)
    log(report.text())
    if not report.ok and strict:
        raise UserError(f"{src}: the dataset has problems (strict):\n{report.text()}")
    good = [item for item in ann.items if id(item) not in report.bad_items]
    if not good:
        raise UserError(f"{src}: no usable images ({report.text()})")
    if names is None:  # classes no box uses any more stay: ids must not shift between runs
        extra = [label for label in ann.boxes_per_class() if label not in ann.names]
        ann.names = list(ann.names) + extra
    if ratios:
        splits = split(good, ratios, seed=seed)
    else:
        splits = defaultdict(list)
        for item in good:
            splits[item.split or "train"].append(item)
    WRITERS[to](ann, Path(out), dict(splits), progress=progress or (lambda _: None))
    return ann, report
