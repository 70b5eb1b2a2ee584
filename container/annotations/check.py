"""Checking a dataset: what a training would fail on (problems) and what it would quietly do (warnings).

The report's words and counts are the ones the trainers log (``summary_line``), so ``python -m sdk.data
check`` and a training job say the same thing about the same data.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from container.annotations.paths import IMG_SUFFIXES, walk_files
from container.annotations.types import Annotations, Box, Item
from container.annotations.upright import orientation, upright_size

EXAMPLES = 3
MIN_SIDE = 10  # ultralytics refuses images under 10 px a side (verify_image_label: "image size <10 pixels")
NO_LABELS = "image without labels"
CROWD = "crowd box left out"
DIFFICULT = "difficult box left out"
FAILED = "labelling failed (image left out)"


@dataclass
class Finding:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class Report:
    """Problems (fatal with ``strict``; else the image is left out) and warnings, each kind with a count and
    the first examples; ``left_out`` holds the ids of the items a conversion or a training leaves out."""

    images: int
    problems: dict[str, Finding] = field(default_factory=dict)
    warnings: dict[str, Finding] = field(default_factory=dict)
    left_out: set[int] = field(default_factory=set)
    without_labels: int = 0

    def add(self, kind: str, example: str, item: Item | None = None, *, warning: bool = False,
            leave_out: bool | None = None) -> None:
        (self.warnings if warning else self.problems).setdefault(kind, Finding()).add(example)
        if item is not None and (not warning if leave_out is None else leave_out):
            self.left_out.add(id(item))

    @property
    def bad_items(self) -> set[int]:  # the name before left_out
        return self.left_out

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [summary_line(self.images, len(self.left_out), self.without_labels,
                              sum(f.count for f in self.problems.values()))]
        for title, group in (("problem", self.problems), ("warning", self.warnings)):
            for kind, found in group.items():
                lines.append(f"  {title}: {kind}: {found.count} (e.g. {'; '.join(found.examples)})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"images": self.images, "ok": self.ok, "left_out": len(self.left_out),
                "without_labels": self.without_labels,
                "problems": {k: {"count": f.count, "examples": f.examples} for k, f in self.problems.items()},
                "warnings": {k: {"count": f.count, "examples": f.examples} for k, f in self.warnings.items()}}


def summary_line(images: int, left_out: int, without_labels: int, problems: int = 0) -> str:
    """One line both ``check`` and the trainers print: images, problems, left out, without labels."""
    return (f"{images} images checked: " + (f"{problems} problem(s)" if problems else "no problems")
            + f"; {left_out} left out; {without_labels} without labels (background images)")


def check(ann: Annotations, *, names: Sequence[str] | None = None, verify_images: bool = True, images: bool = True,
          keep_crowd: bool = False, keep_difficult: bool = False, strays: bool = True,
          progress: Callable[[int], None] | None = None) -> Report:
    """Missing, unreadable or tiny images, boxes outside the image or without area, unknown classes, duplicate
    images, annotations the reader could not use (problems); images without boxes, crowd and difficult boxes
    left out, failed labelling, images no annotation mentions (warnings). ``images=False`` checks the
    annotations alone (the images are elsewhere, e.g. in S3): sizes must then come from the annotations."""
    report = Report(len(ann.items))
    known = set(names or ann.names)
    by_size: dict[int, list[Item]] = defaultdict(list)
    for kind, example, warning, issue_item in ann.issues:
        report.add(kind, example, issue_item, warning=warning)
    for item in ann.items:
        if progress:
            progress(1)
        if item.failed:
            report.add(FAILED, f"{item.name}: {item.failed}", item, warning=True, leave_out=True)
            continue
        if images:
            if item.path is None or not item.path.is_file():
                report.add("missing image", item.name, item)
                continue
            if verify_images:
                try:
                    from PIL import Image

                    with Image.open(item.path) as im:
                        size, stored, turn = upright_size(im), im.size, orientation(im)
                        im.verify()
                    if item.width and item.height and (item.width, item.height) != size:
                        report.add("size differs from the annotation", _size_differs(item, size, stored, turn),
                                   item)
                    item.width, item.height = size
                except Exception as err:
                    report.add("unreadable image", f"{item.name} ({type(err).__name__})", item)
                    continue
            by_size[item.path.stat().st_size].append(item)
        elif not (item.width and item.height):
            report.add("image size unknown", f"{item.name}: the annotation gives no width/height", item)
            continue
        if item.width and item.height and min(item.width, item.height) < MIN_SIDE:
            report.add(f"image under {MIN_SIDE} px", f"{item.name}: {item.width}x{item.height} (YOLO needs "
                       f"{MIN_SIDE} px a side at least; leave it out or upscale it)", item)
            continue
        trained = 0
        for b in item.boxes:  # three million boxes at scale: the example text is made only for a finding
            if b.crowd and not keep_crowd:
                report.add(CROWD, _where(item, b), warning=True)
                continue
            if b.difficult and not keep_difficult:
                report.add(DIFFICULT, _where(item, b), warning=True)
                continue
            trained += 1
            if b.label not in known:
                report.add("unknown class", _where(item, b), item)
            if b.xmax <= b.xmin or b.ymax <= b.ymin:
                report.add("zero-area box", _where(item, b), item)
            elif item.width and item.height and (b.xmin < -1 or b.ymin < -1 or b.xmax > item.width + 1
                                                 or b.ymax > item.height + 1):
                report.add("box outside the image", f"{_where(item, b)} in {item.width}x{item.height}", item)
        if not trained and id(item) not in report.left_out:
            report.add(NO_LABELS, item.name, warning=True)
    _duplicates(report, by_size)
    if images and strays and ann.source.is_dir():  # not on a shard: the other shards' images are not strays
        used = {item.path for item in ann.items if item.path}
        for p in walk_files(ann.source, IMG_SUFFIXES):
            if p not in used:
                report.add("image no annotation mentions", p.relative_to(ann.source).as_posix(), warning=True)
    report.without_labels = report.warnings[NO_LABELS].count if NO_LABELS in report.warnings else 0
    return report


def _size_differs(item: Item, size: tuple[int, int], stored: tuple[int, int], turn: int) -> str:
    text = f"{item.name}: annotated {item.width}x{item.height}, image {size[0]}x{size[1]}"
    if (item.width, item.height) == stored:  # the tool drew on the stored pixels, every trainer turns them
        text += (f" once turned by its EXIF orientation {turn} (stored {stored[0]}x{stored[1]}: the labelling tool "
                 "ignored the tag, so its boxes would land beside the objects; remove the tag, e.g. "
                 "exiftool -Orientation=1 -n, or label it again in a tool that applies it)")
    return text


def _where(item: Item, b: Box) -> str:
    return f"{item.name}: {b.label} [{b.xmin:g},{b.ymin:g},{b.xmax:g},{b.ymax:g}]"


def _duplicates(report: Report, by_size: dict[int, list[Item]]) -> None:
    for same_size in by_size.values():  # hash only files that share a size
        if len(same_size) < 2:
            continue
        seen: dict[str, Item] = {}
        for item in same_size:
            if id(item) in report.left_out:
                continue
            digest = hashlib.sha1(item.file.read_bytes(), usedforsecurity=False).hexdigest()
            if digest in seen:
                report.add("duplicate image", f"{item.name} = {seen[digest].name}", item)
            else:
                seen[digest] = item
