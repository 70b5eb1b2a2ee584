"""Readers: YOLO trees, Pascal VOC XML, COCO JSON, Ground Truth output manifests, the seed's CSV, and the
tools' own exports (CVAT for images 1.1 XML, LabelMe JSON: see ``tools.py``).

Each returns :class:`Annotations` with pixel boxes, every image keyed by its path relative to the dataset
root (``paths.ImageIndex``). Written on the standard library (ElementTree, json, csv): the libraries we
measured (globox, ultralytics' converters) were 5x slower on VOC or covered one format each; see
docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from container.annotations.coco import read_coco
from container.annotations.detect import CSV_HEADER, FORMATS, detect, json_kind
from container.annotations.paths import (
    ImageIndex,
    dataset_root,
    folder_of,
    links_out,
    split_of,
    split_word,
    walk_files,
)
from container.annotations.tools import inside, read_cvat, read_labelme, turned_box
from container.annotations.types import MAX_CLASSES, Annotations, Box, Item, coordinate, image_size
from container.annotations.upright import upright_size
from container.annotations.yolo_tree import discover, distinct_names, label_box, label_path, search_names
from container.failure import UserError


# -- YOLO -------------------------------------------------------------------------------------------
def read_yolo(root: Path, names: list[str] | None = None) -> Annotations:
    """ultralytics' tree (``images/`` + ``labels/``), or darknet's (each ``.txt`` beside its image, as
    CVAT's "YOLO 1.1" export writes with ``obj.names``). Polygon lines give their bounding box."""
    from PIL import Image

    try:
        splits, _ = discover(root, "train")
        label_of = label_path
    except UserError:  # darknet: labels beside the images
        splits = {}
        index = ImageIndex(root)
        for rel in sorted(index.by_rel):
            splits.setdefault(split_of(root / rel, root) or "pool", []).append(root / rel)

        def label_of(image: Path) -> Path:
            return image.with_suffix(".txt")
    names = names or (search_names([root]) or ([], ""))[0]
    if not names:
        raise UserError(f"{root}: a YOLO tree needs class names (data.yaml with 'names', classes.txt or obj.names)")
    ann = Annotations([], list(names), "yolo", root)
    for split, images in splits.items():
        for image in images:
            rel = image.relative_to(root).as_posix()
            try:
                with Image.open(image) as im:
                    width, height = upright_size(im)  # labels are fractions of the image ultralytics sees
            except OSError:
                ann.items.append(Item(rel, image, None, None, [], split))
                continue
            boxes: list[Box] = []
            item = Item(rel, image, width, height, boxes, None if split == "pool" else split)
            label = label_of(image)
            if label.exists():
                for number, line in enumerate(label.read_text(encoding="utf-8-sig").splitlines(), 1):
                    fields = line.split()
                    if not fields:
                        continue
                    try:
                        cls, x1, y1, x2, y2 = label_box(fields)
                    except ValueError as err:
                        ann.note("unreadable annotation", f"{label.relative_to(root)} line {number}: {err}", item=item)
                        continue
                    name = names[cls] if 0 <= cls < len(names) else str(cls)
                    boxes.append(Box(name, x1 * width, y1 * height, x2 * width, y2 * height))
            ann.items.append(item)
    return ann


# -- Pascal VOC -------------------------------------------------------------------------------------
def _num(el: Any, tag: str) -> float:
    text = el.findtext(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return coordinate(text.strip(), f"<{tag}>", text=True)


def _voc_box(obj: Any) -> tuple[float, float, float, float]:
    """An ``<object>``'s box: its ``<bndbox>``, or the box around roLabelImg's rotated ``<robndbox>`` (centre,
    size, ``angle`` in radians). ValueError naming what is missing."""
    bb = obj.find("bndbox")
    if bb is not None:
        return _num(bb, "xmin"), _num(bb, "ymin"), _num(bb, "xmax"), _num(bb, "ymax")
    ro = obj.find("robndbox")
    if ro is None:
        raise ValueError(f"no <bndbox> (found {', '.join(f'<{c.tag}>' for c in obj) or 'nothing'}): "
                         "add <bndbox><xmin>..<ymin>..<xmax>..<ymax>, or leave the object out")
    cx, cy, w, h, angle = (_num(ro, k) for k in ("cx", "cy", "w", "h", "angle"))
    return turned_box(cx, cy, w / 2, h / 2, angle)


def _imagesets(devkits: set[Path]) -> dict[tuple[Path, str], str]:
    """The VOC devkit's splits, ``{(devkit folder, image stem): split}`` from ``<devkit>/ImageSets/Main/<split>.txt``
    (``train``, ``val``, ``test``; ``trainval`` and the per-class ``dog_train.txt`` name no split of their own).
    ``devkits``: the folders above the XMLs' folders (``VOC2012`` above ``Annotations``): a few, not a walk."""
    found: dict[tuple[Path, str], str] = {}
    for devkit in devkits:
        main = devkit / "ImageSets" / "Main"
        for lst in sorted(main.glob("*.txt")) if main.is_dir() else []:
            if split := split_word(lst.stem):
                for line in lst.read_text(encoding="utf-8-sig").splitlines():
                    if line.strip():
                        found[(devkit, line.split()[0])] = split
    return found


def read_voc(root: Path, names: list[str] | None = None) -> Annotations:
    """labelImg's and CVAT's "Pascal VOC" export: one ``<annotation>`` XML per image. ``<difficult>1``
    objects are marked (left out of training unless asked)."""
    base = dataset_root(root)
    files = [root] if root.is_file() else walk_files(root, (".xml",))
    index = ImageIndex(base)
    ann = Annotations([], [], "voc", root)
    seen: dict[str, None] = dict.fromkeys(names or [])
    splits_of: dict[Path, str | None] = {}
    imagesets = _imagesets({xml.parent.parent for xml in files})
    for xml in files:
        where = xml.relative_to(base).as_posix()
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as err:
            ann.note("unreadable annotation", f"{where}: not valid XML ({err})")
            continue
        if tree.tag != "annotation":
            continue
        filename = tree.findtext("filename") or xml.with_suffix(".jpg").name
        size = tree.find("size")
        boxes, unread = [], []
        try:
            width = image_size(size.findtext("width"), "<size><width>", text=True) or 0 if size is not None else 0
            height = image_size(size.findtext("height"), "<size><height>", text=True) or 0 if size is not None else 0
        except ValueError as err:  # the image is left out: its boxes cannot be placed without a size
            width = height = 0
            unread.append(f"{where}: {err}: write the image's size in pixels, or leave <size> out")
        for obj in tree.iter("object"):
            label = (obj.findtext("name") or "").strip()
            if not label:  # a box of no class: '' was a class of its own
                unread.append(f"{where}: an object without a <name>: give it its class name, or leave it out")
                continue
            try:
                x1, y1, x2, y2 = _voc_box(obj)
            except ValueError as err:  # the image is left out: trained without this object, it would be background
                unread.append(f"{where}: object {label!r}: {err}")
                continue
            if obj.find("bndbox") is None and width and height:
                x1, y1, x2, y2 = inside((x1, y1, x2, y2), width, height)
            boxes.append(Box(label, x1, y1, x2, y2,
                             difficult=(obj.findtext("difficult") or "0").strip() in ("1", "true")))
            if names is None:
                seen.setdefault(label)
        stem = xml.relative_to(base).with_suffix("").as_posix()  # labelImg names the XML after its image
        key, path = index.locate(filename, folder_of(xml, base), stem=stem)
        if xml.parent not in splits_of:
            splits_of[xml.parent] = split_of(xml.parent / "x", root) if root.is_dir() else None
        split = imagesets.get((xml.parent.parent, xml.stem)) or split_word(xml.stem) or splits_of[xml.parent]
        ann.items.append(item := Item(key, path, width or None, height or None, boxes, split))
        for example in unread:
            ann.note("unreadable annotation", example, item=item)
    ann.names = list(seen)
    return ann


# -- SageMaker Ground Truth -------------------------------------------------------------------------
def _latest_label(record: dict) -> str | None:
    """The line's bounding-box label attribute; of several (an adjustment job chained to the labelling job
    writes its own beside the original's), the one whose metadata is the latest, else the last."""
    keys = [k for k, v in record.items() if isinstance(v, dict) and "annotations" in v]
    metas = [record.get(f"{k}-metadata") for k in keys]  # a hand-edited line's metadata may be no object
    dates = [str(m.get("creation-date", "")) if isinstance(m, dict) else "" for m in metas]
    return max(zip(dates, range(len(keys)), keys, strict=True))[2] if keys else None


def _why(err: Exception) -> str:
    return f"nested too deeply: more than {sys.getrecursionlimit()} brackets" if isinstance(err, RecursionError) \
        else str(err)


def _class_id(value: Any, what: str, *, text: bool = False) -> int:
    """A Ground Truth class id: the index of the job's label, a whole number from 0 to ``MAX_CLASSES - 1``
    (``text``: a class map's key, a string as every JSON key is, or a hand-written manifest's ``"0"``)."""
    number = coordinate(value, what, text=text)
    if number != int(number) or not 0 <= number < MAX_CLASSES:
        raise ValueError(f"{what} must be a class index from 0 to {MAX_CLASSES - 1} (a labelling job's labels are "
                         f"numbered 0, 1, 2, ...), got {value!r}")
    return int(number)


def _gt_item(record: dict, label_key: str, key: str, image: Path | None, split: str | None,
             class_map: dict[int, str]) -> Item:
    """The image of one manifest line; ValueError (or KeyError, TypeError) for a label that is not a job's."""
    meta = record.get(f"{label_key}-metadata") or {}
    for cid, name in (meta.get("class-map") or {}).items():
        class_map[_class_id(cid, f"class-map key {cid!r}", text=True)] = str(name)
    label = record[label_key]
    size = (label.get("image_size") or [{}])[0]
    boxes = []
    for a in label.get("annotations") or []:
        left, top = coordinate(a["left"], "left"), coordinate(a["top"], "top")
        boxes.append(Box(str(_class_id(a["class_id"], "class_id", text=True)), left, top,
                         left + coordinate(a["width"], "width"), top + coordinate(a["height"], "height")))
    return Item(key, image, image_size(size.get("width"), "image_size width"),
                image_size(size.get("height"), "image_size height"), boxes, split)


def read_groundtruth(root: Path, names: list[str] | None = None) -> Annotations:
    """An output manifest of a bounding-box labeling job: one JSON object per line. A line whose labelling
    failed (``failure-reason`` in its metadata, no label) is kept as an image without labels, marked
    ``failed``: reported and left out, never taken for a background image."""
    base = dataset_root(root)
    files = [root] if root.is_file() else [p for p in walk_files(root, (".manifest", ".jsonl", ".json"))
                                           if json_kind(p) == "groundtruth"]
    index = ImageIndex(base)
    ann = Annotations([], [], "groundtruth", root)
    class_map: dict[int, str] = {}
    for path in files:
        split = split_of(path, root) if root.is_dir() else None
        with path.open(encoding="utf-8-sig") as fh:  # a byte-order mark: a manifest written on Windows
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path.relative_to(base)} line {number}"
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: brackets nested 1,000 deep
                    ann.note("unreadable annotation", f"{where}: not JSON ({_why(err)})")
                    continue
                if not isinstance(record, dict):
                    ann.note("unreadable annotation", f"{where}: a JSON {type(record).__name__}, not an object with "
                             "source-ref and a label")
                    continue
                ref = str(record.get("source-ref", ""))
                key, image = index.locate(ref)
                label_key = _latest_label(record)
                if label_key is None:
                    failure = next((v["failure-reason"] for k, v in record.items() if k.endswith("-metadata")
                                    and isinstance(v, dict) and v.get("failure-reason")), None)
                    if failure:
                        ann.items.append(Item(key, image, None, None, [], split, failed=str(failure)))
                    else:
                        ann.note("unreadable annotation", f"{where}: no bounding-box label ({ref})")
                    continue
                try:
                    ann.items.append(_gt_item(record, label_key, key, image, split, class_map))
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                    ann.items.append(item := Item(key, image, None, None, [], split))
                    reason = f"no {err}" if isinstance(err, KeyError) else str(err)
                    ann.note("unreadable annotation", f"{where}: {reason} (each annotation needs class_id, left, "
                             "top, width, height as numbers, image_size its width and height)", item=item)
    # class_id is the index of the job's label: YOLO and label-map ids keep it (a gap in the class map stays
    # a class), named by the class map, else by ``names``, else by the id itself (a hand-written manifest)
    # (ids are checked below MAX_CLASSES as they are read: the names list spans 0..the largest id)
    ids = {int(box.label) for item in ann.items for box in item.boxes} | set(class_map)

    def name_of(cid: int) -> str:
        return class_map.get(cid) or (names[cid] if names and 0 <= cid < len(names) else str(cid))

    for item in ann.items:
        for box in item.boxes:
            box.label = name_of(int(box.label))
    ann.names = (names or [name_of(c) for c in range(max(ids) + 1)]) if ids else list(names or [])
    return ann


# -- the seed's CSV ---------------------------------------------------------------------------------
def read_csv(root: Path, names: list[str] | None = None) -> Annotations:
    base = dataset_root(root)
    files = [root] if root.is_file() else walk_files(root, (".csv",))
    index = ImageIndex(base)
    by_key: dict[tuple[str, str | None], Item] = {}
    seen: dict[str, None] = dict.fromkeys(names or [])
    issues: list[tuple[str, Item | None]] = []
    for path in files:
        split = split_of(path, root) if root.is_dir() else None
        near = folder_of(path, base)
        where = path.relative_to(base).as_posix()
        try:
            _read_csv_file(path, where, split, near, index, by_key, seen, issues, names)
        except (csv.Error, UnicodeDecodeError) as err:  # a field past csv's 128 kB limit, a NUL byte, not UTF-8
            issues.append((f"{where}: not a readable CSV file ({err}): save it again as UTF-8 CSV", None))
    ann = Annotations(list(by_key.values()), list(seen), "csv", root)
    for problem, item in issues:
        ann.note("unreadable annotation", problem, item=item)
    return ann


def _read_csv_file(path: Path, where: str, split: str | None, near: str, index: ImageIndex,
                   by_key: dict[tuple[str, str | None], Item], seen: dict[str, None],
                   issues: list[tuple[str, Item | None]], names: list[str] | None) -> None:
    """One CSV file's rows into ``by_key``; a row's problem into ``issues`` (its image left out)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if [f.strip().lower() for f in reader.fieldnames or []][:8] != CSV_HEADER:
            return
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k and isinstance(v, str)}
            key, image = index.locate(row.get("filename", ""), near)
            item = by_key.get((key, split))
            try:
                width = image_size(row.get("width"), "width", text=True)
                height = image_size(row.get("height"), "height", text=True)
                corners = [coordinate(row.get(k), k, text=True) for k in ("xmin", "ymin", "xmax", "ymax")] \
                    if row.get("class") else []
                box = Box(row["class"], corners[0], corners[1], corners[2], corners[3]) if corners else None
            except ValueError as err:  # the image is left out: trained without this box, it would be background
                width = height = box = None
                problem: str | None = f"{where} line {reader.line_num}: {err}"
            else:
                problem = None
            if item is None:
                item = Item(key, image, width, height, [], split)
                by_key[(key, split)] = item
            if problem:
                issues.append((problem, item))
            elif box is not None:
                item.boxes.append(box)
                if names is None:
                    seen.setdefault(box.label)


READERS = {"yolo": read_yolo, "voc": read_voc, "coco": read_coco, "groundtruth": read_groundtruth, "csv": read_csv,
           "cvat": read_cvat, "labelme": read_labelme}
NO_CLASS_LIST = ("voc", "csv", "labelme")  # formats that name classes only on boxes: ids sorted, or a names file


def read(root: str | Path, fmt: str = "auto", *, names: list[str] | None = None,
         links_out_ok: bool = False) -> Annotations:
    """Read a dataset in any supported format (``fmt="auto"`` detects it). A link that leads out of the dataset
    folder is refused before anything is read (``links_out_ok``: a tree of links this program made itself, as a
    Processing machine does over its inputs, ``container/processing.py``)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist")
    base = dataset_root(root)
    if not links_out_ok and (links := links_out(base)):
        shown = "; ".join(links[:10]) + (f"; and {len(links) - 10} more" if len(links) > 10 else "")
        raise UserError(f"{base}: {len(links)} link(s) lead out of the dataset folder ({shown}): a dataset is "
                        "read only from its own folder. Copy those files in (or read the folder they live in), "
                        "or remove the links; nothing was read")
    if names is not None:  # --names a,,b wrote a class named '' (a,a,b: two ids for one name)
        names = distinct_names(list(names), "the class names given (--names, or the names hyperparameter)")
    fmt = detect(root) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise UserError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        if names is None and root.is_dir() and fmt in NO_CLASS_LIST:
            found = search_names([root])
            names = found[0] if found else None
        ann = READERS[fmt](root, names)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
        raise UserError(f"{root}: not a valid {fmt} dataset ({type(err).__name__}: {err})") from None
    except RecursionError:  # a data.yaml or annotation nested past what a parser follows
        raise UserError(f"{root}: a file of this {fmt} dataset is nested too deeply to read: export it again "
                        "from the labelling tool") from None
    except OSError as err:  # a file of the dataset: unreadable (permissions), a name too long, a folder for a file
        if err.filename is None:
            raise
        raise UserError(f"cannot read {err.filename} of the dataset {root}: {err.strerror}. Make it a readable "
                        "file, or remove it") from None
    if names is None and fmt in NO_CLASS_LIST:
        ann.names = sorted(ann.names)  # stable ids whatever order the files come in
    return ann


__all__ = ["FORMATS", "READERS", "detect", "read"]
