"""What annotation tools export besides VOC and YOLO: CVAT for images 1.1 XML, LabelMe JSON.

CVAT for images 1.1 (CVAT's own format, ``<annotations><version>1.1</version><meta>..<image ..>``): one
XML for the whole task, read with ``iterparse`` so a big task streams; ``<box>`` elements (a ``rotation``
gives the box around the turned rectangle), and the bounding box of ``<polygon>``, ``<polyline>``,
``<points>``, ``<ellipse>``, ``<cuboid>`` and ``<mask>`` (its ``left top width height``) shapes; labels from
``<meta>`` (in CVAT's order; a skeleton's points are not labels of their own); an image's ``subset``
(Train/Validation/Test) is its split. A skeleton, or a single point, is no object's extent: warned, not read.

LabelMe: one JSON per image (``shapes`` with ``points``, ``imagePath``, ``imageWidth``/``imageHeight``);
rectangles, polygons and the rest give their bounding box, a circle its centre plus radius; a point, or a
straight line without area, is no box: warned, not read.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from container.annotations.detect import json_kind, xml_root_tag
from container.annotations.paths import ImageIndex, dataset_root, folder_of, split_of, split_word, walk_files
from container.annotations.types import Annotations, Box, Item, coordinate, image_size

SHAPES = ("box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask")
NOT_BOXES = ("skeleton",)  # keypoints: no object's extent (CVAT's detection exports leave them out too)
LINES = ("points", "polyline", "point", "line", "linestrip")  # CVAT's and LabelMe's: a box only with an area
NO_BOX = "shape that is no box not read"
EMBEDDED = "image only inside its LabelMe file"  # a missing image: the problem says so, this says where it is


def _cvat_box(el: ET.Element) -> tuple[float, float, float, float]:
    a = el.attrib
    turn = math.radians(_num(a.get("rotation") or 0, "rotation"))  # degrees about the centre (CVAT 2.x)
    cos, sin = abs(math.cos(turn)), abs(math.sin(turn))
    if el.tag == "box":
        x1, y1, x2, y2 = (_num(a[k], k) for k in ("xtl", "ytl", "xbr", "ybr"))
        if not sin:
            return x1, y1, x2, y2
        return turned_box((x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2, turn)
    if el.tag == "ellipse":
        cx, cy, rx, ry = (_num(a[k], k) for k in ("cx", "cy", "rx", "ry"))
        return _around(cx, cy, math.hypot(rx * cos, ry * sin), math.hypot(rx * sin, ry * cos))
    if el.tag == "mask":  # the mask's pixel rectangle: width = right - left + 1 pixels (CVAT's exporter)
        left, top = _num(a["left"], "left"), _num(a["top"], "top")
        return left, top, left + _num(a["width"], "width"), top + _num(a["height"], "height")
    if el.tag == "cuboid":  # xtl1 ytl1 ... xbr2 ybr2: the eight corners of the two faces
        xs = [_num(v, k) for k, v in a.items() if len(k) == 4 and k[0] == "x" and k[3] in "12"]
        ys = [_num(v, k) for k, v in a.items() if len(k) == 4 and k[0] == "y" and k[3] in "12"]
        if len(xs) != 8 or len(ys) != 8:
            raise ValueError(f"a cuboid has 8 corners, found {len(xs)} x and {len(ys)} y")
        return min(xs), min(ys), max(xs), max(ys)
    points = [tuple(_num(v, "points") for v in p.split(",")) for p in a["points"].split(";") if p.strip()]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _num(value: str | float, what: str) -> float:
    return coordinate(value.strip() if isinstance(value, str) else value, what, text=True)


def _around(cx: float, cy: float, half_width: float, half_height: float) -> tuple[float, float, float, float]:
    return cx - half_width, cy - half_height, cx + half_width, cy + half_height


def turned_box(cx: float, cy: float, half_width: float, half_height: float,
               radians: float) -> tuple[float, float, float, float]:
    """The upright box around a rectangle turned by ``radians`` about its centre (CVAT's rotated boxes,
    roLabelImg's ``<robndbox>``)."""
    cos, sin = abs(math.cos(radians)), abs(math.sin(radians))
    return _around(cx, cy, half_width * cos + half_height * sin, half_width * sin + half_height * cos)


def inside(box: tuple[float, float, float, float], width: float, height: float) -> tuple[float, float, float, float]:
    """``box`` cut at the edges of a ``width`` x ``height`` image: the box around a turned shape may reach past
    them, the object does not."""
    x1, y1, x2, y2 = box
    return max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)


def read_cvat(root: Path, names: list[str] | None = None) -> Annotations:
    base = dataset_root(root)
    files = [root] if root.is_file() else [p for p in walk_files(root, (".xml",)) if xml_root_tag(p) == "annotations"]
    index = ImageIndex(base)
    ann = Annotations([], [], "cvat", root)
    labels: dict[str, None] = {}
    for path in files:
        near = folder_of(path, base)
        file_split = split_of(path, base) if root.is_dir() else None
        where = path.relative_to(base).as_posix()
        stack: list[str] = []
        try:
            for event, el in ET.iterparse(path, events=("start", "end")):
                if event == "start":
                    stack.append(el.tag)
                    continue
                stack.pop()
                if el.tag == "label" and "meta" in stack and el.findtext("name") and el.find("parent") is None:
                    labels.setdefault(el.findtext("name").strip())
                elif el.tag == "image" and stack == ["annotations"]:
                    a = el.attrib
                    key, found = index.locate(a.get("name", ""), near)
                    try:
                        size = (image_size(a.get("width"), "width", text=True),
                                image_size(a.get("height"), "height", text=True))
                        problem = ""
                    except ValueError as err:  # the image is left out: its boxes cannot be placed without a size
                        size, problem = (None, None), f"{where}: image {a.get('name')}: {err}"
                    width, height = size[0] or math.inf, size[1] or math.inf
                    boxes, unread = [], []
                    for shape in el:
                        label = shape.get("label", "")
                        if shape.tag in NOT_BOXES:
                            ann.note(NO_BOX, f"{where}: image {a.get('name')}: <{shape.tag}> {label!r}", warning=True)
                        if shape.tag not in SHAPES:
                            continue
                        if not label.strip():  # a class named '' otherwise
                            unread.append(f"{where}: image {a.get('name')}: <{shape.tag}> has no label")
                            continue
                        try:
                            x1, y1, x2, y2 = _cvat_box(shape)
                        except (KeyError, ValueError, IndexError) as err:
                            # the image is left out, as for VOC: trained without this object, it would be background
                            unread.append(f"{where}: image {a.get('name')}: <{shape.tag}> {err}")
                            continue
                        if shape.tag in LINES and (x2 <= x1 or y2 <= y1):
                            ann.note(NO_BOX, f"{where}: image {a.get('name')}: <{shape.tag}> {label!r} has no area "
                                     f"({shape.get('points')})", warning=True)
                            continue
                        if shape.get("rotation"):
                            x1, y1, x2, y2 = inside((x1, y1, x2, y2), width, height)
                        boxes.append(Box(label, x1, y1, x2, y2))
                        labels.setdefault(label)
                    split = split_word(a.get("subset", "")) or file_split
                    ann.items.append(item := Item(key, found, size[0], size[1], boxes, split))
                    for example in ([problem] if problem else []) + unread:
                        ann.note("unreadable annotation", example, item=item)
                    el.clear()  # a task of 100k images streams through
                elif el.tag == "track" and stack == ["annotations"]:
                    ann.note("video track (CVAT for video) not read", f"{where}: track {el.get('id')} "
                             f"{el.get('label')!r}: export the task as CVAT for images 1.1", warning=True)
                    el.clear()
        except ET.ParseError as err:
            ann.note("unreadable annotation", f"{where}: not valid XML ({err})")
    ann.names = names or list(labels)
    return ann


def _labelme_box(shape: dict) -> tuple[float, float, float, float]:
    points = [(coordinate(x, "a point's x"), coordinate(y, "a point's y")) for x, y in shape["points"]]
    if shape.get("shape_type") == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def read_labelme(root: Path, names: list[str] | None = None) -> Annotations:
    base = dataset_root(root)
    files = [root] if root.is_file() else [p for p in walk_files(root, (".json",)) if json_kind(p) == "labelme"]
    index = ImageIndex(base)
    ann = Annotations([], [], "labelme", root)
    seen: dict[str, None] = dict.fromkeys(names or [])
    for path in files:
        where = path.relative_to(base).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            ann.note("unreadable annotation", f"{where}: not JSON ({why})")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("shapes") or [], list):
            ann.note("unreadable annotation", f"{where}: not a LabelMe file (a JSON object with shapes)")
            continue
        image_path = data.get("imagePath") or path.with_suffix(".jpg").name
        if not isinstance(image_path, str):  # a number or a list: an AttributeError traceback before
            ann.note("unreadable annotation", f"{where}: imagePath must be the image's file name (a string), got "
                     f"{image_path!r:.40}")
            continue
        stem = path.relative_to(base).with_suffix("").as_posix()  # LabelMe names the JSON after its image
        key, found = index.locate(image_path, folder_of(path, base), stem=stem)
        if found is None and data.get("imageData") and len(index):
            ann.note(EMBEDDED, f"{where}: {image_path} is not there, only inside the JSON (imageData): write it "
                     "beside the JSON (labelme_export_json, formerly labelme_json_to_dataset, writes it as img.png)",
                     warning=True)
        boxes, unread = [], []
        for number, shape in enumerate(data.get("shapes") or [], 1):
            if not isinstance(shape, dict):
                unread.append(f"{where}: shape {number} is {shape!r:.40}, not an object")
                continue
            label = shape.get("label")
            if not isinstance(label, str) or not label.strip():  # None was a class named 'None', '' a class too
                unread.append(f"{where}: shape {number} has no label ({label!r:.40}): give it its class name")
                continue
            try:
                x1, y1, x2, y2 = _labelme_box(shape)
            except (KeyError, ValueError, TypeError) as err:  # the image is left out, as for VOC
                unread.append(f"{where}: shape {number}: {type(err).__name__} {err}")
                continue
            if shape.get("shape_type") in LINES and (x2 <= x1 or y2 <= y1):
                ann.note(NO_BOX, f"{where}: shape {number} ({shape.get('shape_type')} {label!r}) has no area",
                         warning=True)
                continue
            boxes.append(Box(label, x1, y1, x2, y2))
            if names is None:
                seen.setdefault(label)
        try:
            width, height = image_size(data.get("imageWidth"), "imageWidth"), image_size(data.get("imageHeight"),
                                                                                         "imageHeight")
        except ValueError as err:
            width = height = None
            unread.append(f"{where}: {err}")
        split = split_of(path, base) if root.is_dir() else None
        ann.items.append(item := Item(key, found, width, height, boxes, split))
        for example in unread:
            ann.note("unreadable annotation", example, item=item)
    ann.names = list(seen)
    return ann
