"""launch_job(mlflow=..., experiment=...): the tracking server in the job's environment, its URI or ARN checked
(shape, region) before anything is uploaded or created, the IAM actions named; local mode gets the same."""

from __future__ import annotations

import json

import pytest

import sdk
from sdk._errors import ConfigurationError
from sdk.cli import main as cli
from tests.sdk.conftest import BUCKET, IMAGE, ROLE

OUT = f"s3://{BUCKET}/jobs"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


def _plan(shapes, **kwargs):
    return sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=str(shapes), **kwargs)


def test_arn_in_the_environment_and_the_role_actions_named(aws, shapes, capsys):
    env = _plan(shapes, mlflow=ARN, experiment="pcb").request["Environment"]
    assert env["MLFLOW_TRACKING_URI"] == ARN and env["MLFLOW_EXPERIMENT_NAME"] == "pcb"
    assert env["SM_DETECTORS_IMAGE_URI"] == IMAGE
    err = capsys.readouterr().err
    assert "sagemaker-mlflow:CreateRun" in err and "sagemaker-mlflow:LogBatch" in err and "s3:PutObject" in err


def test_http_server_and_the_default_experiment(aws, shapes, capsys):
    request = _plan(shapes, mlflow="https://mlflow.example.com", environment={"A": "1"}).request
    env = request["Environment"]
    sources = json.loads(env.pop("SM_DETECTORS_CHANNEL_SOURCES"))  # the run's tags name each channel's source
    assert sources == {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert env == {"A": "1", "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
                   "MLFLOW_EXPERIMENT_NAME": "sm-detectors", "SM_DETECTORS_IMAGE_URI": IMAGE}
    assert "sagemaker-mlflow" not in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"mlflow": ARN.replace("us-east-1", "eu-west-1")}, "in eu-west-1 but the job runs in us-east-1"),
    ({"mlflow": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"}, "not a SageMaker MLflow ARN"),
    ({"mlflow": "arn:aws:sagemaker:us-east-1:1234:mlflow-tracking-server/x"}, "12-digit account"),
    ({"mlflow": "file:///tmp/mlruns"}, "not reachable from a training job"),
    ({"mlflow": "mlflow.example.com:5000"}, "http"),
    ({"mlflow": "https://me:secret@mlflow.example.com"}, "password"),
    ({"experiment": "pcb"}, "give the tracking server too"),
    ({"mlflow": ARN, "experiment": "a;b"}, "experiment 'a;b'"),
    ({"mlflow": ARN, "environment": {"MLFLOW_TRACKING_URI": "http://other:5000"}}, "give one of them"),
])
def test_mistakes_are_refused_before_anything_is_sent(aws, shapes, kwargs, words):
    with pytest.raises(ConfigurationError, match=words):
        sdk.launch_job(image=IMAGE, role=ROLE, output_path=OUT, train=str(shapes), wait=False, **kwargs)
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_local_mode_logs_to_the_same_server(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    plan = sdk.plan_job(image="yolo", instance_type="local", train=str(shapes), mlflow="http://127.0.0.1:5000",
                        experiment="laptop")
    assert plan.request["Environment"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert plan.request["Environment"]["MLFLOW_EXPERIMENT_NAME"] == "laptop"


def test_cli_flags(aws, shapes, capsys):
    code = cli(["launch", "--image", IMAGE, "--role", ROLE, "--output-path", OUT, "--train", str(shapes),
                "--mlflow", ARN.replace("us-east-1", "eu-west-1"), "--experiment", "pcb", "--no-wait"])
    assert code == 2
    assert "eu-west-1" in capsys.readouterr().err


def test_sources_past_the_environment_limit_are_left_out(aws, shapes, capsys):
    long = f"s3://{BUCKET}/" + "d" * 600 + "/"
    env = _plan(shapes, mlflow="https://mlflow.example.com", val=long).request["Environment"]
    assert "SM_DETECTORS_CHANNEL_SOURCES" not in env and env["MLFLOW_TRACKING_URI"]
    assert "over the 512" in capsys.readouterr().err


def test_no_mlflow_no_variables(aws, shapes):
    assert "Environment" not in _plan(shapes).request or not any(
        k.startswith(("MLFLOW_", "SM_DETECTORS_")) for k in _plan(shapes).request["Environment"])
