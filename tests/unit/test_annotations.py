"""Datasets in every format: the same boxes through every path, round trips, every validation problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from container.annotations import check, convert, detect, read, split
from container.annotations.tfrecord import decode_example, encode_example, read_records
from container.failure import UserError
from container.synthetic import make_shapes
from sdk.cli import data_main as data_cli

TEXT_FORMATS = ("voc", "coco", "csv", "groundtruth", "yolo")


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("src") / "shapes", train=10, val=4, size=64, seed=3)


@pytest.fixture(scope="module")
def formats(source, tmp_path_factory) -> dict[str, Path]:
    """The same dataset written in every format."""
    root = tmp_path_factory.mktemp("formats")
    for fmt in (*TEXT_FORMATS, "tfrecord"):
        convert(source, fmt, root / fmt, log=quiet)
    return {fmt: root / fmt for fmt in (*TEXT_FORMATS, "tfrecord")}


def boxes_by_image(ann) -> dict[str, list[tuple]]:
    return {Path(i.name).name: sorted((b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in i.boxes) for i in ann.items}


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_every_format_reads_the_same_boxes(source, formats, fmt):
    want = boxes_by_image(read(source))
    ann = read(formats[fmt])
    assert ann.format == fmt and detect(formats[fmt]) == fmt
    got = boxes_by_image(ann)
    assert got.keys() == want.keys()
    tolerance = 0.51 if fmt == "groundtruth" else 0.06  # GT stores whole pixels, VOC/CSV one decimal
    for name, boxes in want.items():
        assert len(got[name]) == len(boxes), name
        for (la, *a), (lb, *b) in zip(got[name], boxes, strict=False):
            assert la == lb and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=False)), (name, a, b)
    assert sorted(ann.names) == ["ellipse", "rectangle"]
    assert {i.split for i in ann.items} == {"train", "val"}


@pytest.mark.parametrize("fmt", ("voc", "coco", "groundtruth", "csv"))
def test_every_format_converts_back_to_the_same_yolo_labels(source, formats, fmt, tmp_path):
    convert(formats[fmt], "yolo", tmp_path / "yolo", names=["rectangle", "ellipse"], log=quiet)
    for label in (source / "labels").rglob("*.txt"):
        ours = (tmp_path / "yolo" / label.relative_to(source)).read_text().split("\n")
        theirs = label.read_text().split("\n")
        assert len(ours) == len(theirs), label
        for a, b in zip(sorted(ours), sorted(theirs), strict=False):
            fa, fb = a.split(), b.split()
            assert fa[:1] == fb[:1]
            assert all(abs(float(x) - float(y)) < 0.01 for x, y in zip(fa[1:], fb[1:], strict=False))


def test_tfrecord_holds_the_object_detection_keys(source, formats):
    ann = read(source)
    want = {Path(i.name).name: i for i in ann.items}
    shards = sorted(formats["tfrecord"].glob("*.tfrecord"))
    assert [p.name for p in shards] == ["train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    records = [r for shard in shards for r in read_records(shard)]
    assert len(records) == len(ann.items)
    ids = {"rectangle": 1, "ellipse": 2}  # label maps count from 1
    for record in records:
        ex = decode_example(record)
        item = want[ex["image/filename"][0].decode()]
        assert ex["image/encoded"][0] == item.path.read_bytes()
        assert (ex["image/width"], ex["image/height"]) == ([64], [64])
        assert ex["image/object/class/text"] == [b.label.encode() for b in item.boxes]
        assert ex["image/object/class/label"] == [ids[b.label] for b in item.boxes]
        assert ex["image/object/is_crowd"] == [0] * len(item.boxes)
        for key, attr, size in (("xmin", "xmin", 64), ("ymax", "ymax", 64)):
            assert ex[f"image/object/bbox/{key}"] == pytest.approx([getattr(b, attr) / size for b in item.boxes],
                                                                  abs=1e-6)
    assert (formats["tfrecord"] / "label_map.csv").read_text() == "1,rectangle\n2,ellipse\n"
    assert 'id: 2\n  name: "ellipse"' in (formats["tfrecord"] / "label_map.pbtxt").read_text()


def test_tf_example_bytes_parse_with_protobuf_itself():
    """Our hand-written wire format, parsed by the protobuf runtime with tf.Example's schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="example.proto", package="tf", syntax="proto3")
    for name, field_type in (("BytesList", 12), ("FloatList", 2), ("Int64List", 3)):
        msg = proto.message_type.add(name=name)
        msg.field.add(name="value", number=1, type=field_type, label=3)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate((("bytes_list", ".tf.BytesList"), ("float_list", ".tf.FloatList"),
                                                ("int64_list", ".tf.Int64List")), 1):
        feature.field.add(name=name, number=number, type=11, label=1, type_name=type_name, oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=11, label=1, type_name=".tf.Feature")
    features.field.add(name="feature", number=1, type=11, label=3, type_name=".tf.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    example.field.add(name="features", number=1, type=11, label=1, type_name=".tf.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    Example = message_factory.GetMessageClass(pool.FindMessageTypeByName("tf.Example"))

    data = encode_example({"image/encoded": ("bytes", [b"\xff\xd8jpeg"]), "image/height": ("int64", [480]),
                           "image/object/class/label": ("int64", [1, 2, -3]),
                           "image/object/bbox/xmin": ("float", [0.25, 0.5]), "empty": ("float", [])})
    parsed = Example.FromString(data).features.feature
    assert parsed["image/encoded"].bytes_list.value == [b"\xff\xd8jpeg"]
    assert list(parsed["image/height"].int64_list.value) == [480]
    assert list(parsed["image/object/class/label"].int64_list.value) == [1, 2, -3]
    assert list(parsed["image/object/bbox/xmin"].float_list.value) == [0.25, 0.5]
    assert decode_example(Example.FromString(data).SerializeToString())["image/object/class/label"] == [1, 2, -3]


@pytest.mark.parametrize("boxes, image_bytes", [(0, 10), (1, 5000), (3, 70000), (40, 3_000_000)])
def test_the_object_detection_encoder_writes_the_generic_encoders_bytes(boxes, image_bytes):
    """od_example_parts (the hot path of a conversion) against example_parts (the reference): same bytes."""
    import random

    from container.annotations.tfrecord import example_parts, od_example_parts

    rng = random.Random(boxes)
    image = rng.randbytes(image_bytes)
    coords = {k: [rng.random() for _ in range(boxes)] for k in ("xmin", "xmax", "ymin", "ymax", "areas")}
    labels, crowd = [rng.randrange(1, 20000) for _ in range(boxes)], [rng.randrange(2) for _ in range(boxes)]
    texts = [f"class {i} \u00e9".encode() for i in labels]
    fast = od_example_parts(encoded=image, fmt=b"jpeg", filename=b"cam1__0001.jpg", source_id=b"17", height=3000,
                            width=20000, labels=labels, texts=texts, crowd=crowd, **coords)
    reference = example_parts({
        "image/encoded": ("bytes", [image]), "image/format": ("bytes", [b"jpeg"]),
        "image/filename": ("bytes", [b"cam1__0001.jpg"]), "image/source_id": ("bytes", [b"17"]),
        "image/height": ("int64", [3000]), "image/width": ("int64", [20000]),
        "image/object/bbox/xmin": ("float", coords["xmin"]), "image/object/bbox/xmax": ("float", coords["xmax"]),
        "image/object/bbox/ymin": ("float", coords["ymin"]), "image/object/bbox/ymax": ("float", coords["ymax"]),
        "image/object/class/label": ("int64", labels), "image/object/class/text": ("bytes", texts),
        "image/object/area": ("float", coords["areas"]), "image/object/is_crowd": ("int64", crowd)})
    assert fast[1] == reference[1] == len(b"".join(fast[0]))
    decoded = decode_example(b"".join(fast[0]))
    assert decoded == decode_example(b"".join(reference[0]))
    if image_bytes >= 4096:  # the reference keeps a big image last, as its own part: then the bytes are equal too
        assert b"".join(fast[0]) == b"".join(reference[0])
    assert decoded["image/encoded"] == [image] and decoded["image/object/class/label"] == labels


def test_model_garden_decodes_our_tfrecords(formats):
    pytest.importorskip("official.vision.dataloaders.tf_example_label_map_decoder",
                        reason="Model Garden is not in .venv; test_model_garden_decoder_in_its_own_environment runs "
                        "this test in .venv-tf")
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_label_map_decoder import TfExampleDecoderLabelMap

    decoder = TfExampleDecoderLabelMap(str(formats["tfrecord"] / "label_map.csv"))
    count = 0
    for raw in tf.data.TFRecordDataset(str(formats["tfrecord"] / "train-00000-of-00001.tfrecord")):
        decoded = decoder.decode(raw)
        ours = decode_example(raw.numpy())
        assert tuple(decoded["image"].shape) == (64, 64, 3)
        assert list(decoded["groundtruth_classes"].numpy()) == ours["image/object/class/label"]
        boxes = [v for box in decoded["groundtruth_boxes"].numpy().tolist() for v in box]  # ymin, xmin, ymax, xmax
        assert boxes == pytest.approx([v for box in zip(
            ours["image/object/bbox/ymin"], ours["image/object/bbox/xmin"],
            ours["image/object/bbox/ymax"], ours["image/object/bbox/xmax"], strict=False) for v in box], abs=1e-6)
        count += 1
    assert count == 10


def test_model_garden_reads_a_label_map_with_a_comma_in_a_name(source, tmp_path):
    """label_map.csv through the csv module: Model Garden's decoder maps "apple, red" to its id."""
    pytest.importorskip("official.vision.dataloaders.tf_example_label_map_decoder",
                        reason="Model Garden is not in .venv; test_model_garden_decoder_in_its_own_environment runs "
                        "this test in .venv-tf")
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_label_map_decoder import TfExampleDecoderLabelMap

    names = ["apple, red", "driver's license"]
    convert(source, "tfrecord", tmp_path / "out", names=["rectangle", "ellipse"], log=quiet)
    ann = read(source)
    for item in ann.items:
        for box in item.boxes:
            box.label = names[["rectangle", "ellipse"].index(box.label)]
    ann.names = names
    from container.annotations.writers import write_tfrecord

    write_tfrecord(ann, tmp_path / "renamed", {"train": ann.items})
    decoder = TfExampleDecoderLabelMap(str(tmp_path / "renamed" / "label_map.csv"))
    raw = next(iter(tf.data.TFRecordDataset(str(tmp_path / "renamed" / "train-00000-of-00001.tfrecord"))))
    ours = decode_example(raw.numpy())
    assert list(decoder.decode(raw)["groundtruth_classes"].numpy()) == ours["image/object/class/label"]
    assert {t.decode() for t in ours["image/object/class/text"]} <= set(names)


def test_coco_category_ids_need_not_be_contiguous(tmp_path, source):
    image = next((source / "images" / "train").iterdir())
    shutil.copy(image, tmp_path / "a.jpg")
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 10, "file_name": "a.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 20], "iscrowd": 0},
                        {"id": 2, "image_id": 10, "category_id": 3, "bbox": [5, 5, 5, 5], "iscrowd": 1}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))
    ann = read(tmp_path)
    assert ann.names == ["cat", "dog"]
    assert [(b.label, b.xmax, b.ymax, b.crowd) for b in ann.items[0].boxes] == [("dog", 11, 22, False),
                                                                               ("cat", 10, 10, True)]


def test_ground_truth_manifest_as_the_labeling_job_writes_it(tmp_path, source):
    image = next((source / "images" / "train").iterdir())
    shutil.copy(image, tmp_path / "img1.jpg")
    record = {"source-ref": "s3://my-bucket/raw/img1.jpg",
              "pcb-labels": {"image_size": [{"width": 64, "height": 64, "depth": 3}],
                             "annotations": [{"class_id": 1, "top": 10, "left": 4, "height": 20, "width": 30}]},
              "pcb-labels-metadata": {"objects": [{"confidence": 0.09}], "class-map": {"0": "ok", "1": "defect"},
                                      "type": "groundtruth/object-detection", "human-annotated": "yes",
                                      "creation-date": "2026-01-01T00:00:00", "job-name": "labeling-job/pcb-labels"}}
    (tmp_path / "output.manifest").write_text(json.dumps(record) + "\n")
    ann = read(tmp_path)
    assert ann.format == "groundtruth" and ann.names == ["ok", "defect"]
    item = ann.items[0]
    assert item.path == tmp_path / "img1.jpg"
    assert [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in item.boxes] == [("defect", 4, 10, 34, 30)]


def test_ambiguous_and_empty_folders_are_refused(formats, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(formats["voc"], mixed)
    shutil.copy(formats["coco"] / "train.json", mixed / "train.json")
    with pytest.raises(UserError, match=r"more than one annotation format \(coco: 1 file.*voc: 14 file"):
        detect(mixed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no annotations found"):
        detect(tmp_path / "empty")


@pytest.fixture
def broken(formats, tmp_path) -> Path:
    """A VOC folder with one of each problem."""
    root = tmp_path / "broken"
    shutil.copytree(formats["voc"] / "train", root)
    xmls = sorted(root.glob("*.xml"), key=lambda x: "<object>" not in x.read_text())  # labeled ones first
    (root / Path(xmls[0].read_text().split("<filename>")[1].split("<")[0])).unlink()  # missing image
    jpg = Path(xmls[1].read_text().split("<filename>")[1].split("<")[0])
    (root / jpg).write_bytes(b"not a jpeg")  # unreadable
    xmls[2].write_text(xmls[2].read_text().replace("<xmax>", "<xmax>9", 1))  # far outside the 64 px image
    text = xmls[3].read_text()
    xmin = text.split("<xmin>")[1].split("<")[0]
    xmls[3].write_text(text.replace(f"<xmax>{text.split('<xmax>')[1].split('<')[0]}", f"<xmax>{xmin}", 1))
    xmls[4].write_text(xmls[4].read_text().replace("<name>", "<name>tri", 1))  # unknown class
    dup = Path(xmls[5].read_text().split("<filename>")[1].split("<")[0])
    shutil.copy(root / dup, root / "copy.jpg")
    (root / "copy.xml").write_text(xmls[5].read_text().replace(str(dup), "copy.jpg"))  # duplicate image
    xmls[6].write_text("<annotation><filename>" + xmls[6].read_text().split("<filename>")[1].split("<object>")[0]
                       + "</annotation>" if "<object>" in xmls[6].read_text() else xmls[6].read_text())
    shutil.copy(root / dup, root / "stray.jpg")  # no annotation mentions it (and a duplicate file, unlabeled)
    (root / "bad.xml").write_text("<annotation><filename>")  # broken XML
    return root


def test_every_problem_is_found(broken):
    report = check(read(broken, names=["rectangle", "ellipse"]))
    assert set(report.problems) == {"missing image", "unreadable image", "box outside the image", "zero-area box",
                                    "unknown class", "duplicate image", "unreadable annotation"}
    assert {"image without labels", "image no annotation mentions"} <= set(report.warnings)
    assert all(f.count >= 1 for f in report.problems.values())
    text = report.text()
    assert "missing image: 1" in text and "unknown class: 1 (e.g." in text and "tri" in text


def test_strict_fails_and_lenient_skips(broken, tmp_path):
    with pytest.raises(UserError, match="problems \\(strict\\)"):
        convert(broken, "yolo", tmp_path / "a", names=["rectangle", "ellipse"], strict=True, log=quiet)
    ann, report = convert(broken, "yolo", tmp_path / "b", names=["rectangle", "ellipse"], log=quiet)
    written = list((tmp_path / "b" / "labels" / "train").glob("*.txt"))
    assert len(written) == len(ann.items) - len(report.bad_items) > 0


def test_split_is_seeded_and_keeps_every_class(source):
    items = read(source).items
    a = split(items, (0.6, 0.2, 0.2), seed=1)
    b = split(items, (0.6, 0.2, 0.2), seed=1)
    assert {k: [i.name for i in v] for k, v in a.items()} == {k: [i.name for i in v] for k, v in b.items()}
    assert [len(a[k]) for k in ("train", "val", "test")] == [8, 3, 3]
    for part in a.values():
        assert {bx.label for it in part for bx in it.boxes} == {"rectangle", "ellipse"}
    assert sum(map(len, a.values())) == len(items) == len({i.name for v in a.values() for i in v})
    with pytest.raises(UserError, match="adding up to 1"):
        split(items, (0.7, 0.7))


def test_cli(formats, tmp_path, capsys):
    assert data_cli(["check", str(formats["voc"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"]["format"] == "voc" and out["report"]["ok"]
    assert data_cli(["convert", str(formats["coco"]), "--to", "yolo", "--out", str(tmp_path / "y"),
                     "--split", "0.5,0.5", "--seed", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["as"] == "yolo" and printed["source"]["format"] == "coco" and printed["source"]["images"] == 14
    assert read(tmp_path / "y").summary()["splits"] == {"train": 7, "val": 7}
    assert data_cli(["check", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_darknet_layout_as_cvat_exports_it(source, tmp_path):
    """CVAT's "YOLO 1.1": obj.names, obj_train_data/ with each .txt beside its image."""
    root = tmp_path / "cvat"
    (root / "obj_train_data").mkdir(parents=True)
    (root / "obj.names").write_text("rectangle\nellipse\n")
    for image in (source / "images" / "train").iterdir():
        shutil.copy(image, root / "obj_train_data" / image.name)
        shutil.copy(source / "labels" / "train" / f"{image.stem}.txt", root / "obj_train_data" / f"{image.stem}.txt")
    assert detect(root) == "yolo"
    ann = read(root)
    assert ann.names == ["rectangle", "ellipse"]
    want = boxes_by_image(read(source))
    got = boxes_by_image(ann)
    assert got == {k: v for k, v in want.items() if k in got} and len(got) == 10


def test_ultralytics_converter_agrees_with_ours(formats, tmp_path):
    """Another converter on the same COCO files: ultralytics' convert_coco writes the labels we write."""
    from ultralytics.data.converter import convert_coco

    coco = tmp_path / "annotations"
    coco.mkdir()
    shutil.copy(formats["coco"] / "train.json", coco / "train.json")
    convert_coco(labels_dir=str(coco), save_dir=str(tmp_path / "theirs"), cls91to80=False)
    convert(formats["coco"], "yolo", tmp_path / "ours", log=quiet)
    theirs = sorted((tmp_path / "theirs" / "labels" / "train").glob("*.txt"))
    assert theirs
    for label in theirs:
        ours = (tmp_path / "ours" / "labels" / "train" / label.name).read_text().split()
        assert [round(float(v), 4) for v in ours] == [round(float(v), 4) for v in label.read_text().split()]


TF_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tf" / "bin" / "python"


@pytest.mark.skipif(not TF_PYTHON.exists(), reason="no .venv-tf (made by .ci/run from requirements/tf-test.txt)")
def test_model_garden_decoder_in_its_own_environment():
    """TensorFlow's pins clash with the YOLO stack's, so the decoder test above runs again in .venv-tf."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([str(TF_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-k", "model_garden_decodes or model_garden_reads",
                             str(Path(__file__))], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
