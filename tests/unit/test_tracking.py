"""MLflow tracking (container/tracking.py) against a real MLflow server: the TF trainer's reporting pieces log to
it and are read back through MLflow's API; a server that never answers costs one bounded call and one warning;
the SDK's checks of mlflow=/experiment= and the run read back from a job's log."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from container import tracking
from container.contract import Environment
from container.local import build_tree
from container.schema import Schema
from tests.mlflow_server import artifacts, history, mlflow_server, runs_of, silent_server  # noqa: F401


@pytest.fixture
def job_env(tmp_path, monkeypatch):
    """An /opt/ml tree of a job named like a SageMaker job, its Environment read the way the image reads it."""
    def make(uri: str, experiment: str, name: str = "tf-job-1", hyperparameters=None) -> Environment:
        base = build_tree(tmp_path / name, {}, hyperparameters or {"num_steps": "20"})
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
        monkeypatch.setenv("TRAINING_JOB_NAME", name)
        monkeypatch.delenv(tracking.RUN_ID_ENV, raising=False)
        return Environment.from_base_dir(base, num_gpus=0, num_cpus=1)

    yield make
    tracking.stop("KILLED")  # a test that failed half-way leaves no run open in this process


def test_tf_pieces_log_to_mlflow(mlflow_server, job_env, capsys, monkeypatch, caplog):  # noqa: F811
    from container.tfod import trainer

    monkeypatch.setenv(tracking.CHANNEL_SOURCES_ENV, json.dumps({"train": "s3://bucket/pcb/train/"}))  # the SDK's
    env = job_env(mlflow_server.uri, "tf-pieces")
    schema = Schema.load("tfod")
    assert tracking.start(env, "tfod") is not None
    hps = trainer.job_hyperparameters(env, schema)
    tracking.log_params(hps, env)
    trainer.report_train(10, {"total_loss": 1.5, "cls_loss": 0.5, "box_loss": 0.25, "learning_rate": 0.01})
    trainer.report_train(20, {"total_loss": 1.25, "cls_loss": 0.25, "box_loss": 0.125, "learning_rate": 0.01})
    trainer.report_eval({"step": 20, "AP": 0.5, "AP50": 0.75, "ARmax100": 0.625})
    env.model_dir.mkdir(parents=True, exist_ok=True)
    (env.model_dir / "metrics.json").write_text(json.dumps({"final": {"AP": 0.5}}))
    (env.model_dir / "label_map.csv").write_text("1,rectangle\n")
    (env.model_dir / "model.tflite").write_bytes(b"not asked for")
    tracking.log_model_folder(env.model_dir, hps)
    tracking.stop("FINISHED")

    out = capsys.readouterr().out
    assert "[train] step=20" in out and "WARNING" not in out
    # MLflow's own logging quiet too (sagemaker-mlflow's header provider warned on every call to an http server)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (run,) = runs_of(mlflow_server, "tf-pieces")
    assert run.info.run_name == "tf-job-1" and run.info.status == "FINISHED"
    run_id = run.info.run_id
    # the metric definitions' names, at the training step
    assert history(mlflow_server, run_id, "train:total_loss") == [(10, 1.5), (20, 1.25)]
    assert history(mlflow_server, run_id, "eval:AP") == [(20, 0.5)]
    assert history(mlflow_server, run_id, "eval:ARmax100") == [(20, 0.625)]
    assert run.data.params["num_steps"] == "20" and run.data.params["experiment"] == hps["experiment"]
    assert run.data.params["mlflow_log_model"] == "false"
    tags = run.data.tags
    assert tags["sagemaker.job_name"] == "tf-job-1" and tags["sagemaker.image"] == "tfod"
    assert tags["sagemaker.instance_count"] == "1" and tags["sagemaker.channel.train"] == "s3://bucket/pcb/train/"
    assert artifacts(mlflow_server, run_id) == {"metrics.json", "label_map.csv"}  # no model: not asked for
    kept = json.loads(env.tracking_run_file.read_text())
    assert kept["run_id"] == run_id and kept["params_logged"] is True
    # the SDK reads the run back from the line the job printed
    from sdk.jobs.mlflow import run_of

    found = run_of(out.splitlines())
    assert found == {"run_id": run_id, "experiment_id": run.info.experiment_id,
                     "link": f"{mlflow_server.uri}/#/experiments/{run.info.experiment_id}/runs/{run_id}"}


def test_restart_continues_its_run(mlflow_server, job_env, capsys):  # noqa: F811
    from container.tfod import trainer

    env = job_env(mlflow_server.uri, "tf-restart", name="tf-job-2", hyperparameters={"mlflow_log_model": "true"})
    hps = trainer.job_hyperparameters(env, Schema.load("tfod"))
    assert hps["mlflow_log_model"] is True
    tracking.start(env, "tfod")
    tracking.log_params(hps, env)
    trainer.report_train(10, {"total_loss": 2.0})
    tracking.stop("KILLED")  # a spot interruption: the job exits 143, the run stays, its id in the checkpoints
    first = json.loads(env.tracking_run_file.read_text())["run_id"]
    assert runs_of(mlflow_server, "tf-restart")[0].info.status == "KILLED"

    again = Environment.from_base_dir(env.base_dir, num_gpus=0, num_cpus=1)  # the restarted job, same checkpoints
    tracking.start(again, "tfod")
    tracking.log_params(hps, again)  # logged before: not again (MLflow refuses a changed param; none is sent)
    trainer.report_train(20, {"total_loss": 1.0})
    again.model_dir.mkdir(parents=True, exist_ok=True)
    (again.model_dir / "metrics.json").write_text("{}")
    (again.model_dir / "model.tflite").write_bytes(b"tflite")
    tracking.log_model_folder(again.model_dir, hps)
    tracking.stop("FINISHED")

    out = capsys.readouterr().out
    assert f"continuing run {first}" in out and "WARNING" not in out
    (run,) = runs_of(mlflow_server, "tf-restart")  # one job, one run
    assert run.info.run_id == first and run.info.status == "FINISHED"
    assert history(mlflow_server, first, "train:total_loss") == [(10, 2.0), (20, 1.0)]
    assert artifacts(mlflow_server, first) == {"metrics.json", "model"}
    assert artifacts(mlflow_server, first, "model") == {"model/model.tflite"}


def test_silent_server_costs_one_bounded_call_and_one_warning(silent_server, job_env, monkeypatch,  # noqa: F811
                                                              capsys):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # the job's own setting wins over the image's 10 s
    env = job_env(silent_server, "never")
    assert tracking.start(env, "tfod") is None  # training goes on without a run
    tracking.log_params({"a": 1}, env)
    tracking.log_metric_line(Schema.load("tfod"), "train", {"total_loss": 1.0}, 1)
    tracking.log_model_folder(env.model_dir, {})
    tracking.stop("FINISHED")
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING mlflow")]
    assert len(warnings) == 1, out
    assert silent_server in warnings[0] and "training goes on" in warnings[0]
    assert not env.tracking_run_file.exists()


def test_a_call_that_never_returns_is_given_up():
    """Whatever MLflow does inside a call (DNS, a plugin fetching credentials), the job waits ``call_limit``."""
    said: list[str] = []
    tracker = tracking.Tracker("https://user:secret@mlflow.example/", call_limit=0.1, warn=said.append)
    release = threading.Event()
    try:
        assert tracker._call("start run", release.wait) is None
    finally:
        release.set()
    assert tracker.failed and "no answer" in tracker.failed
    assert len(said) == 1 and "https://mlflow.example/" in said[0] and "secret" not in said[0]
    assert tracker._call("log metrics", lambda: 1) is None  # off for the rest of the job
    assert len(said) == 1


def test_only_the_leader_logs(tmp_path, monkeypatch):
    base = build_tree(tmp_path / "opt_ml", {}, {}, hosts=("algo-1", "algo-2"), current_host="algo-2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert tracking.start(Environment.from_base_dir(base, num_gpus=0, num_cpus=1), "yolo") is None


def test_metric_names_are_the_metric_definitions():
    schema = Schema.load("yolo")
    values = schema.metric_values("metrics", {"epoch": 3, "mAP50-95": 0.5, "box_loss": float("nan"), "other": 1})
    assert values == {"epoch": 3.0, "val:mAP50-95": 0.5}
    assert schema.metric_values("class", {"mAP50": 0.25}, class_name="red car") == {"class:red car:mAP50": 0.25}
    assert tracking.metric_name("class:a/b (1):mAP50") == "class:a/b _1_:mAP50"
    assert tracking._tuning_job_of("tune-yolo-007-1a2b3c4d") == "tune-yolo"


def test_an_error_of_ours_turns_tracking_off_not_training(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    base = build_tree(tmp_path / "opt_ml", {}, {})
    (base / "input/config/inputdataconfig.json").write_text('{"train": "not an object"}')  # no channel config
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert tracking.start(Environment.from_base_dir(base, num_gpus=0, num_cpus=1), "yolo") is None
    tracking.log_metric_line(Schema.load("yolo"), "metrics", {"epoch": 1}, 1)
    tracking.stop("FINISHED")
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING mlflow")]
    assert len(warnings) == 1 and "training goes on" in warnings[0]
