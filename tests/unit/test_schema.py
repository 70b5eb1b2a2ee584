import re

import pytest
import yaml

from container.failure import UserError
from container.schema import METRIC_LIMIT, Schema, format_metric_line, read_framework_args


@pytest.fixture(scope="module")
def schema():
    return Schema.load("yolo")


def test_ultralytics_arguments_adopted_not_copied(schema):
    adopted = read_framework_args("ultralytics", "cfg/default.yaml")
    assert adopted and schema.framework_available
    assert {"epochs", "imgsz", "batch", "lr0", "optimizer", "patience"} <= set(adopted)
    for name in schema.featured:
        assert name in adopted, f"featured {name!r} is not an ultralytics argument"
    for name in schema.managed:
        assert name in adopted and name not in schema.params
    assert schema.params["epochs"].types == ("int",) and schema.params["epochs"].source == "ultralytics"
    assert schema.params["model"].source == "image", "the image's own model overrides ultralytics'"


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


def test_without_the_framework_featured_keys_still_validate(monkeypatch):
    monkeypatch.setattr("container.schema.read_framework_args", lambda *a: None)
    light = Schema.load("yolo")
    assert not light.framework_available
    assert light.parse({"epochs": "3"}) == {"epochs": 3}
    with pytest.raises(UserError, match="did you mean 'epochs'"):
        light.parse({"epoch": "3"})


def test_metric_regexes_read_the_trainer_lines(schema):
    line = format_metric_line("metrics", {"epoch": 7, "box_loss": 1.25, "cls_loss": 0.5, "dfl_loss": 1.0,
                                          "val_box_loss": 1.5, "val_cls_loss": 0.75, "val_dfl_loss": 1.1,
                                          "precision": 0.8, "recall": 0.7, "mAP50": 0.65, "mAP50-95": 0.45,
                                          "lr": 0.000123})
    final = format_metric_line("final", {"precision": 0.9, "recall": 0.8, "mAP50": 0.7, "mAP50-95": 0.5})
    values = {}
    for d in schema.metric_definitions():
        for text in (line, final):
            m = re.search(d["Regex"], text)
            if m:
                values[d["Name"]] = float(m.group(1))
    assert values["epoch"] == 7 and values["val:mAP50"] == 0.65 and values["val:mAP50-95"] == 0.45
    assert values["lr"] == 0.000123 and values["final:mAP50-95"] == 0.5 and values["final:mAP50"] == 0.7
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
