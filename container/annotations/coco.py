"""COCO JSON, read as a stream: a file of millions of annotations never becomes one Python dict.

Elements of ``images`` and ``annotations`` are decoded one at a time (``jsonstream``); what is kept is
one :class:`Item` per image and one :class:`Box` per annotation. COCO files list ``categories`` after
the annotations, so boxes hold their category id until the end, then take its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from container.annotations.detect import json_kind
from container.annotations.jsonstream import top_level
from container.annotations.paths import ImageIndex, dataset_root, folder_of, split_of, walk_files
from container.annotations.types import Annotations, Box, Item
from container.failure import UserError


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

        def image(img: dict, by_image: dict = by_image, split: str | None = split, near: str = near) -> None:
            key, found = index.locate(str(img["file_name"]), near)
            item = Item(key, found, img.get("width"), img.get("height"), [], split)
            by_image[img["id"]] = item
            ann.items.append(item)

        def annotation(a: dict, by_image: dict = by_image, pending: list = pending,
                       boxes: list = boxes_with_ids, where: str = where) -> None:
            item = by_image.get(a.get("image_id"))
            if item is None:
                pending.append(a)
                return
            bbox = a.get("bbox")
            if not bbox or len(bbox) != 4:
                polygons = a.get("segmentation")
                points = [p for poly in polygons for p in poly] if isinstance(polygons, list) else []
                if len(points) < 6 or len(points) % 2:  # an RLE mask alone: no box without decoding it
                    ann.note("annotation without a bbox", f"{where}: annotation {a.get('id')} of image {item.name}"
                             " has neither a bbox nor a polygon: add its bbox [x, y, width, height]", item=item)
                    return
                xs, ys = points[0::2], points[1::2]  # the polygons' bounding box, as for YOLO polygon lines
                bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            x, y, w, h = bbox
            box = Box("", x, y, x + w, y + h, bool(a.get("iscrowd", 0)))
            item.boxes.append(box)
            boxes.append((box, a.get("category_id")))

        rest = top_level(path, {"images": image, "annotations": annotation})
        for a in pending:
            if a.get("image_id") in by_image:
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
