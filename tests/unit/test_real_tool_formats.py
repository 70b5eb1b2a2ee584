"""Annotation files the way the tools write them (Roboflow, CVAT, LabelMe, labelImg, Ground Truth, darknet,
camera photos with an EXIF orientation), each read by our library and by an independent reading (ultralytics'
own functions where it has one, else the arithmetic written out here), box by box."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from container.annotations import check, convert, detect, read
from container.annotations.tfrecord import decode_example, read_records


def quiet(_: str) -> None:
    pass


def image(path: Path, width: int = 100, height: int = 50, *, fmt: str | None = None, orientation: int = 0) -> Path:
    """An image, each path its own colour (no two are duplicates), with a black block at its stored top-left so
    a turned copy is told apart; ``orientation``: the EXIF Orientation tag a camera writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (width, height), tuple(hashlib.sha1(str(path).encode()).digest()[:3]))
    im.paste((0, 0, 0), (0, 0, width // 4, height // 4))
    extra = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    im.save(path, format=fmt, **extra)
    return path


def boxes_of(ann) -> dict[str, list[tuple]]:
    return {i.name: [(b.label, *(round(v, 3) for v in (b.xmin, b.ymin, b.xmax, b.ymax))) for b in i.boxes]
            for i in ann.items}


def yolo_lines(path: Path) -> list[list[float]]:
    return [[round(float(v), 4) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


# -- camera photos: EXIF orientation ----------------------------------------------------------------
def test_exif_turned_photos_are_sized_and_written_upright_as_ultralytics_sees_them(tmp_path):
    """A phone photo stored 100x50 with Orientation 6 is shown (and trained by ultralytics) 50x100: YOLO labels
    are fractions of that, COCO boxes are its pixels, and the TFRecord's image (TensorFlow ignores EXIF) is
    stored upright so its boxes fall where ultralytics' do."""
    from ultralytics.data.utils import exif_size

    root = tmp_path / "phone"
    photo = image(root / "images" / "train" / "a.jpg", 100, 50, orientation=6)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.25 0.4 0.1\n")
    (root / "data.yaml").write_text("path: /datasets/phone\ntrain: images/train\nval: images/train\nnames:\n  0: cat\n")
    with Image.open(photo) as im:
        width, height = exif_size(im)
    assert (width, height) == (50, 100)
    ann = read(root)
    assert (ann.items[0].width, ann.items[0].height) == (width, height)
    expected = [0.5 * width - 0.2 * width, 0.25 * height - 0.05 * height, 0.4 * width, 0.1 * height]  # x y w h
    assert check(ann).ok

    convert(root, "coco", tmp_path / "coco", log=quiet)
    coco = json.loads((tmp_path / "coco" / "train.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (width, height)
    assert coco["annotations"][0]["bbox"] == pytest.approx(expected)
    convert(root, "yolo", tmp_path / "yolo", log=quiet)
    assert yolo_lines(tmp_path / "yolo" / "labels" / "train" / "a.txt") == [[0, 0.5, 0.25, 0.4, 0.1]]

    convert(root, "tfrecord", tmp_path / "records", log=quiet)
    (record,) = [decode_example(r) for p in (tmp_path / "records").glob("train-*") for r in read_records(p)]
    stored = Image.open(io.BytesIO(record["image/encoded"][0]))
    assert stored.size == (record["image/width"][0], record["image/height"][0]) == (width, height)
    assert stored.getexif().get(0x0112, 1) == 1  # nothing left for a reader that does apply EXIF to turn again
    with Image.open(photo) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    assert max(abs(a - b) for a, b in zip(stored.convert("RGB").getpixel((40, 5)), upright.getpixel((40, 5)),
                                           strict=True)) < 8  # the black block: top-right once turned
    assert record["image/object/bbox/xmin"][0] == pytest.approx(expected[0] / width)


def test_a_box_drawn_on_the_stored_orientation_is_named(tmp_path):
    """labelImg ignores EXIF: its <size> is the stored 100x50 of a photo every trainer turns to 50x100. Its boxes
    would land beside the objects: the check says why and how to fix it, and the image is left out."""
    root = tmp_path / "labelimg"
    image(root / "a.jpg", 100, 50, orientation=6)
    (root / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>100</width><height>50</height>"
                                "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>60</xmin><ymin>5</ymin>"
                                "<xmax>90</xmax><ymax>20</ymax></bndbox></object></annotation>")
    report = check(read(root))
    (example,) = report.problems["size differs from the annotation"].examples
    assert "EXIF orientation 6" in example and "50x100" in example and len(report.left_out) == 1
    labelme = tmp_path / "labelme"  # LabelMe turns the photo before drawing: its size is the upright one
    image(labelme / "a.jpg", 100, 50, orientation=6)
    (labelme / "a.json").write_text(json.dumps({"version": "5.4.1", "flags": {}, "imagePath": "a.jpg",
                                                "imageData": None, "imageWidth": 50, "imageHeight": 100,
                                                "shapes": [{"label": "cat", "points": [[5, 60], [20, 90]],
                                                            "shape_type": "rectangle", "flags": {}}]}))
    assert check(read(labelme)).ok
