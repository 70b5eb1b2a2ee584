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


# -- darknet (CVAT "YOLO 1.1"): obj.names, obj.data, train.txt, any image suffix ---------------------
def test_darknet_tree_with_uppercase_and_other_image_suffixes(tmp_path):
    root = tmp_path / "darknet"
    lines = {"a.JPG": "0 0.5 0.5 0.2 0.2\n", "b.bmp": "1 0.25 0.25 0.1 0.1\n", "c.webp": "0 0.7 0.6 0.2 0.4\n",
             "d.PNG": ""}
    for name, text in lines.items():
        fmt = {"bmp": "BMP", "webp": "WEBP", "PNG": "PNG"}.get(name.rsplit(".", 1)[1])
        image(root / "obj_train_data" / name, 100, 50, fmt=fmt)
        (root / "obj_train_data" / name).with_suffix(".txt").write_text(text)
    (root / "obj.names").write_text("cat\ndog\n")
    (root / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    (root / "train.txt").write_text("".join(f"data/obj_train_data/{n}\n" for n in lines))
    assert detect(root) == "yolo"
    names = ["cat", "dog"]
    theirs = {}  # darknet's arithmetic: centre and size in fractions of the image
    for name, text in lines.items():
        theirs[f"obj_train_data/{name}"] = [
            (names[int(c)], *(round(v, 3) for v in (float(x) * 100 - float(w) * 50, float(y) * 50 - float(h) * 25,
                                                  float(x) * 100 + float(w) * 50, float(y) * 50 + float(h) * 25)))
            for c, x, y, w, h in (line.split() for line in text.splitlines())]
    ann = read(root)
    assert boxes_of(ann) == theirs and {i.split for i in ann.items} == {"train"}
    report = check(ann)
    assert report.ok and report.without_labels == 1 and not report.warnings.keys() - {"image without labels"}


# -- Roboflow COCO: category 0 is the project, not a class --------------------------------------------
def roboflow_coco(root: Path) -> None:
    """Roboflow's "COCO JSON" export: train/valid/test folders, each an ``_annotations.coco.json`` beside its
    images; category 0 is the project (the supercategory of the real classes) and no box uses it."""
    for split in ("train", "valid", "test"):
        names = [f"img{i}_jpg.rf.{split}{i}.jpg" for i in range(2)]
        for name in names:
            image(root / split / name, 100, 50)
        (root / split / "_annotations.coco.json").write_text(json.dumps({
            "info": {"year": "2023", "version": "2", "description": "Exported from roboflow.com", "contributor": "",
                     "url": "https://public.roboflow.com/object-detection/bccd", "date_created": "2023-01-01T00:00:00"},
            "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
            "categories": [{"id": 0, "name": "cells-Ab1c", "supercategory": "none"},
                           {"id": 1, "name": "Platelets", "supercategory": "cells-Ab1c"},
                           {"id": 2, "name": "RBC", "supercategory": "cells-Ab1c"}],
            "images": [{"id": i, "license": 1, "file_name": n, "height": 50, "width": 100,
                        "date_captured": "2023-01-01T00:00:00"} for i, n in enumerate(names)],
            "annotations": [
                {"id": 0, "image_id": 0, "category_id": 2, "bbox": [10, 5, 20.5, 10], "area": 205, "segmentation": [],
                 "iscrowd": 0},
                {"id": 1, "image_id": 0, "category_id": 1, "bbox": [50, 20, 10, 10], "area": 100,
                 "segmentation": [[50, 20, 60, 20, 60, 30, 50, 30]], "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 10, 30, 30], "area": 900,
                 "segmentation": [], "iscrowd": 0}]}))


def test_roboflow_coco_project_category_is_not_a_class(tmp_path):
    """Roboflow's own YOLO export of such a project names [Platelets, RBC]; ultralytics' convert_coco numbers
    them category_id - 1. Ours agrees with both, box by box."""
    from ultralytics.data.converter import convert_coco

    root = tmp_path / "rf"
    roboflow_coco(root)
    ann = read(root)
    assert ann.names == ["Platelets", "RBC"]
    convert(root, "yolo", tmp_path / "ours", log=quiet)
    data = (tmp_path / "ours" / "data.yaml").read_text()
    assert "nc: 2" in data and "cells-Ab1c" not in data
    for split, folder in (("train", "train"), ("val", "valid")):
        their_json = tmp_path / f"theirs-{split}" / "json"
        their_json.mkdir(parents=True)
        shutil.copy(root / folder / "_annotations.coco.json", their_json / "instances.json")
        convert_coco(labels_dir=str(their_json), save_dir=str(tmp_path / f"theirs-{split}" / "out"), cls91to80=False)
        theirs = sorted((tmp_path / f"theirs-{split}" / "out" / "labels" / "instances").glob("*.txt"))
        assert len(theirs) == 2
        for label in theirs:
            assert yolo_lines(tmp_path / "ours" / "labels" / split / label.name) == yolo_lines(label)
    _, report = convert(root, "coco", tmp_path / "coco", log=quiet)
    assert report.ok
    coco = json.loads((tmp_path / "coco" / "val.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["Platelets", "RBC"]


def test_a_used_category_zero_stays_a_class(tmp_path):
    """Only Roboflow's project category goes: a category 0 some box uses, or one no other names as its
    supercategory, is a class like any other (ids must not shift between runs); so is COCO's "person",
    its own supercategory, on no box."""
    root = tmp_path / "zero"
    image(root / "a.jpg")
    (root / "train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "categories": [{"id": 0, "name": "thing", "supercategory": "none"}, {"id": 1, "name": "cat"},
                       {"id": 2, "name": "unused", "supercategory": "animal"},
                       {"id": 3, "name": "person", "supercategory": "person"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0}]}))
    assert read(root).names == ["thing", "cat", "unused", "person"]
    (root / "train.json").write_text((root / "train.json").read_text().replace('"id": 0, "name": "thing"',
                                                                               '"id": 0, "name": "animal"'))
    assert read(root).names == ["cat", "unused", "person"]  # 0 is now the supercategory of another: a project


# -- CVAT for images 1.1: rotated boxes, masks, cuboids, skeletons, single points -------------------
CVAT_PROJECT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <project><id>3</id><name>street</name>
      <labels>
        <label><name>car</name><color>#fa3253</color><type>any</type><attributes><attribute><name>color</name>
          <mutable>False</mutable><input_type>select</input_type><default_value>red</default_value>
          <values>red
blue</values></attribute></attributes></label>
        <label><name>person</name><color>#33ddff</color><type>skeleton</type><attributes/><svg>&lt;line/&gt;</svg></label>
        <label><name>nose</name><color>#aaaaaa</color><type>points</type><attributes/><parent>person</parent></label>
        <label><name>puddle</name><color>#bbbbbb</color><type>mask</type><attributes/></label>
      </labels>
      <subsets>Train
Validation</subsets>
    </project>
    <dumped>2024-05-01 10:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="sub/a.jpg" subset="Train" task_id="7" width="200" height="100">
    <box label="car" source="manual" occluded="1" xtl="10.00" ytl="20.00" xbr="50.00" ybr="40.00" z_order="0">
      <attribute name="color">red</attribute>
    </box>
    <box label="car" source="manual" occluded="0" xtl="100.00" ytl="40.00" xbr="140.00" ybr="60.00"
         rotation="30.00" z_order="1">
    </box>
    <box label="car" source="manual" occluded="0" xtl="180.00" ytl="80.00" xbr="200.00" ybr="100.00"
         rotation="45.00" z_order="1">
    </box>
    <ellipse label="car" source="manual" occluded="0" cx="60.00" cy="70.00" rx="20.00" ry="10.00"
             rotation="90.00" z_order="0">
    </ellipse>
    <mask label="puddle" source="manual" occluded="0" rle="3, 4, 5, 2, 50" left="20" top="30" width="11"
          height="6" z_order="0">
    </mask>
    <cuboid label="car" source="manual" occluded="0" xtl1="10.00" ytl1="10.00" xbl1="10.00" ybl1="30.00"
            xtr1="30.00" ytr1="10.00" xbr1="30.00" ybr1="30.00" xtl2="40.00" ytl2="5.00" xbl2="40.00"
            ybl2="25.00" xtr2="60.00" ytr2="5.00" xbr2="60.00" ybr2="25.00" z_order="0">
    </cuboid>
    <skeleton label="person" source="manual" z_order="0">
      <points label="nose" source="manual" outside="0" occluded="0" points="150.00,50.00">
      </points>
    </skeleton>
    <tag label="car" source="manual">
    </tag>
  </image>
  <image id="1" name="b.PNG" subset="Validation" task_id="7" width="200" height="100">
    <points label="car" source="manual" occluded="0" points="30.00,30.00" z_order="0">
    </points>
    <polygon label="car" source="manual" occluded="0" points="10.00,10.00;40.00,15.00;20.00,60.00" z_order="0">
    </polygon>
  </image>
</annotations>
"""


def rotated_box(x1: float, y1: float, x2: float, y2: float, degrees: float) -> tuple[float, ...]:
    """The axis-aligned box around a rectangle turned about its centre (the corners, turned one by one)."""
    cx, cy, a = (x1 + x2) / 2, (y1 + y2) / 2, math.radians(degrees)
    xs, ys = [], []
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
        xs.append(cx + (x - cx) * math.cos(a) - (y - cy) * math.sin(a))
        ys.append(cy + (x - cx) * math.sin(a) + (y - cy) * math.cos(a))
    return min(xs), min(ys), max(xs), max(ys)


def test_cvat_rotated_boxes_masks_cuboids_and_keypoints(tmp_path):
    """CVAT 2.x writes ``rotation`` on boxes and ellipses, ``<mask>`` with its pixel rectangle (left, top,
    width, height), ``<cuboid>`` corners, ``<skeleton>`` keypoints and single ``<points>``. A rotated box is
    the box around its turned corners; a mask its rectangle; a cuboid the box around its eight corners; a
    keypoint is no object's extent: warned, not a zero-area box that would leave the image out. A turned box in
    a corner reaches past the image: its box is cut at the image's edges (the object is in the image)."""
    root = tmp_path / "cvat"
    image(root / "images" / "sub" / "a.jpg", 200, 100)
    image(root / "images" / "b.PNG", 200, 100, fmt="PNG")
    (root / "annotations.xml").write_text(CVAT_PROJECT)
    ann = read(root)
    assert ann.names == ["car", "person", "puddle"]  # "nose" is a point of the person skeleton, not a class
    r = [round(v, 3) for v in rotated_box(100, 40, 140, 60, 30)]
    e = [round(v, 3) for v in rotated_box(40, 60, 80, 80, 90)]  # an ellipse's box turned a quarter: exact
    x1, y1, _, _ = rotated_box(180, 80, 200, 100, 45)
    corner = (round(x1, 3), round(y1, 3), 200, 100)
    assert boxes_of(ann) == {
        "images/sub/a.jpg": [("car", 10, 20, 50, 40), ("car", *r), ("car", *corner), ("car", *e),
                             ("puddle", 20, 30, 31, 36),
                             ("car", 10, 5, 60, 30)],
        "images/b.PNG": [("car", 10, 10, 40, 60)]}
    report = check(ann)
    assert report.ok and not report.left_out
    assert set(report.warnings) == {"shape that is no box not read"}
    assert report.warnings["shape that is no box not read"].count == 2
    assert "skeleton" in " ".join(report.warnings["shape that is no box not read"].examples)


# -- LabelMe: points and lines, Windows paths, files written by LabelMe 3 -----------------------------
def jpeg_base64(width: int = 100, height: int = 50) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (9, 99, 199)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def test_labelme_points_lines_and_windows_paths(tmp_path):
    """LabelMe 5 beside a folder of images (``imagePath`` ``..\\\\images\\\\a.jpg``, written on Windows, the image
    embedded too): a rectangle's two corners in any order, a polygon's box, a circle's centre and rim; a point,
    or a line, is no box: warned and not read, never a zero-area box that leaves the image out."""
    root = tmp_path / "labelme"
    image(root / "images" / "a.jpg", 100, 50)
    (root / "annotations").mkdir(parents=True)
    shapes = [{"label": "cat", "points": [[30, 20], [10, 5]], "group_id": None, "description": "",
               "shape_type": "rectangle", "flags": {}},
              {"label": "eye", "points": [[15, 10]], "group_id": None, "shape_type": "point", "flags": {}},
              {"label": "dog", "points": [[50, 10], [70, 15], [60, 40]], "shape_type": "polygon", "flags": {}},
              {"label": "tail", "points": [[80, 10], [90, 10]], "shape_type": "line", "flags": {}},
              {"label": "ball", "points": [[80, 30], [83, 34]], "shape_type": "circle", "flags": {}}]
    (root / "annotations" / "a.json").write_text(json.dumps({
        "version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": "..\\images\\a.jpg",
        "imageData": jpeg_base64(), "imageHeight": 50, "imageWidth": 100}, indent=2))
    ann = read(root)
    assert ann.names == ["ball", "cat", "dog"]
    theirs = []  # labelme's own geometry: a rectangle is its two corners, a circle centre + |rim - centre|
    for s in shapes:
        x1, y1 = s["points"][0]
        if s["shape_type"] == "circle":
            r = math.dist(s["points"][0], s["points"][1])
            theirs.append((s["label"], x1 - r, y1 - r, x1 + r, y1 + r))
        elif s["shape_type"] in ("rectangle", "polygon"):
            xs, ys = [p[0] for p in s["points"]], [p[1] for p in s["points"]]
            theirs.append((s["label"], min(xs), min(ys), max(xs), max(ys)))
    assert boxes_of(ann) == {"images/a.jpg": [(n, *(round(v, 3) for v in b)) for n, *b in theirs]}
    report = check(ann)
    assert report.ok and not report.left_out
    assert report.warnings["shape that is no box not read"].count == 2
    (root / "annotations" / "b.json").write_text(json.dumps({  # the image only inside the JSON: missing, and why
        "version": "5.2.1", "flags": {}, "shapes": shapes[:1], "imagePath": "b.jpg", "imageData": jpeg_base64(),
        "imageHeight": 50, "imageWidth": 100}))
    report = check(read(root))
    assert report.problems["missing image"].examples == ["b.jpg"] and len(report.left_out) == 1
    (hint,) = report.warnings["image only inside its LabelMe file"].examples
    assert "annotations/b.json" in hint and "labelme_export_json" in hint
    image(root / "annotations" / "b.webp", 100, 50, fmt="WEBP")  # converted since: the image beside, named alike
    ann = read(root)
    assert boxes_of(ann)["annotations/b.webp"] == [("cat", 10, 5, 30, 20)] and check(ann).ok


def test_labelme_3_files_with_the_image_first_are_labelme(tmp_path):
    """LabelMe 3 ran on Python 2, whose dicts had no order: many of its files begin with ``imageData``, a few
    hundred kB of base64 before ``shapes``. They are LabelMe files all the same, not a JSON of no format."""
    root = tmp_path / "old"
    image(root / "b.jpg", 100, 50)
    (root / "b.json").write_text(json.dumps({
        "imageData": jpeg_base64(800, 600) * 20, "imagePath": "b.jpg", "lineColor": [0, 255, 0, 128],
        "fillColor": [255, 0, 0, 128], "flags": {},
        "shapes": [{"label": "cat", "line_color": None, "fill_color": None,
                    "points": [[10, 10], [20, 10], [20, 20], [10, 20]]}]}))
    assert (root / "b.json").stat().st_size > 1 << 17
    assert detect(root) == "labelme"
    assert boxes_of(read(root)) == {"b.jpg": [("cat", 10, 10, 20, 20)]}


# -- Pascal VOC as labelImg and Roboflow write it ------------------------------------------------------
VOC_LABELIMG = """<annotation>
	<folder>train</folder>
	<filename>{filename}</filename>
	<path>C:\\Users\\me\\Pictures\\train\\{filename}</path>
	<source>
		<database>Unknown</database>
	</source>
	{size}
	<segmented>0</segmented>
	<object>
		<name>person</name>
		<pose>Unspecified</pose>
		<truncated>1</truncated>
		<occluded>0</occluded>
		<difficult>0</difficult>
		<bndbox>
			<xmin>10.5</xmin>
			<ymin>5.25</ymin>
			<xmax>40.7</xmax>
			<ymax>45.1</ymax>
		</bndbox>
		<part>
			<name>head</name>
			<bndbox><xmin>20</xmin><ymin>6</ymin><xmax>30</xmax><ymax>15</ymax></bndbox>
		</part>
	</object>
	<object>
		<name>dog</name>
		<difficult>0</difficult>
		<bndbox><xmin>50</xmin><xmax>90</xmax><ymin>20</ymin><ymax>48</ymax></bndbox>
	</object>
</annotation>
"""


def test_voc_image_named_by_the_xml_when_filename_does_not_find_it(tmp_path):
    """labelImg names the XML after the image; <filename> is what the image was called when it was labelled (a
    camera's IMG_0001.JPG renamed since), or lacks its suffix. The image beside the XML with the XML's name is
    the one; parts (<part>, a person's head) are no objects of their own; float coordinates stay floats."""
    import xml.etree.ElementTree as ET

    root = tmp_path / "voc"
    size = "<size><width>100</width><height>50</height><depth>3</depth></size>"
    cases = {"a.jpg": ("a.jpg", size), "b.webp": ("IMG_0001.JPG", size), "c.bmp": ("c", ""),
             "d.jpeg": ("d.jpeg", "<size><width>100</width><height>50</height></size>")}
    for name, (filename, sz) in cases.items():
        image(root / "train" / name, 100, 50, fmt={"webp": "WEBP", "bmp": "BMP"}.get(name.rsplit(".", 1)[1]))
        (root / "train" / name).with_suffix(".xml").write_text(VOC_LABELIMG.format(filename=filename, size=sz))
    ann = read(root)
    theirs = {}  # the objects read with ElementTree: each <object>'s own <bndbox>
    for name in cases:
        tree = ET.parse((root / "train" / name).with_suffix(".xml"))
        theirs[f"train/{name}"] = [(o.findtext("name"), *(round(float(o.find("bndbox").findtext(k)), 3)
                                                          for k in ("xmin", "ymin", "xmax", "ymax")))
                                   for o in tree.findall("object")]
    assert boxes_of(ann) == theirs
    assert ann.names == ["dog", "person"]
    report = check(ann)
    assert report.ok and not report.warnings and not report.left_out


# -- SageMaker Ground Truth: a chained adjustment job --------------------------------------------------
def gt_label(boxes: list[tuple[int, int, int, int, int]]) -> dict:
    return {"image_size": [{"width": 100, "height": 50, "depth": 3}],
            "annotations": [{"class_id": c, "left": x, "top": y, "width": w, "height": h} for c, x, y, w, h in boxes]}


def gt_meta(class_map: dict[str, str], date: str, job: str, **more: str) -> dict:
    return {"objects": [{"confidence": 0.9}] * len(class_map), "class-map": class_map,
            "type": "groundtruth/object-detection", "human-annotated": "yes", "creation-date": date,
            "job-name": f"labeling-job/{job}", **more}


def test_ground_truth_chained_adjustment_job_wins(tmp_path):
    """An adjustment job chained to a labelling job writes its boxes under a new label attribute beside the
    original's (AWS: "you must use a different LabelAttributeName"): the adjusted boxes, the job's latest, are
    the ones; a line only the first job labelled keeps its boxes."""
    root = tmp_path / "gt"
    for name in ("cam1/0001.jpg", "cam2/0001.jpg"):
        image(root / name, 100, 50)
    lines = [
        {"source-ref": "s3://bucket/data/cam1/0001.jpg",
         "bounding-box": gt_label([(0, 10, 5, 20, 10)]),
         "bounding-box-metadata": gt_meta({"0": "dog"}, "2024-01-01T00:00:00.000000", "bb"),
         "bounding-box-adjusted": gt_label([(0, 12, 6, 20, 10), (1, 50, 20, 10, 10)]),
         "bounding-box-adjusted-metadata": gt_meta({"0": "dog", "1": "cat"}, "2024-01-05T10:00:00.000000",
                                                   "bb-adjust", **{"adjustment-status": "adjusted"})},
        {"source-ref": "s3://bucket/data/cam2/0001.jpg",
         "bounding-box": gt_label([(0, 1, 2, 3, 4)]),
         "bounding-box-metadata": gt_meta({"0": "dog"}, "2024-01-01T00:00:00.000000", "bb")}]
    (root / "output.manifest").write_text("".join(json.dumps(line) + "\n" for line in lines))
    ann = read(root)
    assert ann.names == ["dog", "cat"]
    assert boxes_of(ann) == {"cam1/0001.jpg": [("dog", 12, 6, 32, 16), ("cat", 50, 20, 60, 30)],
                             "cam2/0001.jpg": [("dog", 1, 2, 4, 6)]}


# -- COCO: subfolders in file_name, polygons without a bbox, RLE crowds --------------------------------
def test_coco_variants_file_name_paths_and_polygons_without_bbox(tmp_path):
    """CVAT's COCO export (file_name with the task's subfolders, ``attributes``), Label Studio's
    (``/data/upload/1/...`` and Windows ``..\\\\`` paths), an RLE crowd, and an annotation that has only its
    polygon (hand-made files): its box is the polygon's bounding box, as for YOLO polygon lines; one with
    neither (an RLE mask alone) is a problem that leaves its image out, never an image trained as background."""
    root = tmp_path / "coco"
    for name in ("images/a/x.jpg", "images/b/x.jpg", "images/c.JPEG", "images/d.jpg", "images/e.jpg"):
        image(root / name, 100, 50)
    (root / "annotations").mkdir()
    polygon = [40.5, 10, 60, 12, 58, 30, 45, 28]
    (root / "annotations" / "instances_default.json").write_text(json.dumps({
        "licenses": [{"name": "", "id": 0, "url": ""}], "info": {"contributor": "", "year": ""},
        "categories": [{"id": 1, "name": "car", "supercategory": ""}, {"id": 2, "name": "person", "supercategory": ""}],
        "images": [{"id": 1, "width": 100, "height": 50, "file_name": "a/x.jpg", "license": 0, "date_captured": 0},
                   {"id": 2, "width": 100, "height": 50, "file_name": "b/x.jpg", "license": 0, "date_captured": 0},
                   {"id": 3, "width": 100, "height": 50, "file_name": "/data/upload/1/c.JPEG"},
                   {"id": 4, "width": 100, "height": 50, "file_name": "..\\..\\media\\upload\\d.jpg"},
                   {"id": 5, "width": 100, "height": 50, "file_name": "e.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[10.0, 5.0, 30.0, 5.0, 30.0, 15.0, 10.0, 15.0]],
             "area": 200.0, "bbox": [10.0, 5.0, 20.0, 10.0], "iscrowd": 0, "attributes": {"occluded": False}},
            {"id": 2, "image_id": 2, "category_id": 2, "segmentation": {"size": [50, 100], "counts": [0, 10, 40]},
             "area": 10.0, "bbox": [0.0, 0.0, 1.0, 10.0], "iscrowd": 1, "attributes": {"occluded": False}},
            {"id": 3, "image_id": 3, "category_id": 2, "segmentation": [polygon], "area": 300.0, "iscrowd": 0},
            {"id": 4, "image_id": 4, "category_id": 1, "bbox": [1, 2, 3, 4], "ignore": 0, "iscrowd": 0, "area": 12},
            {"id": 5, "image_id": 5, "category_id": 1, "segmentation": {"size": [50, 100], "counts": "PP0"},
             "area": 3, "iscrowd": 0}]}))
    ann = read(root)
    xs, ys = polygon[0::2], polygon[1::2]
    assert boxes_of(ann) == {"images/a/x.jpg": [("car", 10, 5, 30, 15)], "images/b/x.jpg": [("person", 0, 0, 1, 10)],
                             "images/c.JPEG": [("person", min(xs), min(ys), max(xs), max(ys))],
                             "images/d.jpg": [("car", 1, 2, 4, 6)], "images/e.jpg": []}
    report = check(ann)
    assert list(report.problems) == ["annotation without a bbox"] and len(report.left_out) == 1
    assert "images/e.jpg" in report.problems["annotation without a bbox"].examples[0]
    assert report.without_labels == 1  # b: its one box is a crowd; e is left out, not counted as background


def test_coco_2017_layout_keeps_its_splits(tmp_path):
    """COCO's own layout: annotations/instances_train2017.json and instances_val2017.json, images in train2017/
    and val2017/. Those are the train and val splits (a year after the word), not one unsplit pool."""
    root = tmp_path / "coco2017"
    (root / "annotations").mkdir(parents=True)
    for folder, ids in (("train2017", [9, 25]), ("val2017", [139])):
        for i in ids:
            image(root / folder / f"{i:012d}.jpg", 100, 50)
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps({
            "info": {}, "licenses": [], "categories": [{"supercategory": "animal", "id": 18, "name": "dog"}],
            "images": [{"file_name": f"{i:012d}.jpg", "height": 50, "width": 100, "id": i} for i in ids],
            "annotations": [{"segmentation": [[1, 2, 30, 2, 30, 20]], "area": 261.0, "iscrowd": 0, "image_id": i,
                             "bbox": [1, 2, 29, 18], "category_id": 18, "id": i} for i in ids]}))
    ann = read(root)
    assert {i.name: i.split for i in ann.items} == {"train2017/000000000009.jpg": "train",
                                                    "train2017/000000000025.jpg": "train",
                                                    "val2017/000000000139.jpg": "val"}
    convert(root, "yolo", tmp_path / "yolo", log=quiet)
    assert sorted(p.name for p in (tmp_path / "yolo" / "labels" / "val").iterdir()) == ["000000000139.txt"]


def test_ultralytics_coco_tree_with_years_keeps_its_splits(tmp_path):
    """ultralytics' own COCO tree (coco.yaml): images/train2017, images/val2017 and their labels/."""
    root = tmp_path / "coco"
    for folder in ("train2017", "val2017"):
        image(root / "images" / folder / f"{folder}.jpg", 100, 50)
        (root / "labels" / folder).mkdir(parents=True)
        (root / "labels" / folder / f"{folder}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "coco.yaml").write_text("path: ../datasets/coco\ntrain: train2017.txt\nval: val2017.txt\n"
                                    "names:\n  0: person\n")
    ann = read(root)
    assert {i.name: i.split for i in ann.items} == {"images/train2017/train2017.jpg": "train",
                                                    "images/val2017/val2017.jpg": "val"}


def test_hand_written_ground_truth_manifest(tmp_path):
    """A manifest written by hand or by a script on Windows: a byte-order mark, CRLF line ends, a blank line,
    no ``-metadata`` (no class map), a class id as a string, no image_size. Class ids are the job's label
    indexes: YOLO ids are the same numbers (a class map with a gap keeps it), names from ``--names``."""
    root = tmp_path / "gt"
    image(root / "a.jpg", 100, 50)
    image(root / "b.jpg", 100, 50)
    lines = [{"source-ref": "s3://b/x/a.jpg", "bbox": {"annotations": [
                 {"class_id": 2, "left": 10, "top": 5, "width": 20, "height": 10}]}},
             {"source-ref": "s3://b/x/b.jpg", "bbox": {"image_size": [{"width": 100, "height": 50}], "annotations": [
                 {"class_id": "0", "left": 1.5, "top": 2, "width": 20, "height": 10}]}}]
    (root / "hand.manifest").write_bytes(b"\xef\xbb\xbf" + b"\r\n\r\n".join(json.dumps(x).encode() for x in lines)
                                         + b"\r\n")
    theirs = {f"{line['source-ref'].rsplit('/', 1)[1]}": [
        (int(a["class_id"]), a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"])
        for a in line["bbox"]["annotations"]] for line in lines}
    names = ["dog", "cat", "bird"]
    ann = read(root, names=names)
    assert boxes_of(ann) == {k: [(names[c], *b) for c, *b in v] for k, v in theirs.items()}
    assert check(ann, names=names).ok
    ann = read(root)  # no names anywhere: the ids are the names, in id order
    assert ann.names == ["0", "1", "2"]
    convert(root, "yolo", tmp_path / "yolo", log=quiet)
    for name, boxes in theirs.items():
        (cls, x1, y1, x2, y2), = boxes
        expected = [cls, (x1 + x2) / 200, (y1 + y2) / 100, (x2 - x1) / 100, (y2 - y1) / 50]
        assert yolo_lines(tmp_path / "yolo" / "labels" / "train" / name.replace(".jpg", ".txt")) == [
            [round(v, 4) for v in expected]]


# -- files saved on Windows: a UTF-8 byte-order mark -----------------------------------------------------
def test_files_with_a_byte_order_mark(tmp_path):
    """Excel's "CSV UTF-8", PowerShell's Out-File and Notepad++ put a byte-order mark before the first byte;
    Python's json and csv modules then see a stray character. Every reader takes it off."""
    bom = "\ufeff"
    csv_root = tmp_path / "csv"
    image(csv_root / "a.jpg")
    (csv_root / "train_labels.csv").write_text(bom + "filename,width,height,class,xmin,ymin,xmax,ymax\r\n"
                                               "a.jpg,100,50,cat,10,5,30,20\r\n", encoding="utf-8")
    labelme = tmp_path / "labelme"
    image(labelme / "a.jpg")
    (labelme / "a.json").write_text(bom + json.dumps({
        "version": "5.4.1", "flags": {}, "imagePath": "a.jpg", "imageData": None, "imageHeight": 50,
        "imageWidth": 100, "shapes": [{"label": "cat", "points": [[10, 5], [30, 20]], "shape_type": "rectangle"}]}))
    coco = tmp_path / "coco"
    image(coco / "a.jpg")
    (coco / "train.json").write_text(bom + json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 15], "iscrowd": 0}]}))
    yolo = tmp_path / "yolo"
    image(yolo / "images" / "a.jpg")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text(bom + "0 0.2 0.25 0.2 0.3\r\n")
    (yolo / "classes.txt").write_text(bom + "cat\r\n")
    for root in (csv_root, labelme, coco, yolo):
        ann = read(root)
        assert ann.names == ["cat"], root.name
        assert boxes_of(ann) == {next(iter(boxes_of(ann))): [("cat", 10, 5, 30, 20)]}, root.name
        assert check(ann).ok, root.name


def test_voc_devkit_layout_splits_from_imagesets(tmp_path):
    """The Pascal VOC devkit's layout, which CVAT's "PASCAL VOC 1.1" export keeps: Annotations/, JPEGImages/,
    and the splits as lists of names in ImageSets/Main/{train,val}.txt (per-class lists beside them, such as
    dog_train.txt, and trainval.txt, name no split of their own)."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for stem in ("2008_000001", "2008_000002", "2008_000003"):
        image(root / "JPEGImages" / f"{stem}.jpg", 100, 50)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(VOC_LABELIMG.format(
            filename=f"{stem}.jpg", size="<size><width>100</width><height>50</height><depth>3</depth></size>"))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000003\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000002\n")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("2008_000001\n2008_000002\n2008_000003\n")
    (root / "ImageSets" / "Main" / "dog_train.txt").write_text("2008_000001  1\n2008_000003 -1\n")
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ndog:1,2,3::\n")
    assert detect(tmp_path / "VOCdevkit") == "voc"
    ann = read(tmp_path / "VOCdevkit")
    assert {i.name: i.split for i in ann.items} == {"VOC2012/JPEGImages/2008_000001.jpg": "train",
                                                    "VOC2012/JPEGImages/2008_000002.jpg": "val",
                                                    "VOC2012/JPEGImages/2008_000003.jpg": "train"}


def test_label_studio_yolo_export_with_notes_json(tmp_path):
    """Label Studio's YOLO export: images/, labels/, classes.txt and a notes.json holding the categories (no
    images, no annotations). It is a YOLO tree; the notes are no second format."""
    root = tmp_path / "ls"
    image(root / "images" / "1a2b3c-a.jpg", 100, 50)
    (root / "labels").mkdir()
    (root / "labels" / "1a2b3c-a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("Airplane\nCar\n")
    (root / "notes.json").write_text(json.dumps({
        "categories": [{"id": 0, "name": "Airplane"}, {"id": 1, "name": "Car"}],
        "info": {"year": 2024, "version": "1.0", "contributor": "Label Studio"}}, indent=2))
    assert detect(root) == "yolo"
    ann = read(root)
    assert ann.names == ["Airplane", "Car"] and boxes_of(ann) == {"images/1a2b3c-a.jpg": [("Car", 40, 20, 60, 30)]}


def test_voc_rotated_boxes_of_rolabelimg(tmp_path):
    """roLabelImg writes rotated boxes as <robndbox> (centre, size, angle in radians) beside plain <bndbox>
    objects: the box around the turned rectangle, not an object dropped in silence; an object with no box
    at all is a problem that leaves its image out (trained, it would teach the object is background)."""
    root = tmp_path / "ro"
    image(root / "a.jpg", 200, 100)
    (root / "a.xml").write_text("""<annotation><folder>ro</folder><filename>a.jpg</filename>
  <size><width>200</width><height>100</height><depth>3</depth></size>
  <object><type>bndbox</type><name>text</name><difficult>0</difficult>
    <bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>30</ymax></bndbox></object>
  <object><type>robndbox</type><name>text</name><pose>Unspecified</pose><truncated>0</truncated>
    <difficult>0</difficult>
    <robndbox><cx>100.5</cx><cy>50.25</cy><w>60</w><h>20</h><angle>0.5235988</angle></robndbox></object>
  <object><type>robndbox</type><name>text</name>
    <robndbox><cx>190</cx><cy>90</cy><w>20</w><h>20</h><angle>0.7853982</angle></robndbox></object>
</annotation>""")
    ann = read(root)
    r = [round(v, 3) for v in rotated_box(70.5, 40.25, 130.5, 60.25, 30)]
    x1, y1, _, _ = rotated_box(180, 80, 200, 100, 45)  # in the corner: cut at the image's edges
    assert boxes_of(ann) == {"a.jpg": [("text", 10, 10, 50, 30), ("text", *r),
                                       ("text", round(x1, 3), round(y1, 3), 200, 100)]}
    assert check(ann).ok
    (root / "a.xml").write_text((root / "a.xml").read_text().replace("robndbox", "polygon"))
    report = check(read(root))
    assert "unreadable annotation" in report.problems and len(report.left_out) == 1
    assert "no <bndbox>" in report.problems["unreadable annotation"].examples[0]


def test_tfrecords_hold_images_tensorflow_decodes_as_one_frame(tmp_path):
    """ultralytics trains on .webp, .bmp, .tif ...; Model Garden decodes with tf.io.decode_image, which refuses
    TIFF and returns WebP (and GIF) as a stack of frames that its set_shape([None, None, 3]) then rejects. A
    record holds a JPEG as it is and any other image as a lossless PNG of the same pixels, with image/format
    saying which."""
    root = tmp_path / "mixed"
    names = {"a.jpg": None, "b.webp": "WEBP", "c.bmp": "BMP", "d.tif": "TIFF", "e.PNG": "PNG"}
    for name, fmt in names.items():
        image(root / "images" / name, 100, 50, fmt=fmt)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / name).with_suffix(".txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("cat\n")
    convert(root, "tfrecord", tmp_path / "records", log=quiet)
    records = {r["image/filename"][0].decode(): r for p in (tmp_path / "records").glob("train-*")
               for r in map(decode_example, read_records(p))}
    assert set(records) == set(names)
    for name, r in records.items():
        data = r["image/encoded"][0]
        kind = {b"\xff\xd8\xff": b"jpeg", b"\x89PN": b"png"}.get(data[:3])
        assert kind == r["image/format"][0], name
        assert kind == (b"jpeg" if name == "a.jpg" else b"png"), name
        with Image.open(io.BytesIO(data)) as stored, Image.open(root / "images" / name) as original:
            assert stored.size == original.size == (r["image/width"][0], r["image/height"][0])
            if name != "a.jpg":  # lossless: the same pixels
                assert stored.convert("RGB").tobytes() == original.convert("RGB").tobytes(), name
    assert (root / "images" / "a.jpg").read_bytes() == records["a.jpg"]["image/encoded"][0]


def exif_block(order: str, tags: dict[int, int]) -> bytes:
    """An APP1 EXIF payload written by hand in either byte order (Intel "II" as phones write it, Motorola "MM"
    as many cameras do): IFD0 with SHORT tags, sorted."""
    import struct

    e = "<" if order == "II" else ">"
    entries = b"".join(struct.pack(e + "HHIH2x", tag, 3, 1, value) for tag, value in sorted(tags.items()))
    return b"Exif\x00\x00" + order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", len(tags)) \
        + entries + struct.pack(e + "I", 0)


@pytest.mark.parametrize("order", ["II", "MM"])
def test_jpeg_orientation_read_from_the_bytes_agrees_with_pillow(order):
    """The TFRecord writer reads a JPEG's orientation from its APP1 segment itself (PIL costs 100+ us an image):
    every orientation, both byte orders, other tags around it, and no orientation at all."""
    from container.annotations.upright import jpeg_orientation

    for value in (None, *range(1, 9)):
        tags = {0x0103: 6, 0x0128: 2} | ({0x0112: value} if value else {})
        buf = io.BytesIO()
        Image.new("RGB", (16, 8), (1, 2, 3)).save(buf, "JPEG", exif=exif_block(order, tags))
        data = buf.getvalue()
        with Image.open(io.BytesIO(data)) as im:
            assert jpeg_orientation(data) == im.getexif().get(0x0112, 1) == (value or 1)
    buf = io.BytesIO()
    Image.new("RGB", (16, 8)).save(buf, "JPEG")
    assert jpeg_orientation(buf.getvalue()) == 1
