"""COCO JSON, read as a stream: a file of millions of annotations never becomes one Python dict.

Elements of ``images`` and ``annotations`` are decoded one at a time (``jsonstream``); what is kept is
one :class:`Item` per image and one :class:`Box` per annotation. COCO files list ``categories`` after
the annotations, so boxes hold their category id until the end, then take its name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from container.annotations.detect import json_kind
from container.annotations.jsonstream import top_level
from container.annotations.paths import ImageIndex, dataset_root, folder_of, split_of, walk_files
from container.annotations.types import Annotations, Box, Item, coordinate, image_size
from container.failure import UserError


def _box(a: dict) -> Box | None:
    """An annotation's box: its ``bbox`` ``[x, y, width, height]``, else its polygons' bounding box; None for an
    RLE mask alone. ValueError for numbers that are no finite numbers (a string, ``1e400``)."""
    bbox = a.get("bbox")
    if not bbox or not isinstance(bbox, list) or len(bbox) != 4:
        polygons = a.get("segmentation")
        points = [p for poly in polygons for p in (poly if isinstance(poly, list) else [])] \
            if isinstance(polygons, list) else []
        if len(points) < 6 or len(points) % 2:
            if bbox:
                raise ValueError(f"bbox must be [x, y, width, height], got {_shown(bbox)}")
            return None
        points = [coordinate(p, "a segmentation point") for p in points]
        xs, ys = points[0::2], points[1::2]  # the polygons' bounding box, as for YOLO polygon lines
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    x, y, w, h = (coordinate(v, f"bbox {what}") for v, what in zip(bbox, ("x", "y", "width", "height"), strict=True))
    crowd = a.get("iscrowd", 0)
    if crowd not in (0, 1, None):  # bool("0") is True: a string "0" made every box a crowd, left out of training
        raise ValueError(f"iscrowd must be 0 or 1, got {_shown(crowd)}")
    return Box("", x, y, x + w, y + h, bool(crowd))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_coco(root: Path, names: list[str] | None = None, *, index: ImageIndex | None = None) -> Annotations:
    """Every COCO JSON under ``root`` (or the one file). ``iscrowd`` annotations are marked ``crowd``; an
    annotation whose ``image_id`` no image has is reported (a problem), not silently dropped."""
    base = dataset_root(root)
    files = [root] if root.is_file() else [p for p in walk_files(root, (".json",)) if json_kind(p) == "coco"]
    index = index if index is not None else ImageIndex(base)
    ann = Annotations([], [], "coco", root)
    categories: dict[int, str] = {}
    parents: set[str] = set()  # supercategory names
    used: set[Any] = set()  # category ids some box has
    for path in files:
        split = split_of(path, base) if root.is_dir() else None
        near = folder_of(path, base)
        where = path.relative_to(base).as_posix()
        by_image: dict[Any, Item] = {}
        pending: list[dict] = []  # annotations met before their image (a file that lists annotations first)
        boxes_with_ids: list[tuple[Box, Any]] = []

        def image(img: dict, by_image: dict = by_image, split: str | None = split, near: str = near,
                  where: str = where) -> None:
            if not isinstance(img, dict) or "id" not in img or not isinstance(img["id"], (int, str)):
                ann.note("unreadable annotation", f"{where}: an element of images is {_shown(img)}: each image "
                         "needs an id (a number) and a file_name")
                return
            key, found = index.locate(str(img.get("file_name", "")), near)
            try:
                width, height = image_size(img.get("width"), "width"), image_size(img.get("height"), "height")
            except ValueError as err:
                width = height = None
                problem = f"{where}: image {img['id']!r} ({key}): {err}: give its size in pixels, or leave it out"
            else:
                problem = ""
            item = Item(key, found, width, height, [], split)
            by_image[img["id"]] = item
            ann.items.append(item)
            if problem:
                ann.note("unreadable annotation", problem, item=item)

        def annotation(a: dict, by_image: dict = by_image, pending: list = pending,
                       boxes: list = boxes_with_ids, where: str = where) -> None:
            if not isinstance(a, dict):
                ann.note("unreadable annotation", f"{where}: an element of annotations is {_shown(a)}, not an object")
                return
            image_id = a.get("image_id")
            item = by_image.get(image_id) if isinstance(image_id, (int, str)) else None
            if item is None:
                pending.append(a)
                return
            try:
                box = _box(a)
            except ValueError as err:  # the image is left out: trained without this object, it would be background
                ann.note("unreadable annotation", f"{where}: annotation {_shown(a.get('id'))} of image {item.name}: "
                         f"{err}", item=item)
                return
            if box is None:  # an RLE mask alone: no box without decoding it
                ann.note("annotation without a bbox", f"{where}: annotation {a.get('id')} of image {item.name}"
                         " has neither a bbox nor a polygon: add its bbox [x, y, width, height]", item=item)
                return
            item.boxes.append(box)
            category = a.get("category_id")
            boxes.append((box, category if isinstance(category, (int, str)) else repr(category)))

        try:
            rest = top_level(path, {"images": image, "annotations": annotation})
        except (ValueError, RecursionError) as err:  # the file itself: not JSON, or brackets nested past any reader
            why = f"nested too deeply: more than {sys.getrecursionlimit()} brackets" if isinstance(
                err, RecursionError) else str(err)
            raise UserError(f"{where}: not a readable COCO JSON file ({why}). Export it again from the labelling "
                            "tool, or check it with python -m json.tool") from None
        if not isinstance(rest.get("categories") or [], list) or not all(
                isinstance(c, dict) and isinstance(c.get("id"), (int, str)) and "name" in c
                for c in rest.get("categories") or []):
            raise UserError(f"{where}: categories must be a list of objects with an id and a name, as COCO writes "
                            "them ({\"id\": 1, \"name\": \"cat\"})")
        for a in pending:
            if isinstance(a.get("image_id"), (int, str)) and a.get("image_id") in by_image:
                annotation(a)
            else:
                ann.note("annotation of a missing image id",
                         f"{where}: annotation {a.get('id')} names image_id {a.get('image_id')!r}, no such image")
        cats = {c["id"]: str(c["name"]) for c in rest.get("categories") or []}
        parents.update(str(c.get("supercategory")) for c in rest.get("categories") or []
                       if c.get("supercategory") != c["name"])  # COCO's own "person" is its own supercategory
        for cid, name in cats.items():
            if categories.get(cid, name) != name:
                raise UserError(f"{where}: category id {cid} is {name!r} here but {categories[cid]!r} elsewhere")
            categories[cid] = name
        for box, cid in boxes_with_ids:
            box.label = cats.get(cid) or str(cid)
            used.add(cid)
    if 0 in categories and categories[0] in parents and 0 not in used:
        del categories[0]  # Roboflow's project: category 0, the supercategory of the other classes, on no box
    ann.names = names or [categories[c] for c in sorted(categories)]
    return ann
