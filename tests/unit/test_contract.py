import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from container.contract import Environment, decode_value
from container.toolkit_env import sm_env_vars


@pytest.mark.parametrize("raw, expected", [
    ('"yolo11n.yaml"', "yolo11n.yaml"),      # JSON (SDK v2 framework estimators, v3)
    ("yolo11n.yaml", "yolo11n.yaml"),        # typed in the console
    ("true", True), ("True", True), ("FALSE", False),
    ("0.01", 0.01), ("3", 3), ("1e-3", 0.001),
    ("[640, 480]", [640, 480]),
    ("{'a': 1}", {"a": 1}),                  # str() of a dict (SDK v2 Estimator)
    ("(1, 2)", [1, 2]),
    ("None", None), ("null", None),
    ("{not python", "{not python"),
    (" 5 ", 5),
])
def test_decode_value_any_client(raw, expected):
    assert decode_value(raw) == expected


def _write(base: Path, name: str, data) -> None:
    path = base / "input" / "config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_empty_layout_has_defaults(tmp_path):
    env = Environment.from_base_dir(tmp_path, environ={}, num_gpus=0, num_cpus=2)
    assert env.hyperparameters == {} and env.channels == {}
    assert env.current_host == "algo-1" and env.hosts == ["algo-1"]
    assert env.model_dir == tmp_path / "model"
    assert env.failure_file == tmp_path / "output" / "failure"
    assert env.checkpoint_dir == tmp_path / "checkpoints"
    assert env.tensorboard_dir == tmp_path / "output" / "tensorboard"
    assert env.host_checkpoint_dir == tmp_path / "checkpoints" / "algo-1"
    assert not tmp_path.joinpath("model").exists(), "reading the layout must create nothing"


def test_base_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    _write(tmp_path, "hyperparameters.json", {"epochs": "3", "sagemaker_program": "x.py"})
    env = Environment.from_base_dir(num_gpus=0)
    assert env.base_dir == tmp_path
    assert env.hyperparameters == {"epochs": 3}, "SageMaker's own keys are not the trainer's"


def test_channels_config_and_disk(tmp_path):
    _write(tmp_path, "inputdataconfig.json", {"train": {"TrainingInputMode": "FastFile"}, "missing": {}})
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    (tmp_path / "input" / "data" / "cfg").mkdir(parents=True)
    env = Environment.from_base_dir(tmp_path, environ={}, num_gpus=0)
    assert set(env.channels) == {"train", "cfg"}
    assert env.input_mode("train") == "FastFile" and env.input_mode("cfg") == "File"


def test_checkpoint_local_path_follows_base(tmp_path):
    _write(tmp_path, "checkpointconfig.json", {"LocalPath": "/opt/ml/checkpoints/run", "S3Uri": "s3://b/p"})
    env = Environment.from_base_dir(tmp_path, environ={}, num_gpus=0)
    assert env.checkpoint_dir == tmp_path / "checkpoints" / "run"


def test_resource_config(tmp_path):
    _write(tmp_path, "resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    env = Environment.from_base_dir(tmp_path, environ={}, num_gpus=0)
    assert env.current_host == "algo-2" and env.hosts == ["algo-1", "algo-2"]
    assert not env.is_master and env.host_checkpoint_dir.name == "algo-2"


LAYOUTS = {
    "local mode": dict(
        hp={"epochs": "3", "model": '"yolo11n.yaml"', "flag": "True", "lr0": "0.01", "names": "['a', 'b']"},
        data={"train": {"TrainingInputMode": "File", "ContentType": "application/x-image"}},
        res={"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0",
             "current_instance_type": "local"},
        environ={"TRAINING_JOB_NAME": "job-1"}),
    "sagemaker multi-channel": dict(
        hp={"epochs": "10", "sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://b/code.tar.gz"',
            "sagemaker_region": '"eu-west-1"', "sagemaker_container_log_level": "20", "_tuning_objective_metric": "x",
            "imgsz": "[640, 480]", "d": '{"k": 1}'},
        data={c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
              for c in ("train", "val", "cfg")},
        res={"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "ethwe",
             "current_instance_type": "ml.g5.xlarge", "current_group_name": "homogeneousCluster",
             "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.g5.xlarge",
                                  "hosts": ["algo-1", "algo-2"]}]},
        environ={"TRAINING_JOB_NAME": "job-2", "SAGEMAKER_PROGRAM": "entry.py"}),
    "distributed flags": dict(
        hp={"sagemaker_pytorch_ddp_enabled": "true", "batch": "32"},
        data={"images": {}, "labels": {}},
        res={"current_host": "algo-1", "hosts": ["algo-1", "algo-2", "algo-3"], "current_group_name": "g1",
             "instance_groups": [{"instance_group_name": "g1", "instance_type": "ml.p4d.24xlarge",
                                  "hosts": ["algo-1", "algo-2"]},
                                 {"instance_group_name": "g2", "instance_type": "ml.c5.xlarge", "hosts": ["algo-3"]}]},
        environ={"SM_HP_MP_PARAMETERS": '{"a": 1}'}),
}

TOOLKIT = """
import json, os, logging
logging.disable(logging.CRITICAL)
from sagemaker_training import environment
print(json.dumps(environment.Environment().to_env_vars()))
"""


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_sm_env_vars_match_aws_toolkit(tmp_path, name):
    """Differential test: our SM_* variables equal sagemaker_training's, value for value."""
    pytest.importorskip("sagemaker_training")
    layout = LAYOUTS[name]
    _write(tmp_path, "hyperparameters.json", layout["hp"])
    _write(tmp_path, "inputdataconfig.json", layout["data"])
    _write(tmp_path, "resourceconfig.json", layout["res"])
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "TRAINING_JOB"))}
    environ.update(layout["environ"], SAGEMAKER_BASE_DIR=str(tmp_path), AWS_DEFAULT_REGION="us-east-1")
    # the toolkit counts GPUs with nvidia-smi and CPUs with multiprocessing, as we do
    out = subprocess.run([sys.executable, "-c", TOOLKIT], env=environ, capture_output=True, text=True, check=True)
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    ours = sm_env_vars(Environment.from_base_dir(tmp_path, environ=environ))
    assert ours == theirs


def test_the_layout_is_declared_once_and_environment_reads_through_it(tmp_path):
    """Environment and processing name their paths through contract.Layout, so a moved base moves every one."""
    from container import processing
    from container.contract import SAGEMAKER, Layout

    env = Environment(base_dir=tmp_path)
    layout = Layout(tmp_path)
    assert (env.input_config_dir, env.input_data_dir, env.model_dir, env.output_dir, env.failure_file,
            env.tensorboard_dir, env.checkpoint_dir) == (
        layout.input_config, layout.input_data, layout.model, layout.output, layout.failure, layout.tensorboard,
        layout.checkpoints)
    assert env.failure_file == tmp_path / "output" / "failure" and SAGEMAKER.base == Path("/opt/ml")
    assert Path(processing.DEFAULT_PROCESSING_DIR) == SAGEMAKER.processing
    assert Path(processing.RESOURCE_CONFIG) == SAGEMAKER.base / "config" / "resourceconfig.json"


def test_layout_from_environ_follows_the_base_dir_variable(tmp_path):
    """The failure file (and every path) of the process's own tree: $SAGEMAKER_BASE_DIR, else /opt/ml."""
    from container.contract import BASE_DIR_ENV, SAGEMAKER, Layout

    assert Layout.from_environ({BASE_DIR_ENV: str(tmp_path)}).failure == tmp_path / "output" / "failure"
    assert Layout.from_environ({}) == SAGEMAKER
    assert Environment.from_base_dir(environ={BASE_DIR_ENV: str(tmp_path)}, num_gpus=0).layout == Layout(tmp_path)


def test_the_layout_writes_the_tree_environment_reads(tmp_path):
    """The local runner writes input/config through Layout: what Environment reads back, file for file."""
    from container.contract import SAGEMAKER, TRAINING_JOB_FILES, Layout
    from container.local import build_tree

    layout = Layout(tmp_path / "job")
    layout.write_training_job(hyperparameters={"epochs": "3"},
                              input_data_config={"train": {"TrainingInputMode": "FastFile"}},
                              resource_config={"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]},
                              checkpoint_config={"LocalPath": str(SAGEMAKER.checkpoints)})
    env = Environment.from_base_dir(layout.base, environ={}, num_gpus=0)
    assert env.holds_training_job and sorted(p.name for p in layout.input_config.iterdir()) == sorted(
        [*TRAINING_JOB_FILES, layout.checkpoint_config_file.name])
    assert (env.hyperparameters, env.input_mode("train"), env.hosts, env.current_host) == (
        {"epochs": 3}, "FastFile", ["algo-1", "algo-2"], "algo-2")
    assert env.checkpoint_dir == layout.checkpoints and layout.output_data.is_dir() and layout.model.is_dir()

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    built = Layout(build_tree(tmp_path / "local", {"train": data}, {"epochs": 2}))
    local = Environment.from_base_dir(built.base, environ={}, num_gpus=0)
    assert local.channel("train") == built.channel("train") and (built.channel("train") / "a.txt").is_file()
    assert (local.hyperparameters, local.checkpoint_dir, local.current_instance_type) == (
        {"epochs": 2}, built.checkpoints, "local")
