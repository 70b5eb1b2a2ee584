"""The YOLO tree: where images and labels sit, which folders are splits, where class names come from.

Part of the annotation library (not of the YOLO image's adapter) because the reader needs it as much as
the trainer does; ``container/yolo/dataset.py`` imports it from here. Layouts (``<ch>`` a folder)::

    <ch>/images/*.jpg  <ch>/labels/*.txt                  one pool
    <ch>/images/{train,val}/  <ch>/labels/{train,val}/    ultralytics' own layout (coco8, ...)
    <ch>/{train,valid,test}/{images,labels}/              Roboflow's export

Labels sit where ultralytics looks for them: the image path with its last ``/images/`` turned into
``/labels/`` and a ``.txt`` suffix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from container.annotations.paths import is_image, split_name
from container.annotations.types import MAX_CLASSES, coordinate
from container.failure import UserError

NAME_FILES = ("classes.txt", "names.txt", "obj.names")


def label_path(image: Path) -> Path:
    """ultralytics' rule (``img2label_paths``): last ``/images/`` becomes ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def label_box(fields: list[str]) -> tuple[int, float, float, float, float]:
    """``(class, xmin, ymin, xmax, ymax)`` in fractions of the image from a label line's fields: a box
    ``cls cx cy w h``, or a polygon ``cls x1 y1 x2 y2 x3 y3 ...`` (segmentation exports), whose bounding box
    is the box, as ultralytics makes it (``segments2boxes``). ValueError for anything else."""
    values = [coordinate(v, "each field", text=True) for v in fields]
    cls = values[0] if values else 0.0
    if cls != int(cls) or not 0 <= cls < MAX_CLASSES:  # 1.5 was read as class 1, -1 as a class named "-1"
        raise ValueError(f"the class must be a class index from 0 to {MAX_CLASSES - 1}, got {fields[0][:40]!r}")
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return int(cls), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if len(values) >= 7 and len(values) % 2 == 1:
        xs, ys = values[1::2], values[2::2]
        return int(cls), min(xs), min(ys), max(xs), max(ys)
    raise ValueError(f"{len(values)} fields (want: class x_center y_center width height, "
                     "or class x1 y1 x2 y2 x3 y3 ...)")


def images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image(p.name) and p.is_file())


def splits_of_images_dir(images_dir: Path) -> dict[str, list[Path]]:
    """``images/{train,val}`` subfolders if there are any, else everything as one pool."""
    subdirs = {split: p for p in sorted(images_dir.iterdir()) if p.is_dir() and (split := split_name(p.name))}
    if subdirs:
        return {split: images_under(folder) for split, folder in subdirs.items()}
    return {"pool": images_under(images_dir)}


def discover(root: Path, channel: str) -> tuple[dict[str, list[Path]], str]:
    """The images of a YOLO tree by split (``pool`` when unsplit) and a description of the layout."""
    if (root / "images").is_dir():
        splits = splits_of_images_dir(root / "images")
        return splits, f"{channel}: " + ("images/" if "pool" in splits else "images/{" + ",".join(sorted(splits)) + "}")
    roboflow = {split: p / "images" for p in sorted(root.iterdir())
                if p.is_dir() and (split := split_name(p.name)) and (p / "images").is_dir()}
    if roboflow:
        return {s: images_under(d) for s, d in roboflow.items()}, f"{channel}: {{{','.join(sorted(roboflow))}}}/images"
    loose = images_under(root)
    hint = (f" It holds {len(loose)} images but no images/ folder: put images in images/ and their .txt labels"
            " in labels/ (the same relative names)." if loose else " It holds no images.")
    raise UserError(f"channel '{channel}' is not a YOLO dataset.{hint}")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path.parent.name}/{path.name} is not UTF-8 text ({err.reason} at byte {err.start}): "
                        "save it as UTF-8") from err
    except yaml.YAMLError as err:
        raise UserError(f"{path.name} is not valid YAML: {str(err).splitlines()[0]}") from err
    except RecursionError:  # brackets nested past what the parser follows
        raise UserError(f"{path.name} is not valid YAML: nested too deeply") from None


def names_from_yaml(data: Any, source: str) -> list[str] | None:
    if not isinstance(data, dict) or "names" not in data:
        return None
    names = data["names"]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except ValueError as err:
            raise UserError(f"{source}: 'names' keys must be class ids 0..n-1") from err
        if ids != list(range(len(ids))):
            raise UserError(f"{source}: 'names' ids must be 0..{len(ids) - 1} without gaps, found {ids}")
        return distinct_names([names[k] if k in names else names[str(k)] for k in ids], source)
    if isinstance(names, list) and names:
        return distinct_names(names, source)
    raise UserError(f"{source}: 'names' must be a list or an id: name mapping")


def distinct_names(names: list[Any], source: str) -> list[str]:
    """Class names as text, each a name and each once: two classes named alike become one in every format that
    labels boxes by name (COCO, VOC, CSV, Ground Truth), and an empty (or YAML ``~``) name names nothing."""
    texts = ["" if n is None else str(n) for n in names]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise UserError(f"{source}: class id(s) {', '.join(map(str, empty[:10]))} have no name: give every class "
                        "a name in 'names'")
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text in seen:
            raise UserError(f"{source}: classes {seen[text]} and {i} are both named {text[:60]!r}: give each class "
                            "its own name in 'names' (a conversion would merge them)")
        seen[text] = i
    return texts


def search_names(search: list[Path]) -> tuple[list[str], str] | None:
    """Class names from the one data YAML with ``names`` in these folders, else a classes.txt / names file."""
    for folder in search:
        candidates = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        found = [(p, n) for p in candidates if (n := names_from_yaml(read_yaml(p), p.name))]
        if len(found) > 1:
            raise UserError(f"channel '{folder.name}' has several data YAMLs with names "
                            f"({', '.join(p.name for p, _ in found)}): pick one with the hyperparameter data")
        if found:
            return found[0][1], f"{folder.name}/{found[0][0].name}"
    for folder in search:
        for sub in (folder, folder / "labels"):
            for fname in NAME_FILES:
                if (sub / fname).is_file():
                    lines = (sub / fname).read_text(encoding="utf-8-sig").splitlines()
                    return [ln.strip() for ln in lines if ln.strip()], f"{folder.name}/{fname}"
    return None
