"""More of issue 22's classes of input, on the doors its listed cases did not name: every numeric hyperparameter
of both images under NaN/infinity/huge numbers, every format's reader under wrong JSON types."""

from __future__ import annotations

import math

import pytest

from container.failure import UserError
from container.schema import Schema


def _numeric(image: str) -> list[str]:
    return [name for name, p in Schema.load(image).params.items() if {"int", "float"} & set(p.types)]


@pytest.mark.parametrize("image", ["yolo", "tfod"])
@pytest.mark.parametrize("value, said", [
    ("-Infinity", "must be a finite number"), ("NaN", "must be a finite number"),
    ("Infinity", "must be a finite number"),
    ("1e400", "must be a finite number"), ("-1e400", "must be a finite number"), (math.nan, "must be a finite number"),
    (math.inf, "must be a finite number"), (10**30, "must fit in 64 bits"), (str(10**30), "must fit in 64 bits")])
def test_every_numeric_hyperparameter_refuses_numbers_no_framework_can_use(image, value, said):
    """NaN passed every range check (nan < min and nan > max are both false): lr0=nan, conf=NaN, batch=1e400 were
    accepted, and a job trained on NaN; 10**30 reached torch as an OverflowError."""
    schema = Schema.load(image)
    names = _numeric(image)
    assert names
    for name in names:
        with pytest.raises(UserError, match=f"hyperparameter '{name}' {said}"):
            schema.parse({name: value})


@pytest.mark.parametrize("key, value", [("classes", "[1e400]"), ("names", ["a", "b\x00c"]), ("data", "x\x00.yaml")])
def test_a_list_or_string_holding_an_unusable_value_is_refused(key, value):
    with pytest.raises(UserError, match=f"hyperparameter '{key}' (must be a finite|holds a NUL)"):
        Schema.load("yolo").parse({key: value})


def test_tfod_overrides_holding_nan_are_refused():
    with pytest.raises(UserError, match="hyperparameter 'overrides' must be a finite number"):
        Schema.load("tfod").parse({"overrides": '{"trainer": {"optimizer_config": {"learning_rate": NaN}}}'})


def test_a_list_of_unknown_items_is_named_in_short():
    """A 100 kB export list was echoed whole in the message (100 kB of error)."""
    with pytest.raises(UserError) as err:
        Schema.load("yolo").parse({"export": "x" * 100_000})
    assert len(str(err.value)) < 1000
    with pytest.raises(UserError, match="and 995 more") as err:
        Schema.load("yolo").parse({"export": ",".join(f"f{i}" for i in range(1000))})
    assert len(str(err.value)) < 1000


def test_finite_values_still_pass():
    assert Schema.load("yolo").parse({"lr0": "0.01", "epochs": "3", "classes": "[0, 2]"}) == {
        "lr0": 0.01, "epochs": 3, "classes": [0, 2]}


@pytest.mark.parametrize("metadata", ["a", [1], True, 1.5])
def test_a_ground_truth_line_whose_metadata_is_no_object_is_a_problem_naming_the_line(tmp_path, metadata):
    """The label's '-metadata' a string or a list: an AttributeError traceback before (exit 1)."""
    import json

    from container.annotations import read

    line = {"source-ref": "s3://b/a.jpg", "job": {"annotations": [{"class_id": 0, "left": 1, "top": 1, "width": 2,
                                                                      "height": 2}], "image_size": [{"width": 8,
                                                                                                      "height": 8}]},
            "job-metadata": metadata}
    (tmp_path / "out.manifest").write_text(json.dumps(line) + "\n")
    ann = read(tmp_path / "out.manifest", "groundtruth")
    assert [(kind, example.split(":")[0]) for kind, example, _, _ in ann.issues] == [
        ("unreadable annotation", "out.manifest line 1")]


@pytest.mark.parametrize("body", [{"a" * 3_000_000: 1}, {"image": "x", "b" * 3_000_000: 1},
                                  {f"k{i}": 1 for i in range(100_000)}])
def test_a_served_answer_names_a_huge_key_in_short(body):
    """A JSON body whose key is 3 MB (or which has 100k keys) got a 400 echoing every key: a 3 MB answer."""
    import json

    from container.serving.protocol import Limits, ServingError, Thresholds, parse_request

    with pytest.raises(ServingError) as err:
        parse_request(json.dumps(body).encode(), "application/json", Thresholds(0.25, 0.7, 300),
                      Limits(max_body_bytes=20 * 2**20, max_images=4))
    assert 400 <= err.value.status < 500 and len(str(err.value)) < 1000, str(err.value)[:300]


@pytest.mark.parametrize("args", [["--train", "A", "--channel", "train=B"],
                                  ["--channel", "cfg=A", "--channel", "cfg=B"], ["--val", "A", "--channel", "val=A"]])
def test_a_channel_given_twice_is_refused_before_anything_is_made(tmp_path, monkeypatch, capsys, args):
    """--train A --channel train=B trained on B without a word about A."""
    from container import local

    monkeypatch.chdir(tmp_path)
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
    assert local.main([*args, "--out", "O"]) == 2
    assert "is already" in capsys.readouterr().err and not (tmp_path / "O").exists()


def test_deploy_local_of_a_folder_without_a_model_is_exit_2_naming_it(tmp_path, capsys):
    """serve refused the folder (exit 2, naming it) and deploy --instance-type local said exit 1."""
    from sdk.cli import main

    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["deploy", str(tmp_path), "--instance-type", "local"]) == 2
    assert "holds neither a YOLO model" in capsys.readouterr().err


def _yolo_tree(root, label: str, names: str):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (32, 32)).save(root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text(label)
    (root / "data.yaml").write_text(names)
    return root


@pytest.mark.parametrize("cls", ["1.5", "-1", "100000", "1e5"])
def test_a_yolo_label_whose_class_is_no_index_is_a_problem_naming_the_line(tmp_path, cls):
    """Class 1.5 was read as class 1 and -1 as a class named '-1': 'no problems'."""
    from container.annotations import check, read

    ann = read(_yolo_tree(tmp_path, f"0 0.5 0.5 0.2 0.2\n{cls} 0.5 0.5 0.2 0.2\n", "names: [a, b]\n"))
    assert [example for kind, example, _, _ in ann.issues] == [
        f"labels/a.txt line 2: the class must be a class index from 0 to 99999, got {cls!r}"]
    assert not check(ann, verify_images=False).ok


@pytest.mark.parametrize("names, said", [("names: [a, a]", "classes 0 and 1 are both named 'a'"),
                                         ("names: {0: a, 1: b, 2: a}", "classes 0 and 2 are both named 'a'"),
                                         ("names: ['', b]", r"class id\(s\) 0 have no name"),
                                         ("names: [a, ~]", r"class id\(s\) 1 have no name")])
def test_class_names_that_are_empty_or_repeated_are_a_user_error(tmp_path, names, said):
    """Two classes named 'a' were one class in every conversion; '' and ~ ('None') named no class: 'no problems'."""
    from container.annotations import read
    from sdk.cli import data_main as data_cli

    root = _yolo_tree(tmp_path / "d", "0 0.5 0.5 0.2 0.2\n", names + "\n")
    with pytest.raises(UserError, match=f"data.yaml: {said}"):
        read(root)
    assert data_cli(["convert", str(root), "--to", "coco", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("crowd", ["0", "no", [0], {}, 2])
def test_a_coco_iscrowd_that_is_not_0_or_1_is_a_problem_naming_the_annotation(tmp_path, crowd):
    """iscrowd "0" (a string) made the box a crowd box, left out of training without a problem."""
    import json

    from container.annotations import read

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": crowd}],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "coco.json").write_text(json.dumps(data))
    ann = read(tmp_path / "coco.json", "coco")
    assert [e for _, e, _, _ in ann.issues] == [f"coco.json: annotation 7 of image a.jpg: iscrowd must be 0 or 1, "
                                                f"got {crowd!r}"]
    assert ann.items[0].boxes == []
    for ok in (0, 1, True, False):
        data["annotations"][0]["iscrowd"] = ok
        (tmp_path / "coco.json").write_text(json.dumps(data))
        assert read(tmp_path / "coco.json", "coco").items[0].boxes[0].crowd is bool(ok)


@pytest.mark.parametrize("where", ["sub", "a/b", "."])
@pytest.mark.parametrize("to", ["yolo", "tfrecord"])
def test_converting_into_a_folder_inside_the_dataset_is_refused_and_writes_nothing(tmp_path, where, to):
    """--out inside the source was written: the dataset then held two formats, and every later read of it
    failed with 'more than one annotation format'."""
    from container.annotations import convert
    from container.synthetic import make_shapes

    source = make_shapes(tmp_path / "shapes", train=2, val=0, size=32, seed=1)
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    with pytest.raises(UserError, match="is inside the dataset folder"):
        convert(source, to, source / where, log=lambda _: None)
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    coco = tmp_path / "coco"
    convert(source, "coco", coco, log=lambda _: None)
    with pytest.raises(UserError, match="is inside the dataset folder"):  # a single annotation file's folder too
        convert(next(coco.rglob("*.json")), to, coco / where / "x", log=lambda _: None)


@pytest.mark.parametrize("change, said", [
    (("imagePath", 5), "a.json: imagePath must be the image's file name (a string), got 5"),
    (("imagePath", ["a.jpg"]), "a.json: imagePath must be the image's file name (a string), got ['a.jpg']"),
    (("label", None), "a.json: shape 1 has no label (None): give it its class name"),
    (("label", ""), "a.json: shape 1 has no label (''): give it its class name"),
    (("label", {"a": 1}), "a.json: shape 1 has no label ({'a': 1}): give it its class name")])
def test_labelme_file_names_and_labels_of_the_wrong_type_are_problems(tmp_path, change, said):
    """imagePath 5 was an AttributeError traceback (exit 1); label null a class named 'None', '' a class too."""
    import json

    from PIL import Image

    from container.annotations import check, read

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    shape = {"label": "cat", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}
    doc = {"shapes": [shape], "imagePath": "a.jpg", "imageWidth": 32, "imageHeight": 32}
    key, value = change
    (shape if key == "label" else doc)[key] = value
    (tmp_path / "a.json").write_text(json.dumps(doc))
    ann = read(tmp_path, "labelme")
    assert [e for _, e, _, _ in ann.issues] == [said]
    assert not check(ann, verify_images=False).ok


def test_a_voc_object_without_a_name_is_a_problem(tmp_path):
    from PIL import Image

    from container.annotations import read

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>32</width><height>32</height>"
                                    "</size><object><name> </name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                                    "<ymax>5</ymax></bndbox></object></annotation>")
    ann = read(tmp_path, "voc")
    assert [e for _, e, _, _ in ann.issues] == ["a.xml: an object without a <name>: give it its class name, or leave "
                                                "it out"]
    assert ann.names == [] and ann.items[0].boxes == []


@pytest.mark.parametrize("names, said", [("rectangle,,ellipse", r"class id\(s\) 1 have no name"),
                                         ("rectangle,rectangle,ellipse", "classes 0 and 1 are both named")])
def test_names_given_empty_or_repeated_are_exit_2_and_write_nothing(tmp_path, capsys, names, said):
    """--names rectangle,,ellipse wrote a class named '' into data.yaml; a,a,b gave two ids one name."""
    import re

    from container.annotations import convert
    from container.synthetic import make_shapes
    from sdk.cli import data_main as data_cli

    source = make_shapes(tmp_path / "shapes", train=2, val=0, size=32, seed=1)
    voc = tmp_path / "voc"
    convert(source, "voc", voc, log=lambda _: None)
    assert data_cli(["convert", str(voc), "--to", "yolo", "--out", str(tmp_path / "o"), "--names", names]) == 2
    assert re.search(said, capsys.readouterr().err) and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["SERVING_MAX_BODY_MB", "SERVING_MAX_IMAGES", "SERVING_MAX_MEGAPIXELS",
                                  "SERVING_HEADER_TIMEOUT", "SERVING_BODY_TIMEOUT"])
@pytest.mark.parametrize("value", ["1e308", "1e7", "99999999999"])
def test_a_serving_variable_past_any_use_is_a_user_error_naming_it(name, value):
    """SERVING_MAX_BODY_MB=1e308 was an OverflowError traceback; 1e308 seconds of header timeout was taken."""
    from container.serving.server import settings

    with pytest.raises(UserError, match=f"{name}='{value}' is not usable: .* at most 1e\\+06"):
        settings({name: value})
    settings({name: "1000"})


@pytest.mark.parametrize("workers", ["17", "10000", "99999999999999"])
def test_a_forced_worker_count_past_8_per_cpu_is_refused_naming_the_variable(workers):
    """SERVING_WORKERS=10000 on 2 CPUs planned 10000 copies of the model (the machine out of memory)."""
    from container.serving import resources

    with pytest.raises(ValueError, match=f"SERVING_WORKERS/SAGEMAKER_MODEL_SERVER_WORKERS={workers} is more than 8 "
                                         "per CPU"):
        resources.plan_workers(cpus=2, memory=2**34, weights_bytes=1, environ={"SERVING_WORKERS": workers})
    plan = resources.plan_workers(cpus=2, memory=2**34, weights_bytes=1, environ={"SERVING_WORKERS": "16"})
    assert plan.workers == 16


@pytest.mark.parametrize("shape, said", [
    ('<box label="" xtl="1" ytl="1" xbr="5" ybr="5"/>', "<box> has no label"),
    ('<box label="cat" xtl="inf" ytl="1" xbr="5" ybr="5"/>', "<box> xtl must be a finite number"),
    ('<polygon label="cat" points="1,a;3,4;5,6"/>', "<polygon> points must be a number")])
def test_a_cvat_shape_that_cannot_be_read_leaves_its_image_out(tmp_path, shape, said):
    """The image was kept without the unreadable box (trained as background there), and a box without a label
    was a class named ''."""
    from PIL import Image

    from container.annotations import check, read

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    (tmp_path / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>cat</name></label></labels></task>'
        f'</meta><image id="0" name="a.jpg" width="32" height="32"><box label="cat" xtl="2" ytl="2" xbr="9" ybr="9"/>'
        f'{shape}</image></annotations>')
    ann = read(tmp_path, "cvat")
    assert [e for _, e, _, _ in ann.issues] and said in ann.issues[0][1] and ann.issues[0][3] is ann.items[0]
    report = check(ann, verify_images=False)
    assert id(ann.items[0]) in report.left_out and ann.names == ["cat"]


@pytest.mark.parametrize("text", ["[1, 2]", '"a"', "5", "null"])
def test_a_fetched_model_whose_metrics_are_no_object_is_a_fetch_error(tmp_path, text):
    """A metrics.json holding a list was taken, and every reader of .metrics then failed with AttributeError."""
    from sdk._errors import FetchError
    from sdk.jobs.unpack import describe_model_dir

    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(FetchError, match="not an object"):
        describe_model_dir("job", tmp_path)


def test_a_fetched_model_with_a_folder_that_is_no_version_number_is_described(tmp_path):
    """'1a/saved_model.pb' matched the [0-9]* glob and int('1a') was a ValueError traceback."""
    from sdk.jobs.unpack import describe_model_dir

    for name in ("1a", "2", "9" * 40, "3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert describe_model_dir("job", tmp_path).exports["saved_model"] == tmp_path / "3"


@pytest.mark.parametrize("imgsz", [[], [64, 64, 64], [64, "a"], [-1]])
def test_an_imgsz_list_that_is_no_size_is_a_user_error(imgsz):
    """imgsz=[] passed the check (any() of nothing) and failed in training with an int() TypeError, exit 1."""
    from container.yolo.validate import check_values

    with pytest.raises(UserError, match="'imgsz' must be between 32 and"):
        check_values({"imgsz": imgsz}, {})
    check_values({"imgsz": [64, 96]}, {})
