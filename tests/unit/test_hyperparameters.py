"""The same job written by each client decodes to the same typed hyperparameters."""

import json

import pytest

from container.contract import Environment
from container.failure import UserError
from container.schema import Schema
from container.yolo.trainer import resolve_hyperparameters

WANTED = {"model": "yolov8s.yaml", "epochs": 30, "imgsz": 320, "batch": 0.7, "lr0": 0.001, "cos_lr": True,
          "names": ["cat", "dog"], "export": "onnx", "strict_data": False}

CLIENTS = {
    # SDK v2 framework estimators and SDK v3: json.dumps of each value
    "sdk-json": {k: json.dumps(v) for k, v in WANTED.items()},
    # SDK v2 Estimator without source_dir: str() of each value
    "sdk-v2-str": {k: str(v) for k, v in WANTED.items()},
    # the console: what a person types
    "console": {"model": "yolov8s.yaml", "epochs": "30", "imgsz": "320", "batch": "0.7", "lr0": "1e-3",
                "cos_lr": "true", "names": '["cat","dog"]', "export": "onnx", "strict_data": "False"},
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_client_encoding_decodes_alike(client):
    env = Environment(hyperparameters_raw={**CLIENTS[client], "sagemaker_job_name": '"x"',
                                           "_tuning_objective_metric": "val:mAP50-95"})
    hps = resolve_hyperparameters(env, Schema.load("yolo"))
    assert {k: hps[k] for k in WANTED} == WANTED
    assert hps.sources["epochs"] == "hyperparameters" and hps.sources["val_fraction"] == "default"


def test_cfg_files_are_checked_too(tmp_path):
    cfg = tmp_path / "input" / "data" / "cfg"
    cfg.mkdir(parents=True)
    (cfg / "train-args.json").write_text(json.dumps({"epochz": 3}))
    with pytest.raises(UserError, match="unknown cfg/train-args.json key 'epochz'; did you mean 'epochs'"):
        resolve_hyperparameters(Environment(base_dir=tmp_path), Schema.load("yolo"))
    (cfg / "train-args.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_hyperparameters(Environment(base_dir=tmp_path), Schema.load("yolo"))


@pytest.mark.parametrize("image", ["yolo", "tfod"])
def test_every_declared_key_is_present_typed_and_read_only(image):
    """Code indexes the merged hyperparameters and never re-defaults: each declared key is there, of its type."""
    schema = Schema.load(image)
    hps = schema.resolve([("hyperparameters", {})])
    assert set(hps) == set(schema.params)
    for name, param in schema.params.items():
        value = hps[name]
        assert value is None or not param.types or any(
            isinstance(value, {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}[t])
            for t in param.types), (name, value)
    assert hps.set_sources() == {} and hps.framework_args() == {}
    with pytest.raises(TypeError):
        hps["export"] = "onnx"  # type: ignore[index]  # the point: it is read-only


def test_framework_defaults_stay_the_frameworks():
    """ultralytics gets only the arguments a job set (its own defaults, None included, stay its own to apply);
    the log, MLflow and metrics.json show the image's values and those."""
    hps = Schema.load("yolo").resolve([("cfg/train-args.json", {"batch": 8}), ("hyperparameters", {"device": "null"})])
    assert hps.framework_args() == {"batch": 8, "device": None}
    assert hps["progress_interval"] == 30.0 and isinstance(hps["progress_interval"], float)  # declared 30: a float
    assert hps["workers"] == 8 and not hps.is_set("workers")
    assert set(hps.shown()) == {n for n, p in Schema.load("yolo").params.items() if p.source == "image"} | {
        "batch", "device"}
    assert hps.set_sources() == {"batch": "cfg/train-args.json", "device": "hyperparameters"}
