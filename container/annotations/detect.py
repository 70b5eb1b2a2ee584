"""Which annotation format a folder (or file) holds, judged from paths relative to the dataset root."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from container.annotations.paths import IMG_SUFFIXES
from container.failure import UserError

FORMATS = ("yolo", "voc", "coco", "groundtruth", "csv", "cvat", "labelme")
CSV_HEADER = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
HEAD = 1 << 16  # bytes read to sniff a JSON file: COCO's "images" may follow a long "info"/"licenses"
SUFFIXES = (".xml", ".json", ".manifest", ".jsonl", ".csv", ".txt")


def xml_root_tag(path: Path) -> str | None:
    """The root element's tag, from the first bytes only (a VOC file or a 2 GB CVAT export alike)."""
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag
    except (ET.ParseError, OSError):
        return None
    return None


def json_kind(path: Path) -> str | None:
    """groundtruth, labelme or coco from the head of a JSON file; None for any other JSON."""
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD)
    except OSError:
        return None
    if b'"source-ref"' in head:
        return "groundtruth"
    if path.suffix.lower() != ".json":
        return None
    if b'"shapes"' in head and (b'"imagePath"' in head or b'"imageWidth"' in head or b'"flags"' in head):
        return "labelme"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n{").startswith(b'"imageData"'):  # LabelMe 3 (Python 2's key order): the
        return "labelme"  # image's base64 first, "shapes" maybe megabytes later
    if b'"images"' in head or b'"annotations"' in head:
        return "coco"
    if b'"categories"' in head and len(head) == HEAD:  # a big file: its images may come after the head
        return "coco"  # (a small one with categories alone is Label Studio's notes.json beside a YOLO tree)
    return None


def _kind(path: Path, rel: Path, image_stems: set[Path]) -> str | None:
    """The format one file belongs to; "xml?"/"json?" for an XML or JSON file none of ours. ``image_stems``:
    every image's path without its suffix (a darknet label is beside an image of any suffix, ``.JPG`` too)."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        tag = xml_root_tag(path)
        return {"annotation": "voc", "annotations": "cvat"}.get(tag or "", "xml?")
    if suffix in (".json", ".manifest", ".jsonl"):
        return json_kind(path) or ("json?" if suffix == ".json" else None)
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline().strip().lower().replace(" ", "").split(",")
        return "csv" if header[:8] == CSV_HEADER else None
    if suffix == ".txt" and path.name not in ("classes.txt", "names.txt") and (
            "labels" in rel.parts[:-1] or path.with_suffix("") in image_stems):
        return "yolo"  # ultralytics' labels/ tree, or darknet's label beside its image (CVAT "YOLO 1.1")
    return None


def detect(root: Path) -> str:
    """The annotation format of a folder (or file), or a UserError naming what was found."""
    root = Path(root)
    if root.is_file():
        candidates, image_stems = [(root, Path(root.name))], set()
    else:
        files = [p for p in sorted(root.rglob("*"))
                 if not any(part.startswith(".") for part in p.relative_to(root).parts)]
        candidates = [(p, p.relative_to(root)) for p in files if p.suffix.lower() in SUFFIXES and p.is_file()]
        image_stems = {p.with_suffix("") for p in files if p.suffix.lower() in IMG_SUFFIXES}
    found: dict[str, list[Path]] = {}
    for path, rel in candidates:
        kind = _kind(path, rel, image_stems)
        if kind:
            found.setdefault(kind, []).append(rel)
    unknown = {k: found.pop(k) for k in ("xml?", "json?") if k in found}
    if len(found) == 1:
        return next(iter(found))
    if not found:
        named = "".join(f" {len(v)} {k[:-1].upper()} file(s) ({', '.join(map(str, v[:3]))}) are in no format we read "
                        f"(the root element or keys are not Pascal VOC, CVAT 1.1, COCO, LabelMe or Ground Truth)."
                        for k, v in unknown.items())
        raise UserError(f"{root}: no annotations found.{named} Expected one of: a YOLO tree (labels/*.txt), Pascal "
                        "VOC *.xml, CVAT for images 1.1 XML, a COCO *.json, LabelMe *.json, a Ground Truth "
                        "output.manifest, or a CSV with header " + ",".join(CSV_HEADER))
    listing = "; ".join(f"{k}: {len(v)} file(s), e.g. {v[0]}" for k, v in sorted(found.items()))
    raise UserError(f"{root}: more than one annotation format ({listing}). Keep one format per channel, "
                    "or name it with the hyperparameter data_format")


__all__ = ["CSV_HEADER", "FORMATS", "IMG_SUFFIXES", "detect", "json_kind", "xml_root_tag"]
