"""Readers: YOLO trees, Pascal VOC XML, COCO JSON, Ground Truth output manifests, the seed's CSV.

Each returns :class:`Annotations` with pixel boxes. :func:`detect` names the format of a folder
and refuses an ambiguous one. Written on the standard library (ElementTree, json, csv): the
libraries we measured (globox, ultralytics' converters) were 5x slower on VOC or covered one format
each; see docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from container.annotations.model import IMG_SUFFIXES, Annotations, Box, Item, find_image, image_index
from container.failure import UserError

FORMATS = ("yolo", "voc", "coco", "groundtruth", "csv")
CSV_HEADER = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "eval": "val", "test": "test"}


def _split_of(path: Path, root: Path) -> str | None:
    """train/val/test from the folders or the file name (``val/``, ``valid_labels.csv``, ``test.json``)."""
    for part in path.relative_to(root).parts[:-1] + (path.stem,):
        for token in [part, *re.split(r"[_\-.]", part)]:
            split = SPLIT_WORDS.get(token.lower())
            if split:
                return split
    return None


def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with these suffixes, sorted, hidden folders and files left out (one os.walk)."""
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in suffixes]
    return [Path(f) for f in sorted(found)]


# -- detection --------------------------------------------------------------------------------------
def _json_kind(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if b'"source-ref"' in head:
        return "groundtruth"
    if path.suffix == ".json" and (b'"images"' in head or b'"annotations"' in head or b'"categories"' in head):
        return "coco"
    return None


def detect(root: Path) -> str:
    """The annotation format of a folder (or file), or a UserError naming what was found."""
    root = Path(root)
    if root.is_file():
        candidates = [root]
    else:
        candidates = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in
                      (".xml", ".json", ".manifest", ".jsonl", ".csv", ".txt")]
    found: dict[str, list[Path]] = {}
    for path in candidates:
        suffix = path.suffix.lower()
        kind = None
        if suffix == ".xml":
            with path.open("rb") as fh:
                kind = "voc" if b"<annotation" in fh.read(2048) else None
        elif suffix in (".json", ".manifest", ".jsonl"):
            kind = _json_kind(path)
        elif suffix == ".csv":
            with path.open(encoding="utf-8", errors="replace") as fh:
                header = fh.readline().strip().lower().replace(" ", "").split(",")
            kind = "csv" if header[:8] == CSV_HEADER else None
        elif suffix == ".txt" and path.name not in ("classes.txt", "names.txt") and (
                "labels" in path.parts or any(path.with_suffix(x).exists() for x in (".jpg", ".png", ".jpeg"))):
            kind = "yolo"  # ultralytics' labels/ tree, or darknet's label beside its image (CVAT "YOLO 1.1")
        if kind:
            found.setdefault(kind, []).append(path)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise UserError(f"{root}: no annotations found. Expected one of: a YOLO tree (labels/*.txt), Pascal VOC "
                        "*.xml, a COCO *.json, a Ground Truth output.manifest, or a CSV with header "
                        + ",".join(CSV_HEADER))
    listing = "; ".join(f"{k}: {len(v)} file(s), e.g. {v[0].relative_to(root) if root.is_dir() else v[0]}"
                        for k, v in sorted(found.items()))
    raise UserError(f"{root}: more than one annotation format ({listing}). Keep one format per channel, "
                    "or name it with the hyperparameter data_format")


# -- YOLO -------------------------------------------------------------------------------------------
def read_yolo(root: Path, names: list[str] | None = None) -> Annotations:
    """ultralytics' tree (``images/`` + ``labels/``), or darknet's (each ``.txt`` beside its image, as
    CVAT's "YOLO 1.1" export writes with ``obj.names``)."""
    from PIL import Image

    from container.yolo.dataset import _discover, label_path, search_names

    try:
        splits, _ = _discover(root, "train")
        label_of = label_path
    except UserError:  # darknet: labels beside the images
        splits = {}
        for image in sorted(set(image_index(root).values())):
            splits.setdefault(_split_of(image, root) or "pool", []).append(image)

        def label_of(image: Path) -> Path:
            return image.with_suffix(".txt")
    names = names or (search_names([root]) or ([], ""))[0]
    if not names:
        raise UserError(f"{root}: a YOLO tree needs class names (data.yaml with 'names', classes.txt or obj.names)")
    items: list[Item] = []
    for split, images in splits.items():
        for image in images:
            try:
                with Image.open(image) as im:
                    width, height = im.size
            except OSError:
                items.append(Item(image.relative_to(root).as_posix(), image, None, None, [], split))
                continue
            boxes = []
            label = label_of(image)
            if label.exists():
                for line in label.read_text(encoding="utf-8").splitlines():
                    fields = line.split()
                    if len(fields) < 5:
                        continue
                    cls, cx, cy, w, h = int(float(fields[0])), *map(float, fields[1:5])
                    name = names[cls] if 0 <= cls < len(names) else str(cls)
                    boxes.append(Box(name, (cx - w / 2) * width, (cy - h / 2) * height,
                                     (cx + w / 2) * width, (cy + h / 2) * height))
            items.append(Item(image.relative_to(root).as_posix(), image, width, height, boxes,
                              None if split == "pool" else split))
    return Annotations(items, list(names), "yolo", root)


# -- Pascal VOC -------------------------------------------------------------------------------------
def _num(el: Any, tag: str) -> float:
    text = el.findtext(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def read_voc(root: Path, names: list[str] | None = None) -> Annotations:
    files = [root] if root.is_file() else _files(root, (".xml",))
    index = image_index(root if root.is_dir() else root.parent)
    items: list[Item] = []
    seen: dict[str, None] = dict.fromkeys(names or [])
    notes = []
    splits_of: dict[Path, str | None] = {}
    for xml in files:
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as err:
            notes.append(f"{xml.name}: not valid XML ({err})")
            continue
        if tree.tag != "annotation":
            continue
        filename = tree.findtext("filename") or xml.with_suffix(".jpg").name
        size = tree.find("size")
        width = int(float(size.findtext("width") or 0)) if size is not None else 0
        height = int(float(size.findtext("height") or 0)) if size is not None else 0
        boxes = []
        for obj in tree.iter("object"):
            label = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if bb is None:
                continue
            try:
                boxes.append(Box(label, _num(bb, "xmin"), _num(bb, "ymin"), _num(bb, "xmax"), _num(bb, "ymax")))
            except ValueError as err:
                notes.append(f"{xml.name}: object {label!r}: {err}")
                continue
            if names is None:
                seen.setdefault(label)
        path = find_image(index, filename)
        folder = xml.parent
        if folder not in splits_of:
            splits_of[folder] = _split_of(xml, root) if root.is_dir() else None
        split = splits_of[folder] if xml.stem.lower() not in SPLIT_WORDS else SPLIT_WORDS[xml.stem.lower()]
        items.append(Item(filename, path, width or None, height or None, boxes, split))
    return Annotations(items, list(seen), "voc", root, notes)


# -- COCO -------------------------------------------------------------------------------------------
def read_coco(root: Path, names: list[str] | None = None) -> Annotations:
    files = [root] if root.is_file() else [p for p in _files(root, (".json",)) if _json_kind(p) == "coco"]
    base = root if root.is_dir() else root.parent
    index = image_index(base)
    items: list[Item] = []
    categories: dict[int, str] = {}
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        split = _split_of(path, base)
        cats = {c["id"]: c["name"] for c in sorted(data.get("categories", []), key=lambda c: c["id"])}
        for cid, name in cats.items():
            if categories.get(cid, name) != name:
                raise UserError(f"{path.name}: category id {cid} is {name!r} here but {categories[cid]!r} elsewhere")
            categories[cid] = name
        by_image: dict[Any, Item] = {}
        for img in data.get("images", []):
            item = Item(img["file_name"], find_image(index, img["file_name"]), img.get("width"), img.get("height"),
                        [], split)
            by_image[img["id"]] = item
            items.append(item)
        for ann in data.get("annotations", []):
            item = by_image.get(ann.get("image_id"))
            bbox = ann.get("bbox")
            if item is None or not bbox or len(bbox) != 4:
                continue
            x, y, w, h = map(float, bbox)
            item.boxes.append(Box(cats.get(ann.get("category_id"), str(ann.get("category_id"))), x, y, x + w, y + h,
                                  bool(ann.get("iscrowd", 0))))
    ordered = [categories[c] for c in sorted(categories)]
    return Annotations(items, names or ordered, "coco", root)


# -- SageMaker Ground Truth -------------------------------------------------------------------------
def read_groundtruth(root: Path, names: list[str] | None = None) -> Annotations:
    """An output manifest of a bounding-box labeling job: one JSON object per line."""
    files = [root] if root.is_file() else [p for p in _files(root, (".manifest", ".jsonl", ".json"))
                                           if _json_kind(p) == "groundtruth"]
    index = image_index(root if root.is_dir() else root.parent)
    items: list[Item] = []
    class_map: dict[int, str] = {}
    notes = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            ref = record.get("source-ref", "")
            label_key = next((k for k, v in record.items() if isinstance(v, dict) and "annotations" in v), None)
            if label_key is None:
                notes.append(f"{path.name} line {number}: no bounding-box annotations ({ref})")
                continue
            meta = record.get(f"{label_key}-metadata", {})
            for cid, name in (meta.get("class-map") or {}).items():
                class_map[int(cid)] = name
            label = record[label_key]
            size = (label.get("image_size") or [{}])[0]
            boxes = [Box(str(a["class_id"]), a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"])
                     for a in label.get("annotations", [])]
            name = ref.split("/", 3)[-1] if ref.startswith("s3://") else ref
            items.append(Item(name, find_image(index, name), size.get("width"), size.get("height"), boxes,
                              _split_of(path, root) if root.is_dir() else None))
    for item in items:
        for box in item.boxes:
            box.label = class_map.get(int(box.label), box.label)
    ordered = names or [class_map[c] for c in sorted(class_map)]
    return Annotations(items, ordered, "groundtruth", root, notes)


# -- the seed's CSV ---------------------------------------------------------------------------------
def read_csv(root: Path, names: list[str] | None = None) -> Annotations:
    files = [root] if root.is_file() else _files(root, (".csv",))
    index = image_index(root if root.is_dir() else root.parent)
    by_name: dict[tuple[str, str | None], Item] = {}
    seen: dict[str, None] = dict.fromkeys(names or [])
    for path in files:
        split = _split_of(path, root) if root.is_dir() else None
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if [f.strip().lower() for f in reader.fieldnames or []][:8] != CSV_HEADER:
                continue
            for row in reader:
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                key = (row["filename"], split)
                item = by_name.get(key)
                if item is None:
                    item = Item(row["filename"], find_image(index, row["filename"]),
                                int(float(row["width"] or 0)) or None, int(float(row["height"] or 0)) or None, [], split)
                    by_name[key] = item
                if row["class"]:
                    item.boxes.append(Box(row["class"], float(row["xmin"]), float(row["ymin"]),
                                          float(row["xmax"]), float(row["ymax"])))
                    if names is None:
                        seen.setdefault(row["class"])
    return Annotations(list(by_name.values()), list(seen), "csv", root)


READERS = {"yolo": read_yolo, "voc": read_voc, "coco": read_coco, "groundtruth": read_groundtruth, "csv": read_csv}


def read(root: str | Path, fmt: str = "auto", *, names: list[str] | None = None) -> Annotations:
    """Read a dataset in any supported format (``fmt="auto"`` detects it)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist")
    fmt = detect(root) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise UserError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    if names is None and root.is_dir() and fmt in ("voc", "csv"):  # no class list in the format itself
        from container.yolo.dataset import search_names

        found = search_names([root])
        names = found[0] if found else None
    try:
        ann = READERS[fmt](root, names)
        if names is None and fmt in ("voc", "csv"):
            ann.names = sorted(ann.names)  # stable ids whatever order the files come in
        return ann
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        raise UserError(f"{root}: not a valid {fmt} dataset ({type(err).__name__}: {err})") from None


__all__ = ["FORMATS", "IMG_SUFFIXES", "detect", "read"]
