import re
from pathlib import Path

import pytest
import yaml

from container.failure import UserError
from container.schema import METRIC_LIMIT, Schema, format_metric_line
from container.yolo.args_table import build_table, installed_version, load_table, package_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema():
    return Schema.load("yolo")


def test_ultralytics_arguments_adopted_not_copied(schema):
    table = load_table()
    adopted = table["args"]
    assert {"epochs", "imgsz", "batch", "lr0", "optimizer", "patience", "dropout", "degrees", "flipud"} <= set(adopted)
    for name in schema.featured:
        assert name in adopted, f"featured {name!r} is not an ultralytics argument"
    for name in schema.managed:
        assert name in adopted and name not in schema.params
    assert schema.params["epochs"].types == ("int",) and schema.params["epochs"].source == "ultralytics"
    assert schema.params["epochs"].minimum == 1
    assert schema.params["model"].source == "image", "the image's own model overrides ultralytics'"


def test_shipped_table_is_the_pinned_ultralytics_own():
    """The table the SDK ships equals what the installed (pinned) ultralytics' sources say."""
    root = package_dir()
    if root is None:
        pytest.skip("ultralytics is not installed (a notebook install); the full install runs this check")
    pin = re.search(r'"ultralytics==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert installed_version(root) == pin, "the installed ultralytics is not the pinned one"
    fresh = build_table(root)
    shipped = load_table()
    assert shipped["version"] == pin
    assert fresh == shipped, ("container/yolo/ultralytics_args.yaml differs from the pinned ultralytics: "
                              "run python -m container.yolo.args_table")
    defaults = yaml.safe_load((root / "cfg" / "default.yaml").read_text(encoding="utf-8"))
    assert {k: v["default"] for k, v in shipped["args"].items()} == defaults


def test_schema_needs_no_framework(monkeypatch):
    """The SDK's view of the YOLO image is whole without ultralytics: nothing looks for the package."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("ultralytics")
                        else real(name, *a))
    light = Schema.load("yolo")
    assert light.parse({"dropout": "0.1", "degrees": "10", "flipud": "0.5"}) == {"dropout": 0.1, "degrees": 10,
                                                                                  "flipud": 0.5}
    with pytest.raises(UserError, match="did you mean 'epochs'"):
        light.parse({"epoch": "3"})


@pytest.mark.parametrize("raw, message", [
    ({"imgsz": "big"}, "'imgsz' must be an integer or a list"),
    ({"batch": "abc"}, "'batch' must be an integer or a number"),
    ({"epochs": 1.5}, "'epochs' must be an integer, got 1.5"),
    ({"epochs": 0}, "'epochs' must be between 1 and 100000, got 0"),
    ({"fliplr": 1.5}, "'fliplr' must be between 0.0 and 1.0"),
    ({"optimizer": "Adamm"}, "'optimizer' must be one of Adam, .*did you mean 'Adam"),
    ({"export": "bogus"}, "'export' has unknown item\\(s\\) 'bogus'"),
    ({"export": ["onnx", "onxx"]}, "'onxx' \\(did you mean 'onnx'"),
    ({"val_fraction": 1.0}, "'val_fraction' must be between 0.0 and 1.0 \\(both excluded\\)"),
    ({"val_fraction": 0}, "'val_fraction' must be between 0.0 and 1.0"),
])
def test_types_choices_and_ranges_refused(schema, raw, message):
    with pytest.raises(UserError, match=message):
        schema.parse(raw)


def test_choices_take_their_declared_spelling(schema):
    assert schema.parse({"optimizer": "adamw", "export": "ONNX,torchscript"}) == {
        "optimizer": "AdamW", "export": "ONNX,torchscript"}
    assert schema.parse({"batch": 16})["batch"] == 16 and isinstance(schema.parse({"batch": 16})["batch"], int)


def test_no_doubled_punctuation(schema):
    with pytest.raises(UserError) as info:
        schema.parse({"epoch": 3})
    assert "?." not in str(info.value) and "did you mean 'epochs'? Run" in str(info.value)


def test_image_limits_come_from_the_schema(schema):
    import dataclasses

    assert schema.check_job({}, ["train"], instance_count=4) == []  # YOLO trains across instances (multinode.md)
    one = dataclasses.replace(schema, max_instances=1)  # an image that cannot is still refused
    problems = one.check_job({"model": "yolo11n.pt"}, ["train"], instance_count=2)
    assert any("at most 1 instance" in p for p in problems)
    assert any("needs the 'weights' channel" in p for p in problems)
    assert schema.check_job({"model": "yolo11n.pt"}, ["train", "weights"]) == []
    assert Schema.load("tfod").check_job({}, ["train"], instance_count=4) == []


@pytest.mark.parametrize("raw, expected", [
    ({"epochs": "3"}, {"epochs": 3}),                     # console / str()
    ({"epochs": "3.0"}, {"epochs": 3}),
    ({"lr0": "0.01"}, {"lr0": 0.01}),
    ({"lr0": "1"}, {"lr0": 1.0}),
    ({"batch": "0.7"}, {"batch": 0.7}), ({"batch": "-1"}, {"batch": -1}),
    ({"imgsz": "[640, 480]"}, {"imgsz": [640, 480]}),
    ({"amp": "True"}, {"amp": True}), ({"amp": "false"}, {"amp": False}), ({"amp": "yes"}, {"amp": True}),
    ({"cache": "ram"}, {"cache": "ram"}), ({"cache": "True"}, {"cache": True}),
    ({"model": '"yolov8s.yaml"'}, {"model": "yolov8s.yaml"}),  # JSON-encoded string
    ({"names": "cat,dog"}, {"names": "cat,dog"}),
    ({"names": '["cat", "dog"]'}, {"names": ["cat", "dog"]}),
    ({"sagemaker_program": "x", "_tuning_objective_metric": "m"}, {}),
])
def test_parse_encodings(schema, raw, expected):
    assert schema.parse(raw) == expected


def test_every_problem_reported_with_suggestions(schema):
    with pytest.raises(UserError) as info:
        schema.parse({"epoch": "3", "imgsz": "big", "lr": "0.1", "resume": "true", "epochs": "ten"})
    text = str(info.value)
    assert "unknown hyperparameter 'epoch'; did you mean 'epochs'" in text
    assert "'imgsz' must be an integer or a list, got 'big'" in text
    assert "'epochs' must be an integer, got 'ten'" in text
    assert "'resume' is set by the image" in text
    assert "describe" in text


def test_metric_regexes_read_the_trainer_lines(schema):
    line = format_metric_line("metrics", {"epoch": 7, "box_loss": 1.25, "cls_loss": 0.5, "dfl_loss": 1.0,
                                          "val_box_loss": 1.5, "val_cls_loss": 0.75, "val_dfl_loss": 1.1,
                                          "precision": 0.8, "recall": 0.7, "mAP50": 0.65, "mAP50-95": 0.45,
                                          "best_mAP50-95": 0.5, "lr": 0.000123})
    final = format_metric_line("final", {"precision": 0.9, "recall": 0.8, "mAP50": 0.7, "mAP50-95": 0.5})
    values = {}
    for d in schema.metric_definitions():
        for text in (line, final):
            m = re.search(d["Regex"], text)
            if m:
                values[d["Name"]] = float(m.group(1))
    assert values["epoch"] == 7 and values["val:mAP50"] == 0.65 and values["val:mAP50-95"] == 0.45
    assert values["lr"] == 0.000123 and values["final:mAP50-95"] == 0.5 and values["final:mAP50"] == 0.7
    assert values["val:best_mAP50-95"] == 0.5, "the running best is its own metric, not read as mAP50-95"
    assert len(values) == len(schema.metrics), "every declared metric is printed"
    assert "e-" not in line and "nan" not in format_metric_line("x", {"a": float("nan")})


def test_metric_definitions_fit_sagemaker_limits(schema):
    defs = schema.metric_definitions([f"class {i}" for i in range(100)])
    assert len(defs) <= METRIC_LIMIT
    assert all(1 <= len(d["Name"]) <= 255 and 1 <= len(d["Regex"]) <= 500 for d in defs)
    per_class = format_metric_line("class", {"mAP50": 0.5, "mAP50-95": 0.25}, prefix=["class=class 3"])
    names = {d["Name"]: d["Regex"] for d in defs}
    assert re.search(names["class:class 3:mAP50-95"], per_class).group(1) == "0.250000"
    assert not re.search(names["class:class 1:mAP50-95"], per_class)


def test_describe_lists_everything(schema):
    text = schema.describe()
    for word in ("train", "weights", "epochs", "imgsz", "val_fraction", "val:mAP50-95", "set by the image"):
        assert word in text
    data = schema.to_dict()
    assert data["metric_definitions"] == schema.metric_definitions()
    yaml.safe_dump(data)  # plain data


def test_unknown_image():
    with pytest.raises(UserError, match="unknown image 'nope'"):
        Schema.load("nope")
