"""Careless and hostile input at the dataset readers, the archive, the hyperparameters (issue 22, items 5-9).

Each class of input is a user error naming the file and the fix: never an OverflowError, TypeError,
RecursionError or OSError traceback, never a list sized by a number in the file, never a file read from
outside the dataset folder, never a conversion mixed into an earlier one.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from container.annotations import check, convert, read
from container.failure import UserError
from container.synthetic import make_shapes
from sdk.cli import data_main as data_cli


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    """One small dataset (3 images) written in every text format the writers have."""
    root = tmp_path_factory.mktemp("hostile")
    source = make_shapes(root / "shapes", train=3, val=0, size=64, seed=5)
    out = {"yolo": source}
    for fmt in ("voc", "coco", "csv", "groundtruth"):
        convert(source, fmt, root / fmt, log=quiet)
        out[fmt] = root / fmt
    return out


def _copy(formats: dict[str, Path], fmt: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(formats[fmt], tmp_path / fmt))


def _one(folder: Path, pattern: str) -> Path:
    return sorted(folder.rglob(pattern))[0]


def _voc(value: str, tag: str):
    def corrupt(root: Path) -> str:
        xml = _one(root, "*.xml")
        text = xml.read_text()
        start = text.index(f"<{tag}>") + len(tag) + 2
        xml.write_text(text[:start] + value + text[text.index(f"</{tag}>", start):])
        return xml.name
    return corrupt


def _csv(column: str, value: str):
    def corrupt(root: Path) -> str:
        path = _one(root, "*.csv")
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index(column)] = value
        path.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
        return path.name
    return corrupt


def _coco(change):
    def corrupt(root: Path) -> str:
        path = _one(root, "*.json")
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))  # float("inf") is written as Infinity, as Python's json reads it
        return path.name
    return corrupt


def _gt(change):
    def corrupt(root: Path) -> str:
        path = _one(root, "*.manifest")
        lines = path.read_text().splitlines()
        record = json.loads(lines[0])
        change(record)
        path.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
        return path.name
    return corrupt


def _gt_label(record: dict) -> dict:
    return next(v for k, v in record.items() if isinstance(v, dict) and "annotations" in v)


def _yolo(line: str):
    def corrupt(root: Path) -> str:
        label = _one(root / "labels", "*.txt")
        label.write_text(line + "\n")
        return label.name
    return corrupt


def _set(obj: dict, key: str, value) -> None:
    obj[key] = value


BAD = {
    "voc width inf": ("voc", _voc("inf", "width")),
    "voc width 1e400": ("voc", _voc("1e400", "width")),
    "voc xmin nan": ("voc", _voc("nan", "xmin")),
    "voc xmax 1e400": ("voc", _voc("1e400", "xmax")),
    "csv width inf": ("csv", _csv("width", "inf")),
    "csv xmin nan": ("csv", _csv("xmin", "nan")),
    "coco bbox of strings": ("coco", _coco(lambda d: _set(d["annotations"][0], "bbox", ["1", "2", "30", "40"]))),
    "coco bbox 1e400": ("coco", _coco(lambda d: _set(d["annotations"][0], "bbox", [float("inf"), 2, 30, 40]))),
    "coco width Infinity": ("coco", _coco(lambda d: _set(d["images"][0], "width", float("inf")))),
    "coco width a string": ("coco", _coco(lambda d: _set(d["images"][0], "width", "wide"))),
    "coco annotation a list": ("coco", _coco(lambda d: d["annotations"].__setitem__(0, [1, 2]))),
    "groundtruth left Infinity": ("groundtruth", _gt(lambda r: _set(_gt_label(r)["annotations"][0], "left",
                                                                     float("inf")))),
    "groundtruth width a string": ("groundtruth", _gt(lambda r: _set(_gt_label(r)["annotations"][0], "width", "9"))),
    "groundtruth class_id a string": ("groundtruth", _gt(lambda r: _set(_gt_label(r)["annotations"][0], "class_id",
                                                                         "cat"))),
    "groundtruth image width 1e400": ("groundtruth", _gt(lambda r: _set(_gt_label(r)["image_size"][0], "width",
                                                                         float("inf")))),
    "yolo x inf": ("yolo", _yolo("0 inf 0.5 0.1 0.1")),
    "yolo class 1e400": ("yolo", _yolo("1e400 0.5 0.5 0.1 0.1")),
    "yolo nan": ("yolo", _yolo("0 0.5 nan 0.1 0.1")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_number_that_is_no_finite_number_is_a_problem_naming_the_file(formats, tmp_path, case):
    """inf, 1e400, nan, a string or a list where a number belongs: the image is left out with a problem that
    names the file (a strict conversion: a UserError, exit 2), never an OverflowError/TypeError traceback."""
    fmt, corrupt = BAD[case]
    root = _copy(formats, fmt, tmp_path)
    name = corrupt(root)
    ann = read(root, fmt)
    report = check(ann)
    unattributed = case == "coco annotation a list"  # no image id to leave out: a problem of the file
    assert not report.ok and len(report.left_out) == (0 if unattributed else 1), report.text()
    said = ("not an object",) if unattributed else ("number", "class index")
    assert name in report.text() and any(word in report.text() for word in said), report.text()
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        convert(root, "yolo", tmp_path / "strict", strict=True, log=quiet)
    convert(root, "coco", tmp_path / "lenient", log=quiet)  # the other images convert; the bad one is left out
    written = json.loads((tmp_path / "lenient" / "train.json").read_text())
    assert len(written["images"]) == (3 if unattributed else 2)
    assert data_cli(["convert", str(root), "--to", "yolo", "--out", str(tmp_path / "cli"), "--strict"]) == 2


def test_labelme_and_cvat_refuse_non_finite_numbers(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    Image.new("RGB", (32, 32)).save(tmp_path / "b.jpg")
    labelme = tmp_path / "labelme"
    labelme.mkdir()
    for stem, points in (("a", [[1, 1], [9, 9]]), ("b", [[1, 1], [float("inf"), 9]])):
        shutil.copy(tmp_path / f"{stem}.jpg", labelme)
        (labelme / f"{stem}.json").write_text(json.dumps({
            "shapes": [{"label": "x", "points": points, "shape_type": "rectangle"}], "imagePath": f"{stem}.jpg",
            "imageWidth": 32, "imageHeight": 32}))
    report = check(read(labelme, "labelme"))
    assert len(report.left_out) == 1 and "b.json" in report.text() and "finite" in report.text()

    cvat = tmp_path / "cvat"
    cvat.mkdir()
    for stem in "ab":
        shutil.copy(tmp_path / f"{stem}.jpg", cvat)
    (cvat / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>x</name></label></labels></task>'
        '</meta><image id="0" name="a.jpg" width="32" height="32"><box label="x" xtl="1" ytl="1" xbr="1e400" '
        'ybr="9"/></image><image id="1" name="b.jpg" width="inf" height="32"><box label="x" xtl="1" ytl="1" '
        'xbr="9" ybr="9"/></image></annotations>')
    report = check(read(cvat, "cvat"))
    assert "annotations.xml" in report.text() and "finite" in report.text(), report.text()
    assert report.problems["unreadable annotation"].count == 2


def test_a_coco_file_nested_a_million_brackets_deep_is_a_user_error_naming_it(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    (root / "instances.json").write_text('{"images": ' + "[" * 1_000_000 + "]" * 1_000_000 + ', "annotations": []}')
    with pytest.raises(UserError, match=r"instances\.json: not a readable COCO JSON file \(nested too deeply"):
        read(root / "instances.json", "coco")


def test_a_manifest_or_labelme_line_nested_too_deeply_is_a_problem_not_a_recursion_error(formats, tmp_path):
    root = _copy(formats, "groundtruth", tmp_path)
    manifest = _one(root, "*.manifest")
    manifest.write_text(manifest.read_text() + "[" * 100_000 + "\n")
    report = check(read(root, "groundtruth"))
    assert "nested too deeply" in report.text()


@pytest.mark.parametrize("class_id", [10_000_000, 10**9])
def test_a_ground_truth_class_id_sizes_nothing(formats, tmp_path, class_id):
    """class_id 10,000,000 made a names list of 10 million (44 s, 2 GB, and "no problems"); 10^9 ran out of
    memory. The id is refused as the problem of its line; the names stay the classes present."""
    root = _copy(formats, "groundtruth", tmp_path)
    _gt(lambda r: _set(_gt_label(r)["annotations"][0], "class_id", class_id))(root)
    ann = read(root, "groundtruth")
    assert len(ann.names) < 10
    report = check(ann)
    assert not report.ok and f"got {class_id}" in report.text() and "class index" in report.text()


def test_converting_into_a_folder_holding_an_earlier_conversion_is_refused_and_changes_nothing(formats, tmp_path):
    """``--to voc --out X`` twice: the second dataset's labels beside the first one's images (same names, the
    image never overwritten), every pair mismatched. Refused, naming the folder; nothing written or removed."""
    out = tmp_path / "out"
    convert(formats["coco"], "voc", out, log=quiet)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = make_shapes(tmp_path / "other", train=3, val=0, size=64, seed=9)
    with pytest.raises(UserError, match=f"output folder {out} already holds files .*new or empty folder"):
        convert(other, "voc", out, log=quiet)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert data_cli(["convert", str(other), "--to", "voc", "--out", str(out)]) == 2
    (tmp_path / "empty").mkdir()
    convert(other, "voc", tmp_path / "empty", log=quiet)  # an empty folder is fine


def test_a_link_out_of_the_dataset_is_never_read(formats, tmp_path, capsys):
    """A label linked to a credentials file had its first word printed by ``sdk.data check``. Now nothing is
    read: the link is named, the secret never reaches the output."""
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key_SECRETWORD 1 2 3 4\n")
    root = _copy(formats, "yolo", tmp_path)
    label = _one(root / "labels", "*.txt")
    label.unlink()
    label.symlink_to(secret)
    with pytest.raises(UserError, match=rf"1 link\(s\) lead out of the dataset folder \(labels/train/{label.name}\)"):
        read(root)
    assert data_cli(["check", str(root)]) == 2
    captured = capsys.readouterr()
    assert "SECRETWORD" not in captured.out + captured.err and label.name in captured.err
    label.unlink()  # a link that stays inside the folder is fine
    label.symlink_to(sorted((root / "labels").rglob("*.txt"))[-1])
    assert len(read(root).items) == 3


def test_the_stream_reader_reads_one_long_string_in_log_n_reads_not_n(tmp_path, monkeypatch):
    """A 256 MB string took 88 s (decoded again after every 1 MB chunk: quadratic); json.load under a second.
    Counted in reads, not seconds: a string of 4,000 chunks now needs a dozen reads."""
    from container.annotations import jsonstream

    monkeypatch.setattr(jsonstream, "CHUNK", 64)
    path = tmp_path / "long.json"
    path.write_text('{"images": [{"id": 1, "file_name": "' + "a" * 256_000 + '"}], "annotations": []}')
    reads = 0
    more = jsonstream._Buffer.more

    def counted(self):
        nonlocal reads
        reads += 1
        return more(self)

    monkeypatch.setattr(jsonstream._Buffer, "more", counted)
    got: list = []
    jsonstream.top_level(path, {"images": got.append})
    assert len(got[0]["file_name"]) == 256_000
    assert reads < 40, reads


def _tar(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return path


@pytest.mark.parametrize("name, said", [
    ("/".join(["d"] * 1500) + "/best.pt", "1501 folders deep"),
    ("x" * 300 + ".pt", "name part of 303 bytes"),
    ("models/" + "é" * 130 + ".pt", "name part of 263 bytes"),
])
def test_an_archive_member_too_deep_or_too_long_for_a_file_system_is_refused_before_writing(tmp_path, name, said):
    from container.archive import safe_extract

    archive = _tar(tmp_path / "model.tar.gz", name)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match=said):
        safe_extract(archive, dest)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


def test_a_hyperparameter_nested_1100_brackets_deep_is_a_user_error():
    from container.schema import Schema
    from container.toolkit_env import toolkit_decode

    for image, key in (("yolo", "names"), ("yolo", "epochs"), ("tfod", "overrides")):
        with pytest.raises(UserError, match=f"hyperparameter '{key}' is nested too deeply to read"):
            Schema.load(image).parse({key: "[" * 1100 + "]" * 1100})
        for value in ("(" + "-" * 100_000 + "1)", "{" * 1100, "[" * 1100):  # a string, or a user error
            with contextlib.suppress(UserError):
                Schema.load(image).parse({key: value})
    assert toolkit_decode("[" * 1100) == "[" * 1100


@pytest.mark.parametrize("value", ["yolo11n", "https://example.com/yolo11n.pt", "s3://bucket/yolo11n.pt",
                                   "/etc/passwd", "HTTP://x/yolov8s.yaml"])
def test_a_model_ultralytics_would_download_is_refused_by_the_image_and_the_sdk_alike(value):
    """No suffix (ultralytics adds .pt and downloads it), a URL: refused by the one rule in schema.yaml, which the
    image's parse and the SDK's preflight both apply, naming the weights channel."""
    from container.schema import Schema

    refused = r"model.*must name a \.yaml or \.yml or \.pt file.*downloads nothing.*'weights'"
    with pytest.raises(UserError, match=refused):
        Schema.load("yolo").parse({"model": value})
    with pytest.raises(UserError, match=r"pretrained.*must name a \.pt file.*weights channel"):
        Schema.load("yolo").parse({"pretrained": value})
    assert Schema.load("yolo").parse({"model": "yolo11n.pt", "pretrained": True}) == {"model": "yolo11n.pt",
                                                                                        "pretrained": True}


@pytest.mark.parametrize("key, value, said", [
    ("epochs", "1e12", "between 1 and 100000"), ("freeze", "1000000", "between 0 and 1000"),
    ("seed", "-1", "between 0 and 4294967295"), ("time", "1e9", "at most 672")])
def test_numbers_past_what_a_job_can_use_are_refused(key, value, said):
    from container.schema import Schema

    with pytest.raises(UserError, match=f"hyperparameter '{key}' must be {said}"):
        Schema.load("yolo").parse({key: value})


def test_the_sdk_preflight_refuses_what_the_image_refuses():
    from sdk import ConfigurationError, validate_hyperparameters

    for hps, said in (({"model": "yolo11n"}, "'weights' channel"), ({"epochs": 10**12}, "between 1 and 100000"),
                      ({"model": "https://x/y.pt"}, "downloads nothing"),
                      ({"freeze": 1_000_000}, "between 0 and 1000")):
        with pytest.raises(ConfigurationError, match=said):
            validate_hyperparameters(hps, "yolo")


@pytest.mark.parametrize("device, gpus, ok", [("0", 0, False), (0, 0, False), ("0,1", 1, False), ([0, 3], 2, False),
                                              ("cpu", 0, True), ("-1", 0, True), ("1", 2, True), (None, 0, True),
                                              ("cuda:0", 1, True), ("tpu", 1, False)])
def test_a_device_this_instance_lacks_is_a_user_error(device, gpus, ok):
    from container.yolo.validate import check_devices

    if ok:
        check_devices({"device": device}, {}, gpus)
    else:
        with pytest.raises(UserError, match="device"):
            check_devices({"device": device}, {}, gpus)


def test_a_pretrained_name_not_in_the_weights_channel_is_refused(tmp_path):
    from container.yolo.prepare import choose_model

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(UserError, match="pretrained 'yolo11s.pt' is not in the weights channel.*downloads nothing"):
        choose_model({"model": "yolo11n.yaml", "pretrained": "yolo11s.pt"}, True, [])
    assert choose_model({"model": "yolo11n.yaml", "pretrained": "w.pt"}, True, [weights]) == ("yolo11n.yaml",
                                                                                               str(weights))
    with pytest.raises(UserError, match="is no file"):
        choose_model({"model": "/somewhere/else.yaml"}, True, [])


def test_folders_flattened_into_one_name_past_255_bytes_get_a_short_unique_name(tmp_path):
    """``cam1/0001.jpg`` and ``cam2/0001.jpg`` are written as ``cam1__0001.jpg``...; with long folder names the
    flat name passed 255 bytes: OSError ENAMETOOLONG, a traceback. Now a hash of the key and the name's tail."""
    from PIL import Image

    root = tmp_path / "deep"
    for i, cam in enumerate(("c" * 125, "d" * 125)):
        folder = root / cam / ("e" * 125)
        folder.mkdir(parents=True)
        Image.new("RGB", (32, 32), (i * 100, 0, 0)).save(folder / "0001.jpg")
        (folder / "0001.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("c\n")
    for fmt in ("voc", "yolo", "coco"):
        convert(root, fmt, tmp_path / fmt, log=quiet)
        names = [p.name for p in (tmp_path / fmt).rglob("*.jpg")]
        assert len(set(names)) == 2 and all(len(n.encode()) <= 255 and n.endswith("__0001.jpg") for n in names)
    assert len(read(tmp_path / "yolo").items) == 2


@pytest.mark.parametrize("text, said", [
    ("names: " + "[" * 5000, "not valid YAML"),
    ("names: {a: cat}", "'names' must be a list"),
    ("names: 5", "'names' must be a list"),
    ("names: {0: cat, 1000000: dog}", r"ids must be 1..2 without gaps .*got \[1, 1000001\]"),
])
def test_a_hostile_label_map_is_a_user_error(tmp_path, text, said):
    from container.annotations.labelmap import read_label_map

    path = tmp_path / "labels.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=said):
        read_label_map(path)
    pbtxt = tmp_path / "label_map.pbtxt"
    pbtxt.write_text('item { id: 1 name: "a\\xzz" }')  # \x without hex digits: the character itself
    assert read_label_map(pbtxt) == ["axzz"]


def test_a_tfrecord_claiming_a_huge_record_is_refused_without_allocating_it(tmp_path):
    import struct

    from container.annotations.tfrecord import decode_example, read_records

    path = tmp_path / "train.tfrecord"
    path.write_bytes(struct.pack("<QI", 1 << 62, 0) + b"x" * 16)
    with pytest.raises(ValueError, match="claims 4611686018427387904 bytes, the file has 16 left"):
        list(read_records(path, verify=False))
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        decode_example(b"\x0a\x04\x0a\x02\x08\x01")  # a key field holding a number


def test_a_fetched_model_with_a_damaged_metrics_file_is_a_fetch_error(tmp_path):
    from sdk._errors import FetchError
    from sdk.jobs.unpack import describe_model_dir

    for text in ("[" * 100_000, "{not json", b"\xff\xfe"):
        (tmp_path / "metrics.json").write_bytes(text.encode() if isinstance(text, str) else text)
        with pytest.raises(FetchError, match="metrics.json is not the metrics.json an image writes"):
            describe_model_dir("job", tmp_path)


def test_a_dataset_file_that_cannot_be_read_is_a_user_error_naming_it(formats, tmp_path):
    root = _copy(formats, "voc", tmp_path)
    (root / "ImageSets" / "Main" / "train.txt").mkdir(parents=True)  # a folder where the devkit has a file
    with pytest.raises(UserError, match="cannot read .*train.txt of the dataset .*Is a directory"):
        read(root, "voc")


@pytest.mark.parametrize("ratios", [[float("nan"), 1.0], [0.5, float("nan"), 0.5], [float("inf"), 0.2]])
def test_split_ratios_that_are_no_finite_numbers_are_a_user_error(formats, ratios):
    from container.annotations.split import split

    with pytest.raises(UserError, match="split ratios must be 2 or 3 non-negative numbers"):
        split(read(formats["coco"]).items, ratios)


def test_a_processing_image_key_with_a_line_break_is_refused(tmp_path):
    """The keys of the images on other machines are written one a line (``.images-elsewhere``): a key holding
    a line break would become two keys."""
    from container.processing import link_tree

    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="holds a line break"):
        link_tree(tmp_path / "annotations", tmp_path / "images", ["a.jpg", "b\nc.jpg"], tmp_path / "tree")


@pytest.mark.parametrize("overrides", ["task.init_checkpoint=gs://bucket/ckpt",
                                       '{"task": {"train_data": {"input_path": "https://x/train-*"}}}',
                                       {"task": {"init_checkpoint": "s3://b/ckpt-10"}}])
def test_tfod_overrides_naming_a_url_are_refused_by_the_image_and_the_sdk(overrides):
    """Model Garden's overrides are free-form: a gs:// or https:// checkpoint or dataset would be fetched by
    TensorFlow. Any URL in them is refused (schema.yaml ``local``), naming the channel to use instead."""
    from container.schema import Schema
    from sdk import ConfigurationError, validate_hyperparameters

    with pytest.raises(UserError, match=r"hyperparameter 'overrides' names a URL .*checkpoint channel"):
        Schema.load("tfod").parse({"overrides": overrides})
    with pytest.raises(ConfigurationError, match="names a URL"):
        validate_hyperparameters({"overrides": overrides}, "tfod")
    assert Schema.load("tfod").parse({"overrides": "task.init_checkpoint_modules=backbone"})


@pytest.mark.parametrize("row", ["a.jpg,32,32," + "x" * 200_000 + ",1,1,9,9"])
def test_a_csv_row_past_the_csv_modules_limits_is_a_problem_naming_the_file(tmp_path, row):
    """A field over 128 kB: csv.Error, which is no ValueError, was a traceback."""
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    (tmp_path / "train_labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                               "a.jpg,32,32,c,1,1,9,9\n" + row + "\n")
    report = check(read(tmp_path, "csv"))
    assert not report.ok and "train_labels.csv: not a readable CSV file" in report.text()


def test_cfg_files_nested_too_deeply_are_user_errors(tmp_path):
    """The cfg channel's train-args.json and YAML files: RecursionError tracebacks before."""
    from container.contract import Environment
    from container.schema import Schema
    from container.yolo.trainer import resolve_hyperparameters

    cfg = tmp_path / "input" / "data" / "cfg"
    cfg.mkdir(parents=True)
    env = Environment(base_dir=tmp_path, hyperparameters_raw={})
    (cfg / "train-args.json").write_text("[" * 100_000)
    with pytest.raises(UserError, match="train-args.json is not valid JSON: nested too deeply"):
        resolve_hyperparameters(env, Schema.load("yolo"))
    (cfg / "train-args.json").unlink()
    (cfg / "hyp.yaml").write_text("a: " + "[" * 100_000)
    with pytest.raises(UserError, match="hyp.yaml is not valid YAML"):
        resolve_hyperparameters(env, Schema.load("yolo"))


@pytest.mark.parametrize("value", ["a: " + "[" * 100_000, "{a: [1", "task.a=1,task.a.b=2", "a=" + "[" * 100_000])
def test_tfod_overrides_that_are_no_mapping_are_user_errors(value):
    from container.tfod.trainer import parse_overrides

    with pytest.raises(UserError, match="overrides .* are not YAML/JSON or a.b.c=value pairs"):
        parse_overrides(value)


def test_an_output_path_no_file_system_can_hold_is_exit_2_naming_it(formats, tmp_path, capsys):
    out = tmp_path / ("o" * 300)
    assert data_cli(["convert", str(formats["coco"]), "--to", "yolo", "--out", str(out)]) == 2
    assert "File name too long" in capsys.readouterr().err
