"""The TensorFlow image's pieces that need no TensorFlow: label maps, overrides, exports, TF_CONFIG,
TensorBoard copies, its schema as the SDK sees it, and the edge script's label reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sdk
from container.contract import Environment
from container.edge import read_labels
from container.failure import UserError
from container.local import build_tree
from container.schema import Schema
from container.tfod.trainer import (
    export_list,
    job_hyperparameters,
    parse_overrides,
    read_label_map,
    sync_tensorboard,
    tf_config,
)


@pytest.mark.parametrize("name, text", [
    ("label_map.pbtxt", 'item {\n  id: 2\n  name: "ellipse"\n}\nitem { name: "rectangle" id: 1 }\n'),
    ("label_map.pbtxt", "item {\n id: 1\n display_name: 'rectangle'\n}\nitem {\n id: 2\n display_name: 'ellipse'\n}\n"),
    ("labels.csv", "1,rectangle\n2,ellipse\n"),
    ("data.yaml", "names:\n  0: rectangle\n  1: ellipse\n"),
    ("names.yaml", "names: [rectangle, ellipse]\n"),
])
def test_label_maps_in_every_form(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert read_label_map(path) == ["rectangle", "ellipse"]


def test_label_map_gaps_and_empty_are_named(tmp_path):
    gap = tmp_path / "gap.csv"
    gap.write_text("1,a\n3,c\n")
    with pytest.raises(UserError, match=r"ids must be 1\.\.2 without gaps .*\[1, 3\]"):
        read_label_map(gap)
    empty = tmp_path / "empty.pbtxt"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="names no classes"):
        read_label_map(empty)


@pytest.mark.parametrize("value, expected", [
    ("", {}),
    ("task.model.min_level=4,trainer.steps_per_loop=5",
     {"task": {"model": {"min_level": 4}}, "trainer": {"steps_per_loop": 5}}),
    ('{"task": {"model": {"min_level": 4}}}', {"task": {"model": {"min_level": 4}}}),
    ("task:\n  model:\n    min_level: 4\n", {"task": {"model": {"min_level": 4}}}),
    ({"trainer": {"train_steps": 3}}, {"trainer": {"train_steps": 3}}),
])
def test_overrides_as_pairs_yaml_json_or_mapping(value, expected):
    assert parse_overrides(value) == expected


def test_overrides_without_a_value_are_refused():
    with pytest.raises(UserError, match=r"expected a\.b\.c=value"):
        parse_overrides("task.model.min_level")


@pytest.mark.parametrize("value, expected", [
    ("saved_model,tflite", ["saved_model", "tflite"]),
    (["tflite"], ["tflite"]),
    ("none", []),
    ("", []),
    (" TFLite ", ["tflite"]),
])
def test_export_list(value, expected):
    assert export_list(value) == expected


def test_unknown_export_is_named():
    with pytest.raises(UserError, match="export 'onnx' is not one of: saved_model, tflite, none"):
        export_list("saved_model,onnx")


def _env(tmp_path, hosts, current, environ=None):
    base = build_tree(tmp_path / "opt_ml", {}, {}, hosts=hosts, current_host=current)
    return Environment.from_base_dir(base, environ=environ or {}, num_gpus=0, num_cpus=1)


def test_tf_config_from_resourceconfig(tmp_path):
    assert tf_config(_env(tmp_path, ("algo-1",), "algo-1")) is None
    config = tf_config(_env(tmp_path, ("algo-1", "algo-2"), "algo-2"))
    assert config == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]}, "task": {"type": "worker", "index": 1}}
    json.dumps(config)


def test_tf_config_addresses_for_one_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("TFOD_WORKER_ADDRESSES", "127.0.0.1:4001,127.0.0.1:4002")
    config = tf_config(_env(tmp_path, ("algo-1", "algo-2"), "algo-1"))
    assert config["cluster"]["worker"] == ["127.0.0.1:4001", "127.0.0.1:4002"] and config["task"]["index"] == 0
    monkeypatch.setenv("TFOD_WORKER_ADDRESSES", "127.0.0.1:4001")
    with pytest.raises(UserError, match="names 1 workers for 2 hosts"):
        tf_config(_env(tmp_path, ("algo-1", "algo-2"), "algo-1"))


def test_tensorboard_copies_only_what_grew(tmp_path):
    model_dir, target = tmp_path / "model", tmp_path / "tensorboard"
    (model_dir / "train").mkdir(parents=True)
    (model_dir / "validation").mkdir()
    events = model_dir / "train" / "events.out.tfevents.1.host"
    events.write_bytes(b"x" * 10)
    (model_dir / "validation" / "events.out.tfevents.2.host").write_bytes(b"y")
    (model_dir / "ckpt-1.index").write_bytes(b"not an event file")
    assert sync_tensorboard(model_dir, target) == 2
    assert sync_tensorboard(model_dir, target) == 0
    events.write_bytes(b"x" * 20)
    assert sync_tensorboard(model_dir, target) == 1
    assert (target / "train" / events.name).read_bytes() == b"x" * 20
    assert not (target / "ckpt-1.index").exists()


def test_schema_as_the_sdk_sees_it():
    schema = Schema.load("tfod")
    for seed_name in ("num_steps", "quantize", "image_size", "inference_type"):
        assert seed_name in schema.params
    names = {d["Name"] for d in sdk.metric_definitions("tfod")}
    assert {"train:total_loss", "eval:AP", "eval:AP50", "eval:APl", "step"} <= names
    typed = sdk.validate_hyperparameters({"num_steps": 10, "quantize": True, "overrides": {"a": {"b": 1}}}, "tfod")
    assert typed["num_steps"] == 10 and typed["quantize"] is True
    with pytest.raises(sdk.ConfigurationError, match="num_step.*num_steps"):
        sdk.validate_hyperparameters({"num_step": 10}, "tfod")
    with pytest.raises(sdk.ConfigurationError, match="experiment"):
        sdk.validate_hyperparameters({"experiment": "faster_rcnn"}, "tfod")


def test_metric_regexes_read_plain_numbers_only():
    """Model Garden's own log prints np.float32(0.41); our lines carry 0.41, and the regexes want that."""
    import re

    from container.schema import format_metric_line

    line = format_metric_line("eval", {"step": 8, "AP": 0.41, "AP50": 0.5, "APl": -1.0})
    by_name = {d["Name"]: d["Regex"] for d in sdk.metric_definitions("tfod")}
    assert float(re.search(by_name["eval:AP"], line).group(1)) == 0.41
    assert float(re.search(by_name["eval:APl"], line).group(1)) == -1.0
    assert re.search(by_name["eval:AP"], "eval AP: np.float32(0.41)") is None


def test_edge_labels_from_csv_or_lines(tmp_path):
    csv = tmp_path / "label_map.csv"
    csv.write_text("2,ellipse\n1,rectangle\n")
    assert read_labels(csv) == ["rectangle", "ellipse"]
    plain = tmp_path / "labels.txt"
    plain.write_text("rectangle\nellipse\n")
    assert read_labels(plain) == ["rectangle", "ellipse"]
    assert read_labels(None) == []


def test_cfg_yaml_is_a_model_garden_config_not_hyperparameters(tmp_path):
    """A Model Garden experiment YAML in `cfg` (task:, trainer:) must not be read as hyperparameters."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "experiment.yaml").write_text("task:\n  model:\n    min_level: 4\ntrainer:\n  steps_per_loop: 5\n")
    base = build_tree(tmp_path / "opt_ml", {"cfg": cfg}, {"num_steps": "12"})
    hps = job_hyperparameters(Environment.from_base_dir(base, environ={}, num_gpus=0, num_cpus=1), Schema.load("tfod"))
    assert hps["num_steps"] == 12 and hps["experiment"] == "retinanet_mobile_coco" and "task" not in hps


def test_experiment_config_layers(tmp_path):
    """Model Garden's own config: experiment defaults < cfg YAML < hyperparameters < overrides; typos are named."""
    pytest.importorskip("official.core.exp_factory", reason="Model Garden is not in .venv; "
                        "test_experiment_config_in_its_own_environment runs this test in .venv-tf")
    from container.tfod.trainer import experiment_config

    schema = Schema.load("tfod")
    cfg = tmp_path / "experiment.yaml"
    cfg.write_text("task:\n  model:\n    min_level: 4\ntrainer:\n  train_steps: 999\n")
    hps = {**schema.defaults(), "num_steps": 30, "image_size": 256, "overrides": "task.model.max_level=6"}
    exp = experiment_config(hps, tmp_path / "t.tfrecord", tmp_path / "v.tfrecord", tmp_path / "l.csv", 2, None, [cfg])
    assert exp.task.model.min_level == 4 and exp.task.model.max_level == 6
    assert exp.trainer.train_steps == 30, "hyperparameters over the cfg YAML"
    assert exp.task.model.num_classes == 3 and exp.task.model.input_size == [256, 256, 3]
    assert exp.task.validation_data.drop_remainder is False
    typo = tmp_path / "typo.yaml"
    typo.write_text("task:\n  modle:\n    min_level: 4\n")
    with pytest.raises(UserError, match="cfg/typo.yaml does not fit experiment 'retinanet_mobile_coco'"):
        experiment_config(hps, tmp_path / "t", tmp_path / "v", tmp_path / "l.csv", 2, None, [typo])
    with pytest.raises(UserError, match="image_size must be a multiple of 128"):
        experiment_config({**hps, "image_size": 200}, tmp_path / "t", tmp_path / "v", tmp_path / "l.csv", 2, None, [])


TF_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tf" / "bin" / "python"


@pytest.mark.skipif(not TF_PYTHON.exists(), reason="no .venv-tf (made by .ci/run from requirements/tf-test.txt)")
def test_experiment_config_in_its_own_environment():
    """TensorFlow's pins clash with the YOLO stack's, so the Model Garden test above runs again in .venv-tf."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([str(TF_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                             "experiment_config_layers", str(Path(__file__))], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_a_conversions_unfinished_shard_is_no_training_data(tmp_path):
    """A `.partial` shard (a conversion killed mid-write, uploaded with the folder) is not read as records."""
    from container.annotations import convert
    from container.synthetic import NAMES, make_shapes
    from container.tfod.trainer import resolve_data

    records = tmp_path / "records"
    convert(make_shapes(tmp_path / "shapes", train=4, val=2, size=32), "tfrecord", records, log=lambda _: None)
    (records / "train-00001-of-00002.tfrecord.partial").write_bytes(b"\x00" * 40)  # not a whole record
    base = build_tree(tmp_path / "opt_ml", {"train": records}, {})
    train, val, names = resolve_data(Environment.from_base_dir(base, environ={}, num_gpus=0, num_cpus=1),
                                     Schema.load("tfod").typed_defaults, tmp_path / "work")
    assert (train.name, val.name) == ("train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord")
    assert names == list(NAMES)
