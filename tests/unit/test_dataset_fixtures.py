"""Datasets as real tools write them, one small fixture per defect seen on public exports (issue 13):
polygon label lines, one file name in two folders, label-map quoting, crowd and difficult objects, COCO
annotations of missing images, failed Ground Truth lines, format detection, tiny images, CVAT and LabelMe."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from container.annotations import check, convert, detect, read, read_label_map, write_label_map
from container.annotations.check import CROWD, DIFFICULT, FAILED, NO_LABELS
from container.contract import Environment
from container.failure import UserError
from container.schema import Schema
from container.yolo import dataset as ds

HPS = Schema.load("yolo").typed_defaults  # every hyperparameter at its default, as the trainer has them


def quiet(_: str) -> None:
    pass


def image(path: Path, width: int = 100, height: int = 50, color: tuple | None = None) -> Path:
    """A JPEG; each path its own colour, so no two fixture images are duplicates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path).encode()).digest()
    Image.new("RGB", (width, height), color or tuple(digest[:3])).save(path, quality=95)
    return path


def yolo_lines(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


# -- 1: polygon label lines --------------------------------------------------------------------------
def test_yolo_polygon_lines_give_their_bounding_box_as_ultralytics_does(tmp_path):
    import numpy as np
    from ultralytics.utils.ops import segments2boxes

    root = tmp_path / "seg"
    image(root / "images" / "train" / "a.jpg", 100, 50)
    polygon = [0.1, 0.2, 0.5, 0.2, 0.5, 0.8, 0.1, 0.8, 0.3, 0.9]
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 " + " ".join(map(str, polygon)) + "\n1 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [leaf, stem]\n")
    ann = read(root)
    boxes = [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in ann.items[0].boxes]
    assert boxes == [("leaf", pytest.approx(10), pytest.approx(10), pytest.approx(50), pytest.approx(45)),
                     ("stem", pytest.approx(40), pytest.approx(20), pytest.approx(60), pytest.approx(30))]
    convert(root, "yolo", tmp_path / "out", log=quiet)
    ours = yolo_lines(tmp_path / "out" / "labels" / "train" / "a.txt")
    theirs = segments2boxes([np.array(polygon, dtype=np.float32).reshape(-1, 2)])[0]  # cx cy w h
    assert ours[0][0] == 0 and ours[0][1:] == pytest.approx(theirs.tolist(), abs=1e-5)
    assert check(ann).ok  # not "box outside the image"


# -- 2: one file name in two folders -----------------------------------------------------------------
def test_same_name_in_two_folders_stays_two_images_ground_truth(tmp_path):
    root = tmp_path / "gt"
    image(root / "cam1" / "0001.jpg", color=(255, 0, 0))
    image(root / "cam2" / "0001.jpg", color=(0, 0, 255))
    lines = []
    for cam, left in (("cam1", 5), ("cam2", 50)):
        lines.append(json.dumps({
            "source-ref": f"s3://bucket/raw/{cam}/0001.jpg",
            "job": {"image_size": [{"width": 100, "height": 50, "depth": 3}],
                    "annotations": [{"class_id": 0, "left": left, "top": 5, "width": 20, "height": 20}]},
            "job-metadata": {"class-map": {"0": "car"}, "type": "groundtruth/object-detection"}}))
    (root / "output.manifest").write_text("\n".join(lines) + "\n")
    ann = read(root)
    assert sorted(i.name for i in ann.items) == ["cam1/0001.jpg", "cam2/0001.jpg"]
    assert {i.name: i.path.relative_to(root).as_posix() for i in ann.items} == {
        "cam1/0001.jpg": "cam1/0001.jpg", "cam2/0001.jpg": "cam2/0001.jpg"}
    report = check(ann)
    assert report.ok, report.text()
    convert(root, "yolo", tmp_path / "out", log=quiet)
    labels = tmp_path / "out" / "labels" / "train"
    assert sorted(p.name for p in labels.iterdir()) == ["cam1__0001.txt", "cam2__0001.txt"]
    assert yolo_lines(labels / "cam1__0001.txt")[0][1] == pytest.approx(0.15)
    assert yolo_lines(labels / "cam2__0001.txt")[0][1] == pytest.approx(0.6)
    written = tmp_path / "out" / "images" / "train"
    assert Image.open(written / "cam2__0001.jpg").getpixel((50, 25))[2] > 200  # the blue one, not the red


def test_same_name_in_train_and_val_folders_voc(tmp_path):
    root = tmp_path / "voc"
    for split, x in (("train", 10), ("val", 60)):
        image(root / split / "0001.jpg")
        (root / split / "0001.xml").write_text(
            f"<annotation><filename>0001.jpg</filename><size><width>100</width><height>50</height></size>"
            f"<object><name>car</name><bndbox><xmin>{x}</xmin><ymin>5</ymin><xmax>{x + 20}</xmax><ymax>25</ymax>"
            "</bndbox></object></annotation>")
    ann = read(root)
    assert {(i.name, i.split, i.path.relative_to(root).as_posix()) for i in ann.items} == {
        ("train/0001.jpg", "train", "train/0001.jpg"), ("val/0001.jpg", "val", "val/0001.jpg")}
    assert check(ann).ok
    convert(root, "yolo", tmp_path / "out", log=quiet)
    assert yolo_lines(tmp_path / "out" / "labels" / "train" / "0001.txt")[0][1] == pytest.approx(0.2)
    assert yolo_lines(tmp_path / "out" / "labels" / "val" / "0001.txt")[0][1] == pytest.approx(0.7)


def test_a_bare_name_two_images_share_is_not_guessed(tmp_path):
    root = tmp_path / "coco"
    image(root / "cam1" / "0001.jpg")
    image(root / "cam2" / "0001.jpg", color=(0, 0, 255))
    (root / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "0001.jpg", "width": 100, "height": 50}],
        "annotations": [], "categories": [{"id": 1, "name": "car"}]}))
    report = check(read(root))
    assert "missing image" in report.problems  # ambiguous: never silently the first one found


# -- 3: label maps -----------------------------------------------------------------------------------
NAMES = ["apple, red", "driver's license", 'say "hi"', "back\\slash", "naïve café", "brace } item {"]


def test_label_maps_keep_any_name(tmp_path):
    pbtxt, csv_path = write_label_map(NAMES, tmp_path)
    assert read_label_map(pbtxt) == NAMES and read_label_map(csv_path) == NAMES
    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"))))  # how Model Garden reads it
    assert all(len(row) == 2 for row in rows) and [r[1] for r in rows] == NAMES


def test_label_map_pbtxt_parses_with_protobuf_text_format(tmp_path):
    """Our pbtxt, read by protobuf's own text-format parser with the label map's schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

    proto = descriptor_pb2.FileDescriptorProto(name="lm.proto", package="od", syntax="proto2")
    item = proto.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=9, label=1)
    item.field.add(name="id", number=2, type=5, label=1)
    item.field.add(name="display_name", number=3, type=9, label=1)
    lm = proto.message_type.add(name="StringIntLabelMap")
    lm.field.add(name="item", number=1, type=11, label=3, type_name=".od.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    LabelMap = message_factory.GetMessageClass(pool.FindMessageTypeByName("od.StringIntLabelMap"))
    pbtxt, _ = write_label_map(NAMES, tmp_path)
    parsed = text_format.Parse(pbtxt.read_text(encoding="utf-8"), LabelMap())
    assert [i.name for i in parsed.item] == NAMES and [i.id for i in parsed.item] == list(range(1, 7))
    # and what protobuf writes (single quotes, octal escapes) reads back with ours
    theirs = tmp_path / "theirs.pbtxt"
    theirs.write_text(text_format.MessageToString(parsed, as_utf8=False), encoding="utf-8")
    assert read_label_map(theirs) == NAMES


def test_label_map_pbtxt_with_apostrophes_and_display_names(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text("# classes\nitem {\n  id: 1\n  name: 'driver\\'s license'\n}\n"
                    "item { id: 2 name: \"n02\" display_name: \"driver's cap\" }\n", encoding="utf-8")
    assert read_label_map(path) == ["driver's license", "driver's cap"]


# -- 4: crowd and difficult objects --------------------------------------------------------------------
def _coco_with_crowd(root: Path) -> Path:
    image(root / "a.jpg")
    (root / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 10, 50, 30], "iscrowd": 1}],
        "categories": [{"id": 1, "name": "person"}]}))
    return root


def test_coco_crowd_boxes_are_left_out_and_counted(tmp_path):
    root = _coco_with_crowd(tmp_path / "coco")
    _, report = convert(root, "yolo", tmp_path / "out", log=quiet)
    assert report.warnings[CROWD].count == 1
    assert len(yolo_lines(tmp_path / "out" / "labels" / "train" / "a.txt")) == 1
    convert(root, "yolo", tmp_path / "kept", keep_crowd=True, log=quiet)
    assert len(yolo_lines(tmp_path / "kept" / "labels" / "train" / "a.txt")) == 2


def test_voc_difficult_objects_are_left_out_and_counted(tmp_path):
    root = tmp_path / "voc"
    image(root / "a.jpg")
    (root / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>car</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax>"
        "<ymax>20</ymax></bndbox></object><object><name>car</name><difficult>1</difficult><bndbox><xmin>30</xmin>"
        "<ymin>1</ymin><xmax>50</xmax><ymax>20</ymax></bndbox></object></annotation>")
    _, report = convert(root, "yolo", tmp_path / "out", log=quiet)
    assert report.warnings[DIFFICULT].count == 1
    assert len(yolo_lines(tmp_path / "out" / "labels" / "train" / "a.txt")) == 1
    convert(root, "voc", tmp_path / "kept", keep_difficult=True, log=quiet)
    assert "<difficult>1</difficult>" in (tmp_path / "kept" / "train" / "a.xml").read_text()


# -- 5: COCO annotation of a missing image -------------------------------------------------------------
def test_coco_annotation_of_a_missing_image_id_is_a_problem(tmp_path):
    root = _coco_with_crowd(tmp_path / "coco")
    data = json.loads((root / "ann.json").read_text())
    data["annotations"].append({"id": 3, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    (root / "ann.json").write_text(json.dumps(data))
    report = check(read(root))
    assert not report.ok and report.problems["annotation of a missing image id"].count == 1
    assert "image_id 99" in report.text()


# -- 6: Ground Truth lines whose labelling failed -------------------------------------------------------
def test_failed_ground_truth_lines_are_unlabelled_images_not_unreadable(tmp_path):
    root = tmp_path / "gt"
    image(root / "a.jpg")
    image(root / "b.jpg", color=(0, 255, 0))
    good = {"source-ref": "s3://b/a.jpg", "job": {"image_size": [{"width": 100, "height": 50, "depth": 3}],
            "annotations": [{"class_id": 0, "left": 5, "top": 5, "width": 20, "height": 20}]},
            "job-metadata": {"class-map": {"0": "car"}, "type": "groundtruth/object-detection"}}
    failed = {"source-ref": "s3://b/b.jpg", "job-metadata": {
        "failure-reason": "ClientError: The worker response did not contain a label", "human-annotated": "yes",
        "type": "groundtruth/object-detection", "job-name": "labeling-job/job"}}
    (root / "output.manifest").write_text(json.dumps(good) + "\n" + json.dumps(failed) + "\n")
    _, report = convert(root, "yolo", tmp_path / "out", log=quiet)
    assert report.ok and "unreadable annotation" not in report.problems
    assert report.warnings[FAILED].count == 1 and "did not contain a label" in report.text()
    assert len(report.left_out) == 1  # not trained on as a background image
    assert [p.name for p in (tmp_path / "out" / "labels" / "train").iterdir()] == ["a.txt"]


# -- 7: format detection looks below the dataset root only -----------------------------------------------
def test_detection_ignores_folders_above_the_dataset(tmp_path):
    root = tmp_path / "labels" / "project"  # "labels" above the dataset, and a stray .txt inside it
    image(root / "a.jpg")
    (root / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>100</width><height>50"
                                "</height></size></annotation>")
    (root / "README.txt").write_text("exported from labelImg\n")
    assert detect(root) == "voc"


# -- 8: tiny images, background images -------------------------------------------------------------------
def _yolo_tree(root: Path, *, tiny: bool = False) -> Path:
    for i in range(4):
        image(root / "images" / "train" / f"{i}.jpg", 64, 64)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "1.txt").write_text("0 0.3 0.3 0.2 0.2\n")
    (root / "labels" / "train" / "2.txt").write_text("")  # empty: a background image to ultralytics
    # 3.jpg has no label file: a background image too
    image(root / "images" / "val" / "v.jpg", 64, 64)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "val" / "v.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    if tiny:
        image(root / "images" / "train" / "tiny.jpg", 8, 8)
        (root / "labels" / "train" / "tiny.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [thing]\n")
    return root


def _env(base: Path, train: Path) -> Environment:
    (base / "input" / "data").mkdir(parents=True)
    (base / "input" / "data" / "train").symlink_to(train)
    return Environment(base_dir=base, input_data_config={"train": {"TrainingInputMode": "File"}})


def test_tiny_images_are_refused_at_the_pre_check(tmp_path):
    root = _yolo_tree(tmp_path / "data", tiny=True)
    env = _env(tmp_path / "ml", root)
    with pytest.raises(UserError, match=r"image under 10 px in 1 image.*tiny.jpg: 8x8"):
        ds.resolve(env, HPS, tmp_path / "work", seed=0, log=quiet)
    report = check(read(root))
    assert report.problems["image under 10 px"].count == 1


def test_background_images_are_counted_as_ultralytics_counts_them(tmp_path):
    root = _yolo_tree(tmp_path / "data")
    d = ds.resolve(_env(tmp_path / "ml", root), HPS, tmp_path / "work", seed=0, log=quiet)
    assert d.background_images == 2  # the empty label file and the missing one


def test_check_report_and_training_log_agree(tmp_path, capsys):
    """What `python -m sdk.data check` says about a dataset is what the YOLO trainer logs about it."""
    from sdk.cli import data_main as data_cli

    root = _yolo_tree(tmp_path / "data", tiny=True)
    assert data_cli(["check", str(root), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)["report"]
    logged: list[str] = []
    ds.resolve(_env(tmp_path / "ml", root), {**HPS, "strict_data": False}, tmp_path / "work", seed=0, log=logged.append)
    assert (checked["left_out"], checked["without_labels"]) == (1, 2)
    report = check(read(root))
    assert f"dataset: {report.text().splitlines()[0]}" in logged, logged
    assert checked["warnings"][NO_LABELS]["count"] == 2


# -- 9: CVAT for images 1.1, LabelMe, what convert says ----------------------------------------------------
CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>1</id><name>t</name><size>3</size>
    <labels><label><name>car</name><color>#fa3253</color><attributes><attribute><name>parked</name>
    </attribute></attributes></label><label><name>person</name></label></labels></task></meta>
  <image id="0" name="frames/a.jpg" subset="Train" width="100" height="50">
    <box label="car" source="manual" occluded="0" xtl="10.5" ytl="5" xbr="30" ybr="25" z_order="0">
      <attribute name="parked">true</attribute></box>
    <polygon label="person" source="manual" occluded="0" points="60,10;80,12;70,40" z_order="0"/>
  </image>
  <image id="1" name="frames/b.jpg" subset="Validation" width="100" height="50">
    <ellipse label="car" cx="50" cy="25" rx="10" ry="5" occluded="0" z_order="0"/>
  </image>
  <image id="2" name="frames/c.jpg" subset="Train" width="100" height="50"></image>
</annotations>
"""


def test_cvat_for_images_xml_is_not_taken_for_voc(tmp_path):
    root = tmp_path / "cvat"
    for name in "abc":
        image(root / "frames" / f"{name}.jpg")
    (root / "annotations.xml").write_text(CVAT)
    assert detect(root) == "cvat"
    ann = read(root)
    assert ann.names == ["car", "person"]
    got = {i.name: (i.split, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in i.boxes]) for i in ann.items}
    assert got == {"frames/a.jpg": ("train", [("car", 10.5, 5, 30, 25), ("person", 60, 10, 80, 40)]),
                   "frames/b.jpg": ("val", [("car", 40, 20, 60, 30)]), "frames/c.jpg": ("train", [])}
    _, report = convert(root, "coco", tmp_path / "out", log=quiet)
    assert report.ok and report.without_labels == 1
    assert json.loads((tmp_path / "out" / "val.json").read_text())["annotations"][0]["bbox"] == [40, 20, 20, 10]


def test_labelme_json(tmp_path):
    root = tmp_path / "labelme"
    image(root / "a.jpg")
    (root / "a.json").write_text(json.dumps({
        "version": "5.4.1", "flags": {}, "imagePath": "a.jpg", "imageData": None, "imageHeight": 50,
        "imageWidth": 100, "shapes": [
            {"label": "cat", "points": [[30, 20], [10, 5]], "shape_type": "rectangle", "flags": {}},
            {"label": "dog", "points": [[50, 10], [70, 15], [60, 40]], "shape_type": "polygon", "flags": {}},
            {"label": "cat", "points": [[80, 25], [85, 25]], "shape_type": "circle", "flags": {}}]}))
    assert detect(root) == "labelme"
    ann = read(root)
    assert ann.names == ["cat", "dog"]
    assert [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in ann.items[0].boxes] == [
        ("cat", 10, 5, 30, 20), ("dog", 50, 10, 70, 40), ("cat", 75, 20, 85, 30)]


def test_unrecognised_xml_and_json_are_named(tmp_path):
    root = tmp_path / "odd"
    image(root / "a.jpg")
    (root / "a.xml").write_text("<svg><rect/></svg>")
    (root / "meta.json").write_text(json.dumps({"tool": "something else"}))
    with pytest.raises(UserError, match=r"1 XML file\(s\) \(a.xml\) are in no format we read.*1 JSON file\(s\) "
                                        r"\(meta.json\)"):
        detect(root)


def test_convert_says_what_it_left_out_and_that_an_unsplit_source_is_all_train(tmp_path):
    root = _coco_with_crowd(tmp_path / "coco")
    image(root / "b.jpg", 8, 8)
    data = json.loads((root / "ann.json").read_text())
    data["images"].append({"id": 2, "file_name": "b.jpg", "width": 8, "height": 8})
    (root / "ann.json").write_text(json.dumps(data))
    said: list[str] = []
    _, report = convert(root, "tfrecord", tmp_path / "out", log=said.append)
    assert len(report.left_out) == 1
    assert "left out 1 of 2 images (see the problems above)" in said
    assert any("no train/val split: all 1 images written as 'train'" in s for s in said)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tfrecord")) == ["train-00000-of-00001.tfrecord"]


def test_tfrecord_shards_are_bounded(tmp_path):
    """A shard holds ``shard_bytes`` of images plus at most one image (the plan counts image bytes), and a few
    hundred bytes of keys and framing per record (411 without boxes)."""
    from container.annotations.tfrecord import decode_example, read_records
    from container.annotations.types import Annotations, Item
    from container.annotations.writers import write_tfrecord

    root = tmp_path / "many"
    for i in range(12):
        image(root / f"{i:02d}.jpg", 64, 64)
    items = [Item(p.name, p, 64, 64, [], "train") for p in sorted(root.glob("*.jpg"))]
    biggest = max(p.stat().st_size for p in root.glob("*.jpg"))
    limit = sum(p.stat().st_size for p in root.glob("*.jpg")) // 4
    write_tfrecord(Annotations(items, ["x"], "yolo", root), tmp_path / "out", {"train": items, "val": []},
                   shard_bytes=limit)
    shards = sorted((tmp_path / "out").glob("train-*.tfrecord"))
    assert len(shards) >= 3
    assert [p.name for p in shards] == [f"train-{i:05d}-of-{len(shards):05d}.tfrecord" for i in range(len(shards))]
    records = [[decode_example(r) for r in read_records(p)] for p in shards]
    image_bytes = [sum(len(r["image/encoded"][0]) for r in shard) for shard in records]
    assert all(size >= limit for size in image_bytes[:-1])  # full before the next
    assert all(size < limit + biggest for size in image_bytes)
    assert all(p.stat().st_size - size < 500 * len(shard) for p, size, shard in zip(shards, image_bytes, records,
                                                                                     strict=True))
    assert sum(map(len, records)) == 12
    assert [p.name for p in (tmp_path / "out").glob("val-*")] == ["val-00000-of-00001.tfrecord"]
    assert not list((tmp_path / "out").glob("*.partial"))


def _many_images(root: Path, count: int) -> list:
    from container.annotations.types import Box, Item

    items = []
    for i in range(count):
        path = image(root / f"{i:02d}.jpg", 64, 48, color=(i * 20 % 256, 90, 200))
        items.append(Item(path.name, path, 64, 48, [Box("x", 1, 2, 30 + i, 40)] * (i % 3), "train"))
    return items


def test_tfrecord_shards_are_the_same_bytes_from_one_process_or_several(tmp_path):
    """Shards written side by side by worker processes are byte for byte the shards one process writes:
    the same names, the same images in the same order, the same source ids across splits."""
    from container.annotations.types import Annotations
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 12)
    ann = Annotations(items, ["x"], "yolo", tmp_path / "src")
    splits = {"train": items[:9], "val": items[9:]}
    limit = sum(p.path.stat().st_size for p in items) // 5
    seen: list[int] = []
    write_tfrecord(ann, tmp_path / "one", splits, shard_bytes=limit, workers=1)
    write_tfrecord(ann, tmp_path / "two", splits, shard_bytes=limit, workers=2, progress=seen.append)
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert len([n for n in one if n.startswith("train-")]) >= 3
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert sum(seen) == 12  # progress: every image counted once, shard by shard


def test_an_empty_image_is_named_not_written(tmp_path):
    """An image emptied after the check (or never checked) is refused by name, not written as a record whose
    image no decoder can read."""
    from container.annotations.types import Annotations, Item
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 3)
    (tmp_path / "src" / "empty.jpg").write_bytes(b"")
    items.append(Item("empty.jpg", tmp_path / "src" / "empty.jpg", 64, 48, [], "train"))
    with pytest.raises(UserError, match=r"image .*empty.jpg is empty \(0 bytes\)"):
        write_tfrecord(Annotations(items, ["x"], "yolo", tmp_path / "src"), tmp_path / "out", {"train": items})
    assert not list((tmp_path / "out").glob("*.tfrecord*"))


def test_a_failed_tfrecord_shard_leaves_no_shard_behind(tmp_path):
    """One unreadable image in one shard of several: the conversion fails with the file named, and none of
    its shards, whole or partial, is left to look like a dataset."""
    from container.annotations.types import Annotations, Item
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 12)
    (tmp_path / "src" / "broken.jpg").mkdir()  # a folder where an image should be: stat works, reading fails
    items.insert(7, Item("broken.jpg", tmp_path / "src" / "broken.jpg", 64, 48, [], "train"))
    ann = Annotations(items, ["x"], "yolo", tmp_path / "src")
    limit = sum(p.path.stat().st_size for p in items[:7]) // 3
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        with pytest.raises(UserError, match="cannot read image .*broken.jpg: Is a directory"):
            write_tfrecord(ann, out, {"train": items}, shard_bytes=limit, workers=workers)
        assert list(out.iterdir()) == []


def test_a_failed_tfrecord_conversion_leaves_an_earlier_ones_shards_as_they_were(tmp_path):
    """Converting again into the same folder and failing halfway: the earlier conversion's shards of the same
    names are all still there, unchanged (no mix of old and new shards, none lost), and nothing else is."""
    from container.annotations.types import Annotations, Item
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 12)
    ann = Annotations(items, ["x"], "yolo", tmp_path / "src")
    limit = sum(p.path.stat().st_size for p in items) // 4
    out = tmp_path / "out"
    write_tfrecord(ann, out, {"train": items}, shard_bytes=limit, workers=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len([n for n in before if n.endswith(".tfrecord")]) >= 3
    (tmp_path / "src" / "broken.jpg").mkdir()  # the last shard's image: the shards before it are written first
    broken = [*items[:-1], Item("broken.jpg", tmp_path / "src" / "broken.jpg", 64, 48, [], "train")]
    for workers in (1, 2):
        with pytest.raises(UserError, match="cannot read image .*broken.jpg"):
            write_tfrecord(ann, out, {"train": broken}, shard_bytes=limit, workers=workers)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_tfrecord_shards_of_an_earlier_conversion_with_another_count_are_named_not_mixed_in(tmp_path):
    """The folder holds ``train-0000k-of-00002.tfrecord`` from an earlier conversion, this one writes 4 shards:
    a reader of ``train-*`` would take both, the old images twice. Refused with the files named, nothing
    written or removed; shards of the same names (a conversion run again) are replaced."""
    from container.annotations.types import Annotations
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 12)
    ann = Annotations(items, ["x"], "yolo", tmp_path / "src")
    total = sum(p.path.stat().st_size for p in items)
    out = tmp_path / "out"
    write_tfrecord(ann, out, {"train": items, "val": items[:2]}, shard_bytes=total // 2)
    write_tfrecord(ann, out, {"train": items, "val": items[:2]}, shard_bytes=total // 2)  # the same names
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "train-00001-of-00002.tfrecord" in before
    with pytest.raises(UserError, match=r"train-00000-of-00002.tfrecord, train-00001-of-00002.tfrecord.*"
                                        r"remove them, or convert into an empty folder"):
        write_tfrecord(ann, out, {"train": items}, shard_bytes=total // 4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    write_tfrecord(ann, out, {"test": items}, shard_bytes=total // 4)  # another split's shards: no mix
    assert len(list(out.glob("test-*-of-00004.tfrecord"))) == 4


@pytest.mark.parametrize("callers_handler", [False, True])
def test_a_killed_tfrecord_worker_leaves_no_shard_or_partial_behind(tmp_path, monkeypatch, callers_handler):
    """A worker process killed mid-shard (SIGKILL: out of memory): a clear error, and no shard or ``.partial``
    file of the conversion left, also where the caller has its own SIGTERM handler (as the training image
    has: the pool ends the other workers with SIGTERM, and a handler they inherited must not keep them
    writing)."""
    import os
    import signal

    from container.annotations import writers
    from container.annotations.types import Annotations

    items = _many_images(tmp_path / "src", 12)
    ann = Annotations(items, ["x"], "yolo", tmp_path / "src")
    limit = sum(p.path.stat().st_size for p in items) // 4
    parent, encode = os.getpid(), writers.tf_example

    def dies_at_the_eighth_image(item, *args):  # forked workers inherit this patch
        if item is items[7] and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return encode(item, *args)

    def stop(signum, frame):
        raise RuntimeError("stop requested")

    monkeypatch.setattr(writers, "tf_example", dies_at_the_eighth_image)
    previous = signal.signal(signal.SIGTERM, stop) if callers_handler else None
    try:
        with pytest.raises(RuntimeError, match="died"):
            writers.write_tfrecord(ann, tmp_path / "out", {"train": items}, shard_bytes=limit, workers=2)
    finally:
        if callers_handler:
            signal.signal(signal.SIGTERM, previous)
    assert list((tmp_path / "out").iterdir()) == []


_SIGTERMED = """
import os, sys, time
from pathlib import Path
from container.annotations import writers
from container.annotations.types import Annotations, Box, Item

paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
items = [Item(p.name, p, 64, 48, [Box("x", 1, 2, 30, 40)], "train") for p in paths]
write = writers.write_records

def slow(fh, records):  # a worker says it is writing, then waits there until the test has sent its SIGTERM
    (Path(sys.argv[3]) / f"writing-{os.getpid()}").touch()
    deadline = time.monotonic() + 600
    while not (Path(sys.argv[3]) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return write(fh, records)

writers.write_records = slow
writers.write_tfrecord(Annotations(items, ["x"], "yolo", Path(sys.argv[1])), Path(sys.argv[2]), {"train": items},
                       shard_bytes=sum(p.stat().st_size for p in paths) // 4, workers=2)
"""


def _sigterm_pending(pid: int) -> bool:
    """SIGTERM sent to ``pid`` and not yet delivered to it (/proc's SigPnd and ShdPnd masks)."""
    import signal

    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    bit = 1 << (signal.SIGTERM - 1)
    return any(int(line.split()[1], 16) & bit for line in status.splitlines() if line.startswith(("SigPnd", "ShdPnd")))


def test_sigterm_to_a_tfrecord_conversion_leaves_no_shard_and_no_worker(tmp_path):
    """``kill PID`` (SIGTERM, its default action) while worker processes write shards: the conversion ends
    (exit status 143, as for a process SIGTERM ended), no shard or ``.partial`` file is left, and no worker
    lives on writing alone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from container.signals import child_pids

    _many_images(tmp_path / "src", 24)
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[2]
    ready = tmp_path / "ready"
    ready.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERMED, str(tmp_path / "src"), str(out), str(ready)],
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE, text=True)
    try:  # both workers are inside a shard's write, and stay there: the stop lands mid-conversion on any machine
        deadline = time.monotonic() + 300
        while len(list(ready.iterdir())) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = child_pids(proc.pid)
        assert list(out.glob("*.partial")) and len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        while _sigterm_pending(proc.pid):  # delivered (the kernel's part) before the workers may finish their shard
            time.sleep(0.01)
        (ready / "go").touch()
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.returncode == 143, err[-2000:]
    assert not [pid for pid in workers if alive(pid)]
    assert not list(out.glob("*.tfrecord*"))


def test_an_image_gone_before_the_shards_are_planned_is_named(tmp_path):
    from container.annotations.types import Annotations, Item
    from container.annotations.writers import write_tfrecord

    items = _many_images(tmp_path / "src", 3)
    items.append(Item("gone.jpg", tmp_path / "src" / "gone.jpg", 64, 48, [], "train"))
    with pytest.raises(UserError, match="cannot read image .*gone.jpg: No such file"):
        write_tfrecord(Annotations(items, ["x"], "yolo", tmp_path / "src"), tmp_path / "out", {"train": items})


# -- conversion on several machines (SageMaker Processing) ----------------------------------------------
def test_two_processing_machines_convert_each_image_once(tmp_path):
    """`python -m container convert` on two machines of one Processing job (the same COCO file, each its
    share by a stable hash of the image key): the union of their TFRecords is the local conversion."""
    import hashlib as _hashlib

    from container.annotations.tfrecord import decode_example, read_records
    from container.processing import main as convert_entry

    source = tmp_path / "processing" / "input" / "data"
    images, annotations = [], []
    for i in range(20):
        name = f"cam{i % 2}/{i // 2:04d}.jpg"  # the same file names in two folders, too
        image(source / name, 64, 48)
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [i, 2, 20, 30],
                            "iscrowd": 0})
    (source / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]}))

    source_ids: list[int] = []

    def records(folder: Path) -> dict[str, tuple]:
        out = {}
        source_ids.clear()
        for shard in sorted(folder.glob("*.tfrecord")):
            for raw in read_records(shard):
                ex = decode_example(raw)
                source_ids.append(int(ex["image/source_id"][0]))  # Model Garden's COCO eval: the image id
                key = _hashlib.sha1(ex["image/encoded"][0]).hexdigest()
                assert key not in out, "an image converted twice"
                out[key] = (tuple(ex["image/object/class/text"]),
                            tuple(round(v, 4) for v in ex["image/object/bbox/xmin"]), shard.name.split("-")[0])
        return out

    for host in ("algo-1", "algo-2"):
        config = tmp_path / host / "resourceconfig.json"
        config.parent.mkdir()
        config.write_text(json.dumps({"current_host": host, "hosts": ["algo-2", "algo-1"]}))
        assert convert_entry(["--to", "tfrecord", "--split", "0.7,0.3", "--input", str(source),
                              "--output", str(tmp_path / "out"), "--resource-config", str(config)]) == 0
    union = records(tmp_path / "out")
    assert sorted(source_ids) == sorted(set(source_ids)), "two machines gave images the same source id"
    names = sorted(p.name for p in (tmp_path / "out").glob("*.tfrecord"))
    assert {n.split("-")[1] for n in names} == {"host0of2", "host1of2"}
    convert(source, "tfrecord", tmp_path / "local", log=quiet)
    local = records(tmp_path / "local")
    assert len(union) == len(local) == 20
    assert {k: v[:2] for k, v in union.items()} == {k: v[:2] for k, v in local.items()}
    assert read_label_map(tmp_path / "out" / "label_map.csv") == ["car", "bus"]


def _voc_pair(root: Path, rel: str, x: int, label: str) -> None:
    """``rel`` (cam1/0003.jpg) and its labelImg XML beside it, naming the image bare (``0003.jpg``)."""
    image(root / rel, 64, 48)
    (root / rel).with_suffix(".xml").write_text(
        f"<annotation><filename>{rel.rsplit('/', 1)[-1]}</filename><size><width>64</width><height>48</height>"
        f"</size><object><name>{label}</name><bndbox><xmin>{x}</xmin><ymin>2</ymin><xmax>{x + 20}</xmax>"
        "<ymax>30</ymax></bndbox></object></annotation>")


def test_processing_machines_with_sharded_images_convert_what_they_received(tmp_path):
    """The images sharded between two machines (as SageMaker's ShardedByS3Key does, by a rule the entry
    does not know), the annotation files and the image list on both: each converts exactly the images it
    received, an image named but absent everywhere is reported once, a note about no image once, and the
    union is the local conversion."""
    from container.processing import main as convert_entry
    from container.processing import manifest_body

    source = tmp_path / "voc"
    keys = [f"cam{i % 2}/{i // 2:04d}.jpg" for i in range(12)]  # one bare name in two folders: resolved by folder
    for i, key in enumerate(keys):
        _voc_pair(source, key, i, ("car", "bus")[i % 2])
    (source / "cam0" / "gone.xml").write_text(  # names an image no listing holds
        "<annotation><filename>gone.jpg</filename><size><width>64</width><height>48</height></size><object>"
        "<name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>")
    (source / "cam1" / "broken.xml").write_text("<annotation><filename>")  # a note about no image
    annotations = tmp_path / "annotations"  # what every machine gets: the files that are not images
    for xml in source.rglob("*.xml"):
        (annotations / xml.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        (annotations / xml.relative_to(source)).write_bytes(xml.read_bytes())
    image_list = tmp_path / "image-list" / "images.manifest"
    image_list.parent.mkdir()
    image_list.write_bytes(manifest_body("s3://bucket/voc/", keys))
    share = {"algo-1": keys[:5], "algo-2": keys[5:]}  # uneven and not the key hash: the entry must not care
    lines = {}
    for host, received in share.items():
        for key in received:
            (tmp_path / host / "images" / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / host / "images" / key).write_bytes((source / key).read_bytes())
        config = tmp_path / host / "resourceconfig.json"
        config.write_text(json.dumps({"current_host": host, "hosts": ["algo-1", "algo-2"]}))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert convert_entry(["--to", "yolo", "--names", "car,bus",
                                  "--input", str(annotations), "--images", str(tmp_path / host / "images"),
                                  "--image-list", str(image_list), "--output", str(tmp_path / "out"),
                                  "--resource-config", str(config)]) == 0
        lines[host] = json.loads(out.getvalue().strip().splitlines()[-1])
    got = {host: line["converted"]["images"] for host, line in lines.items()}
    missing = {host: line["problems"].get("missing image", 0) for host, line in lines.items()}
    unreadable = {host: line["problems"].get("unreadable annotation", 0) for host, line in lines.items()}
    assert sum(missing.values()) == 1 and sum(unreadable.values()) == 1 and unreadable["algo-1"] == 1
    assert {host: got[host] - missing[host] for host in got} == {"algo-1": 5, "algo-2": 7}  # what each received

    def labels(out: Path) -> dict[str, tuple[str, str]]:  # image bytes -> (split, label text)
        found = {}
        for img in sorted((out / "images").rglob("*.jpg")):
            digest = hashlib.sha1(img.read_bytes()).hexdigest()
            assert digest not in found, f"{img} converted twice"
            label = out / "labels" / img.parent.name / img.with_suffix(".txt").name
            found[digest] = (img.parent.name, label.read_text())
        return found

    convert(source, "yolo", tmp_path / "local", names=["car", "bus"], log=quiet)
    union, local = labels(tmp_path / "out"), labels(tmp_path / "local")
    assert len(local) == 12 and union == local
