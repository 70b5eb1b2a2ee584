"""Find, check and describe a YOLO dataset in the job's channels, and write the data YAML.

Layouts accepted (``<ch>`` is a channel folder under /opt/ml/input/data)::

    train/images/*.jpg  train/labels/*.txt                 one pool: val is the val channel or a split
    train/images/{train,val}/  train/labels/{train,val}/   ultralytics' own layout (coco8, ...)
    train/{train,valid,test}/{images,labels}/              Roboflow's export
    images/{train,val}/  labels/{train,val}/               two channels, as the seed's job had them

Labels sit where ultralytics looks for them: the image path with its last ``/images/`` turned into
``/labels/`` and a ``.txt`` suffix. Class names come from the ``names`` hyperparameter, a data YAML
(cfg or train channel), or a ``classes.txt``/``names.txt``/``obj.names`` file.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from container.annotations.check import MIN_SIDE, summary_line
from container.annotations.paths import IMG_SUFFIXES
from container.annotations.types import coordinate
from container.annotations.yolo_tree import discover as _discover
from container.annotations.yolo_tree import images_under as _images_under
from container.annotations.yolo_tree import label_path, read_yaml, search_names
from container.annotations.yolo_tree import names_from_yaml as _names_from_yaml
from container.annotations.yolo_tree import splits_of_images_dir as _splits_of_images_dir
from container.contract import Environment
from container.failure import UserError

EDGE_TOLERANCE = 0.01  # boxes may overshoot the image edge by 1% (rounding in converters), no more
EXAMPLES = 3


@dataclass
class Dataset:
    names: list[str]
    train: list[Path]
    val: list[Path]
    layout: str
    val_source: str
    data_yaml: Path  # the lists and names ultralytics reads (written by resolve)
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    background_images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "format": "yolo",
            "layout": self.layout,
            "classes": self.names,
            "train_images": len(self.train),
            "val_images": len(self.val),
            "val_source": self.val_source,
            "boxes_per_class": self.boxes_per_class,
            "background_images": self.background_images,
            "skipped_images": self.skipped,
        }


def names_hyperparameter(hps: Mapping[str, Any]) -> list[str] | None:
    """The ``names`` hyperparameter as a list (it may arrive as a list or comma-separated), or None."""
    given = hps["names"]
    if not given:
        return None
    names = given if isinstance(given, list) else [n.strip() for n in str(given).split(",") if n.strip()]
    return [str(n) for n in names]


def find_names(env: Environment, hps: Mapping[str, Any], roots: list[Path]) -> tuple[list[str], str]:
    names = names_hyperparameter(hps)
    if names:
        return names, "hyperparameter names"
    cfg = env.channel("cfg")
    search = ([cfg] if cfg else []) + roots
    wanted = hps["data"]
    if wanted:
        for folder in search:
            if (folder / wanted).is_file():
                names = _names_from_yaml(read_yaml(folder / wanted), wanted)
                if names is None:
                    raise UserError(f"data YAML {wanted} has no 'names'")
                return names, f"{folder.name}/{wanted}"
        raise UserError(f"data YAML {wanted!r} (hyperparameter data) is in none of the channels cfg, "
                        + ", ".join(r.name for r in roots))
    found = search_names(search)
    if found:
        return found
    raise UserError("no class names: add a data.yaml with 'names' (train or cfg channel), a classes.txt, "
                    "or the hyperparameter names (comma-separated, in class id order)")


# -- checking ------------------------------------------------------------------------------------
def _check_image(image: Path, nc: int) -> tuple[list[tuple[str, str]], Counter, bool]:
    """Problems (kind, detail), boxes per class id, and whether it is a background image (no label file, or
    an empty one: ultralytics counts both as backgrounds)."""
    problems: list[tuple[str, str]] = []
    try:
        with Image.open(image) as im:
            size = im.size
            im.verify()
    except Exception as err:
        problems.append(("unreadable image", f"{image.name}: {type(err).__name__}"))
        return problems, Counter(), False
    if min(size) < MIN_SIDE:  # ultralytics would fail the job on it ("image size <10 pixels")
        detail = (f"{image.name}: {size[0]}x{size[1]} (YOLO needs {MIN_SIDE} px a side at least; leave it out "
                  "or upscale it)")
        return [(f"image under {MIN_SIDE} px", detail)], Counter(), False
    boxes: Counter = Counter()
    label = label_path(image)
    if not label.is_file():
        return problems, boxes, True
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [("unreadable label file", f"{label.name}: {err}")], boxes, False
    if text.startswith("\ufeff"):  # ultralytics reads the first line's class as not a number: the image dropped
        return [("label file starts with a byte-order mark",
                 f"{label.name}: save it as UTF-8 without a BOM (Notepad, PowerShell and Excel add one), or "
                 "rewrite the tree with `python -m sdk.data convert DIR --to yolo --out NEW`, which reads it")], \
            boxes, False
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label.name} line {lineno}"
        try:
            values = [coordinate(v, "field", text=True) for v in fields]  # inf and nan: no place in the image
        except ValueError:
            problems.append(("label line not numeric", f"{where}: {line.strip()[:40]!r} (each field a finite number)"))
            continue
        if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
            problems.append(("label line with wrong field count",
                             f"{where}: {len(values)} fields (want: class x_center y_center width height)"))
            continue
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < nc:
            problems.append(("class id out of range", f"{where}: class {fields[0]} (valid: 0..{nc - 1})"))
            continue
        coords = values[1:]
        if len(values) == 5:
            x, y, w, h = coords
            if w <= 0 or h <= 0:
                problems.append(("box with zero area", f"{where}: width {fields[3]} height {fields[4]}"))
                continue
            edges: tuple[float, ...] = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        else:
            edges = tuple(coords)  # a segment's polygon: every point
        if any(c < -EDGE_TOLERANCE or c > 1 + EDGE_TOLERANCE for c in (*coords, *edges)):
            problems.append(("box outside the image",
                             f"{where}: {' '.join(fields[1:5])} (coordinates are fractions of the image, 0..1)"))
            continue
        boxes[int(cls)] += 1
    return problems, boxes, not problems and not boxes


def _check_all(images: list[Path], nc: int, workers: int = 8):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: _check_image(p, nc), images))


def _report(problems: dict[str, list[str]], counts: Counter, total: int) -> str:
    parts = []
    for kind, examples in problems.items():
        parts.append(f"{kind} in {counts[kind]} image(s), e.g. " + "; ".join(examples[:EXAMPLES]))
    return f"dataset problems in {sum(counts.values())} of {total} images: " + " | ".join(parts)


def as_yolo(channel: Path, name: str, hps: Mapping[str, Any], workdir: Path, log=print,
            names: list[str] | None = None) -> Path:
    """The channel as a YOLO tree: itself when it is one, else converted from VOC, COCO, Ground Truth or CSV.

    ``names``: the classes the train channel defined, for a val channel: its boxes must use them.
    """
    from container import annotations

    fmt = hps["data_format"]
    if fmt == "auto":
        try:
            fmt = annotations.detect(channel)
        except UserError as err:
            if "more than one annotation format" in str(err):
                raise UserError(f"channel '{name}': {err}") from None
            return channel  # no annotations found: the YOLO checks below say what is missing
    if fmt == "yolo":
        try:
            _discover(channel, name)
            return channel
        except UserError:
            pass  # darknet's layout (labels beside images): rewritten as ultralytics' tree below
    out = workdir / f"{name}-as-yolo"
    shutil.rmtree(out, ignore_errors=True)
    names = names or names_hyperparameter(hps)
    strict = hps["strict_data"]
    ann, report = annotations.convert(channel, "yolo", out, fmt=fmt, names=names, verify_images=False,
                                      strict=strict, log=lambda s: None)
    summary = ann.summary()
    present = len(_images_under(channel))
    left_out = present - summary["images"]
    if left_out > 0:
        note = (f"channel '{name}': {left_out} of {present} images have no {fmt} annotation and are left out")
        if strict and left_out * 2 > present:
            raise UserError(f"{note}. Add their annotation files, or set strict_data=false to train on the "
                            f"{summary['images']} annotated images")
        log(f"WARNING {note}")
    what = "darknet-style YOLO (labels beside images)" if fmt == "yolo" else fmt
    log(f"dataset: channel '{name}' holds {what} annotations: {summary['images']} images, {summary['boxes']} boxes "
        f"{json.dumps(summary['boxes_per_class'])}; converted to YOLO in {out}")
    log(f"dataset: channel '{name}': {report.text()}")  # the words and counts `python -m sdk.data check` prints
    return out


def _mirror(image: Path, input_dir: Path, links: Path) -> Path:
    """A channel image as ultralytics should see it: a link under ``links``, its label linked beside it.

    ultralytics writes ``labels/*.cache`` (and with cache=disk, ``.npy`` files) next to the files it is
    given; given links in the scratch folder, it writes there and the channel (read-only under
    FastFile) stays as it was. Images outside the input (converted ones) are already in scratch.
    """
    try:
        rel = image.relative_to(input_dir)
    except ValueError:
        return image
    link = links / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(image)
    label = label_path(image)
    if label.is_file():
        label_link = label_path(link)
        label_link.parent.mkdir(parents=True, exist_ok=True)
        if not label_link.is_symlink():
            label_link.symlink_to(label)
    return link


def resolve(env: Environment, hps: Mapping[str, Any], workdir: Path, *, seed: int, log=print) -> Dataset:
    """Find the data, check it, split it, and write ``workdir/data.yaml`` for ultralytics.

    The steps: the train data found (converted to YOLO when it is another format), the class names, the val
    images (a channel, the data's own split, or a seeded share of train), every image and label checked, then
    the lists and data YAML written."""
    splits, layout, roots = _find_train(env, hps, workdir, log)
    names, names_source = find_names(env, hps, roots)
    if not names:
        raise UserError(f"{names_source} lists no class names")
    train = splits.get("train", []) + splits.get("pool", [])
    if not train:
        raise UserError(f"no training images found ({layout}); supported image types: "
                        + ", ".join(sorted(IMG_SUFFIXES)))
    train, val, val_source = _split_val(env, hps, workdir, log, splits, train, names, seed)
    if splits.get("test"):
        log(f"dataset: ignoring {len(splits['test'])} test images (not used in training)")
    checked = _check_images(train, val, names, hps, log)
    ds = Dataset(names=names, train=checked.train, val=checked.val, layout=layout, val_source=val_source,
                 data_yaml=workdir / "data.yaml",
                 boxes_per_class={names[i]: checked.boxes.get(i, 0) for i in range(len(names))},
                 background_images=checked.background, skipped=dict(checked.counts))
    _write_lists(ds, env.input_data_dir, workdir)
    log(f"dataset: {checked.line}")  # the words and counts `python -m sdk.data check` prints
    log(f"dataset: {layout}; classes from {names_source}; " + json.dumps(ds.summary()))
    return ds


def _find_train(env: Environment, hps: Mapping[str, Any], workdir: Path,
                log) -> tuple[dict[str, list[Path]], str, list[Path]]:
    """(images by split, the layout's name, the folders class names may be found in): a ``train`` channel (as
    YOLO), or ``images`` and ``labels`` channels. Pipe mode and no training data are user errors."""
    train_ch, images_ch, labels_ch = env.channel("train"), env.channel("images"), env.channel("labels")
    for name in ("train", "val", "images", "labels"):
        if env.channel(name) and env.input_mode(name) == "Pipe":
            raise UserError(f"channel '{name}' uses Pipe mode; this image reads files: use File or FastFile")
    if train_ch is not None:
        train_ch = as_yolo(train_ch, "train", hps, workdir, log)
        splits, layout = _discover(train_ch, "train")
        return splits, layout, [train_ch]
    if images_ch is not None and labels_ch is not None:
        return _splits_of_images_dir(images_ch), "images+labels channels", [images_ch, labels_ch]
    present = ", ".join(env.channels) or "none"
    raise UserError(f"no training data: give a 'train' channel (a YOLO tree) or both 'images' and 'labels' "
                    f"channels (channels present: {present})")


def _split_val(env: Environment, hps: Mapping[str, Any], workdir: Path, log, splits: dict[str, list[Path]],
               train: list[Path], names: list[str], seed: int) -> tuple[list[Path], list[Path], str]:
    """(train, val, where val came from): the ``val`` channel, the train data's own val split, or
    ``val_fraction`` of the train images held out (shuffled with ``seed``)."""
    val_ch = env.channel("val")
    if val_ch is not None:
        val_ch = as_yolo(val_ch, "val", hps, workdir, log, names=names)
        val_splits, _ = _discover(val_ch, "val")
        val = [p for imgs in val_splits.values() for p in imgs]
        if not val:
            raise UserError("channel 'val' holds no images")
        return train, val, "val channel"
    if splits.get("val"):
        return train, splits["val"], "val split of the train data"
    frac = hps["val_fraction"]  # 0 < frac < 1: schema.yaml
    if len(train) < 2:
        raise UserError(f"only {len(train)} training image(s): need at least 2 to hold some out for validation, "
                        "or give a 'val' channel")
    shuffled = sorted(train)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(train) - 1, max(1, round(frac * len(train))))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val]), f"{frac:.0%} of the train images (seed {seed})"


@dataclass
class _Checked:
    """What checking every image and label found: the images kept, and the counts the summary reports."""

    train: list[Path]
    val: list[Path]
    counts: Counter  # images with each kind of problem
    boxes: Counter  # boxes per class id
    background: int  # images without a box
    line: str  # the check's summary line, as `python -m sdk.data check` prints it


def _check_images(train: list[Path], val: list[Path], names: list[str], hps: Mapping[str, Any], log) -> _Checked:
    """Every image and label checked; with problems, a user error naming them (``strict_data``) or the images
    skipped with a warning. No box at all, or no image left in a split, is a user error."""
    log(f"dataset: checking {len(train) + len(val)} images and their labels ...")
    results = _check_all(train + val, len(names))
    problems: dict[str, list[str]] = {}
    counts: Counter = Counter()
    bad: set[Path] = set()
    boxes: Counter = Counter()
    background = 0
    for image, (found, image_boxes, is_bg) in zip(train + val, results, strict=False):
        for kind, detail in found:
            problems.setdefault(kind, []).append(detail)
        for kind in {k for k, _ in found}:
            counts[kind] += 1
        if found:
            bad.add(image)
        boxes.update(image_boxes)
        background += is_bg
    if problems:
        report = _report(problems, counts, len(train) + len(val))
        if hps["strict_data"]:
            raise UserError(report + ". Fix the data, or set strict_data=false to skip these images.")
        log(f"WARNING {report}; skipping {len(bad)} image(s) (strict_data=false)")
        train = [p for p in train if p not in bad]
        val = [p for p in val if p not in bad]
    if not sum(boxes.values()):
        example = train[0]
        raise UserError(f"no labels found: {len(train)} images but not one box. For {example.name} the label "
                        f"should be at {label_path(example)} (labels/ beside images/, same relative name, .txt)")
    if not train or not val:
        raise UserError("no usable images left in " + ("train" if not train else "val"))
    line = summary_line(len(train) + len(val) + len(bad), len(bad), background, sum(map(len, problems.values())))
    return _Checked(train, val, counts, boxes, background, line)


def _write_lists(ds: Dataset, input_dir: Path, workdir: Path) -> None:
    """``train.txt``, ``val.txt`` (channel images as links in scratch space, :func:`_mirror`) and the data YAML."""
    workdir.mkdir(parents=True, exist_ok=True)
    links = workdir / "links"
    shutil.rmtree(links, ignore_errors=True)
    for split, images in (("train", ds.train), ("val", ds.val)):
        listed = [_mirror(p, input_dir, links) for p in images]
        (workdir / f"{split}.txt").write_text("".join(f"{p}\n" for p in listed), encoding="utf-8")
    ds.data_yaml.write_text(yaml.safe_dump({
        "path": str(workdir), "train": "train.txt", "val": "val.txt",
        "nc": len(ds.names), "names": dict(enumerate(ds.names)),
    }, sort_keys=False), encoding="utf-8")
