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
    hps, sources = resolve_hyperparameters(env, Schema.load("yolo"))
    assert {k: hps[k] for k in WANTED} == WANTED
    assert sources["epochs"] == "hyperparameters" and sources["val_fraction"] == "default"


def test_cfg_files_are_checked_too(tmp_path):
    cfg = tmp_path / "input" / "data" / "cfg"
    cfg.mkdir(parents=True)
    (cfg / "train-args.json").write_text(json.dumps({"epochz": 3}))
    with pytest.raises(UserError, match="unknown cfg/train-args.json key 'epochz'; did you mean 'epochs'"):
        resolve_hyperparameters(Environment(base_dir=tmp_path), Schema.load("yolo"))
    (cfg / "train-args.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_hyperparameters(Environment(base_dir=tmp_path), Schema.load("yolo"))
