"""Preflight: every mistake the image or the API would refuse is caught before a byte is uploaded or a job created.

Runs on the moto server (127.0.0.1) and needs no framework: ``test_notebook_install`` runs this very
file again in a virtual environment with the ``[sdk]`` extra alone (no ultralytics, no torch).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sdk
from sdk._errors import AWSError, ConfigurationError, SDKError, WaitTimeoutError
from sdk.cli import main as cli
from tests.sdk.conftest import BUCKET, IMAGE, ROLE

OUT = f"s3://{BUCKET}/jobs"
ok_names = {"dropout": 0.1, "degrees": 10, "flipud": 0.5}


@pytest.fixture
def data(tmp_path):
    """A tiny YOLO tree that names its classes (data.yaml); no image is opened by preflight."""
    root = tmp_path / "pcb"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        (root / "images" / split / "a.jpg").write_bytes(b"\xff\xd8\xff")
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [short, open, spur]\n")
    return root


def _nothing_sent(aws) -> None:
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0, "something was uploaded"
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == [], "a job was created"


def launch(data, **kwargs):
    return sdk.launch_job(**{"image": IMAGE, "role": ROLE, "output_path": OUT, "train": data, "wait": False,
                             **kwargs})


@pytest.mark.parametrize("kwargs, words", [
    # the image's schema: types, choices, ranges (known without ultralytics installed)
    ({"hyperparameters": {"imgsz": "big"}}, "'imgsz' must be an integer or a list"),
    ({"hyperparameters": {"batch": "abc"}}, "'batch' must be an integer or a number"),
    ({"hyperparameters": {"epochs": 1.5}}, "'epochs' must be an integer, got 1.5"),
    ({"hyperparameters": {"epochs": 0}}, "'epochs' must be between 1 and 100000"),
    ({"hyperparameters": {"optimizer": "Adamm"}}, "'optimizer' must be one of .*did you mean 'Adam"),
    ({"hyperparameters": {"export": "bogus"}}, "'export' has unknown item\\(s\\) 'bogus'"),
    ({"hyperparameters": {"flipud": 1.5}}, "'flipud' must be between 0.0 and 1.0"),
    ({"hyperparameters": {"epoch": 3}}, "did you mean 'epochs'\\? Run `describe`"),
    ({"hyperparameters": {"sagemaker_program": "train.py"}}, "'sagemaker_program' are reserved for SageMaker"),
    # the image's limits, from its schema
    ({"hyperparameters": {"model": "yolo11n.pt"}}, "model='yolo11n.pt' needs the 'weights' channel"),
    # the API's limits, from botocore's service model
    ({"tags": {f"k{i}": "v" for i in range(51)}}, "Tags: 51 items; the API accepts at most 50"),
    ({"instance_type": "g5.xlarge"}, "did you mean 'ml.g5.xlarge'"),
    ({"instance_type": "lcoal"}, "did you mean 'local'"),
    ({"instance_type": "ml.banana.huge"}, "InstanceType: 'ml.banana.huge' is not one of the API's values"),
    ({"max_run": 40 * 24 * 3600}, "at most 28 days"),
    ({"job_name": "x" * 64}, "job name 'x+' is not valid"),
    ({"environment": {"A": "x" * 600}}, "Environment\\['A'\\]: 600 characters; the API accepts at most 512"),
    ({"output_path": "s3://b/p"}, "bucket name 'b' is 1 characters; S3 bucket names are 3 to 63"),
    ({"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/detector:1"}, "--kind yolo"),
])
def test_mistakes_are_refused_before_anything_is_sent(aws, data, kwargs, words):
    with pytest.raises(ConfigurationError, match=words):
        launch(data, **kwargs)
    _nothing_sent(aws)
    with pytest.raises(ConfigurationError, match=words):  # the plan says the same, and plan_job sends nothing
        sdk.plan_job(**{"image": IMAGE, "role": ROLE, "output_path": OUT, "train": data, **kwargs})


def test_valid_ultralytics_arguments_pass(aws, data):
    plan = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data,
                        hyperparameters={**ok_names, "optimizer": "adamw", "export": "onnx,tflite", "batch": 16})
    hps = plan.request["HyperParameters"]
    assert hps["optimizer"] == "AdamW" and hps["batch"] == "16" and hps["degrees"] == "10"


def test_plan_gives_the_verdict_without_credentials(aws, data, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with pytest.raises(ConfigurationError, match="'epochs' must be between 1 and 100000"):  # not a credentials error
        sdk.plan_job(image=IMAGE, role=ROLE, train=data, hyperparameters={"epochs": 0})
    with pytest.raises(ConfigurationError, match="Tags: 51 items"):  # the API's verdict, before the STS call
        sdk.plan_job(image=IMAGE, role=ROLE, train=data, tags={f"k{i}": "v" for i in range(51)})
    plan = sdk.plan_job(image=IMAGE, role=ROLE, train=data, output_path=OUT)  # nothing left to ask AWS
    assert plan.request["TrainingJobName"]


def test_region_is_resolved_first_and_named(aws, data, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigurationError, match="no AWS region: set AWS_REGION"):
        launch(data)
    _nothing_sent(aws)
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # AWS_REGION alone is enough, as for build-and-push.sh
    assert sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data).region == \
        "region us-east-1 (from AWS_REGION)"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert "AWS_DEFAULT_REGION" in sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data).region


def test_class_names_come_from_the_data(aws, data):
    plan = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data,
                        hyperparameters={"per_class_metrics": True})
    names = [d["Name"] for d in plan.request["AlgorithmSpecification"]["MetricDefinitions"]]
    assert {"class:short:mAP50", "class:open:mAP50-95", "class:spur:mAP50"} <= set(names)
    given = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data, class_names=["a"],
                         hyperparameters={"per_class_metrics": True}).request
    assert "class:a:mAP50" in [d["Name"] for d in given["AlgorithmSpecification"]["MetricDefinitions"]]
    off = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=data).request  # not asked: none
    assert not any(d["Name"].startswith("class:") for d in off["AlgorithmSpecification"]["MetricDefinitions"])


def test_class_names_from_other_formats(aws, tmp_path):
    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (coco / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 3]}],
        "categories": [{"id": 7, "name": "scratch"}, {"id": 9, "name": "dent"}]}))
    plan = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=coco, hyperparameters={"per_class_metrics": 1})
    names = [d["Name"] for d in plan.request["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "class:scratch:mAP50" in names and "class:dent:mAP50" in names


def test_signatures_are_declared_once():
    import inspect

    from sdk.jobs.spec import FOLLOW_ARGS, JOB_ARGS

    plan = inspect.signature(sdk.plan_job).parameters
    launch_ = inspect.signature(sdk.launch_job).parameters
    assert list(plan) == [a.name for a in JOB_ARGS]
    assert list(launch_) == [a.name for a in (*JOB_ARGS, *FOLLOW_ARGS)]
    for params in (plan, launch_):
        for arg in (*JOB_ARGS, *FOLLOW_ARGS):
            if arg.name in params:
                assert params[arg.name].kind is inspect.Parameter.KEYWORD_ONLY
                assert params[arg.name].default == arg.default, arg.name
    assert "Job" in str(inspect.signature(sdk.launch_job).return_annotation)
    with pytest.raises(ConfigurationError, match="'instance_typ' \\(did you mean 'instance_type'"):
        from sdk.tuning import plan_tuning

        plan_tuning(image=IMAGE, role=ROLE, ranges={"lr0": (0.001, 0.1)}, instance_typ="ml.g5.xlarge")


def test_every_launch_function_takes_the_specs_typed_keyword_arguments():
    """plan_job, launch_job and the adapters are built from one frozen spec each (sdk.jobs.spec.JobSpec and its
    extensions): typed keyword-only parameters, JobSpec's first, no **kwargs: Any left."""
    import dataclasses
    import inspect

    from sdk.estimator import make_estimator
    from sdk.jobs.spec import JOB_ARGS, AdapterSpec, JobSpec, LaunchSpec
    from sdk.pipeline import RetrainSpec, retrain_on_upload
    from sdk.tuning import TuneJobSpec, TuneSpec, plan_tuning, tune_job

    job_fields = [f.name for f in dataclasses.fields(JobSpec)]
    for function, spec in ((sdk.plan_job, JobSpec), (sdk.launch_job, LaunchSpec), (make_estimator, AdapterSpec),
                           (sdk.model_trainer, AdapterSpec), (plan_tuning, TuneSpec), (tune_job, TuneJobSpec),
                           (retrain_on_upload, RetrainSpec)):
        params = list(inspect.signature(function).parameters.values())
        assert [p.name for p in params] == [f.name for f in dataclasses.fields(spec)], function.__name__
        assert [p.name for p in params][:len(job_fields)] == job_fields
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.annotation is not inspect.Parameter.empty
                   for p in params), function.__name__
        assert dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen
    assert all(a.type and a.help for a in JOB_ARGS)
    # the tune and pipeline commands' own flags come from the same fields: one default, one help text
    import argparse

    from sdk.cli import parser
    from sdk.jobs.spec import JOB_ARG_NAMES, args_of

    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command, spec in (("tune", TuneJobSpec), ("pipeline", RetrainSpec)):
        actions = {a.dest: a for a in commands[command]._actions}
        for arg in args_of(spec, skip=JOB_ARG_NAMES):
            if arg.cli != "none":
                assert actions[arg.name].default == (None if arg.default is dataclasses.MISSING else arg.default)
                assert arg.help in (actions[arg.name].help or "") or arg.flag_help in (actions[arg.name].help or "")
    with pytest.raises(TypeError, match="plan_job\\(\\) got an unexpected keyword argument 'imag' \\(did you mean"):
        sdk.plan_job(imag=IMAGE)


def test_wait_timeout_is_an_sdk_error(aws):
    job = sdk.Job("still-running", session=aws)
    job.describe = lambda: {"TrainingJobName": "still-running", "TrainingJobStatus": "InProgress",
                            "SecondaryStatus": "Training", "AlgorithmSpecification": {"TrainingImage": IMAGE}}
    with pytest.raises(WaitTimeoutError) as info:
        job.wait(timeout=0, poll=0)
    assert isinstance(info.value, SDKError) and isinstance(info.value, TimeoutError)


@pytest.mark.parametrize("info, words", [
    ({"SecondaryStatus": "Stopped"}, "stopped by a StopTrainingJob request"),
    ({"SecondaryStatus": "MaxRuntimeExceeded", "StoppingCondition": {"MaxRuntimeInSeconds": 60}}, "reached max_run"),
    ({"SecondaryStatus": "MaxWaitTimeExceeded"}, "spot training waited longer than max_wait"),
    ({"StoppedBy": "job.stop() in this Python session"}, "stopped by job.stop()"),
])
def test_who_stopped_a_job_and_why(info, words):
    err = sdk.JobFailedError("j", "Stopped", __import__("sdk.jobs.job", fromlist=["stop_reason"]).stop_reason(
        {"TrainingJobStatus": "Stopped", **info}))
    assert words in str(err) and "no reason given" not in str(err) and "sdk resume j" in str(err)


def test_retrain_loop_and_refused_target(aws, monkeypatch):
    from sdk.pipeline import retrain_on_upload

    data = f"s3://{BUCKET}/incoming/pcb/"
    with pytest.raises(ConfigurationError, match="inside the watched prefix .* runaway loop"):
        retrain_on_upload(name="loop", data=data, image=IMAGE, role=ROLE, output_path=f"{data}out", session=aws)
    assert aws.client("sagemaker").list_pipelines()["PipelineSummaries"] == []
    # with a marker only that file starts a training: outputs under the prefix are fine
    real = aws.client

    def client(name, **kw):
        c = real(name, **kw)
        if name == "events":  # EventBridge answers 200 yet refuses the target
            put = c.put_targets
            c.put_targets = lambda **a: {**put(**a), "FailedEntryCount": 1, "FailedEntries": [
                {"TargetId": "pipeline", "ErrorCode": "ValidationException", "ErrorMessage": "role cannot be assumed"}]}
        return c

    monkeypatch.setattr(aws, "client", client)
    with pytest.raises(AWSError, match="refused its target .*role cannot be assumed"):
        retrain_on_upload(name="marked", data=data, image=IMAGE, role=ROLE, output_path=f"{data}out",
                          marker="_READY", session=aws, events_role=ROLE)


def test_cli_user_mistakes_and_closed_pipes(aws, data, capsys, tmp_path):
    assert cli(["launch", "--image", IMAGE, "--role", ROLE, "--train", str(data), "--output-path", OUT,
                "--hp", "epochs=0", "--dry-run"]) == 2
    assert "'epochs' must be between 1 and 100000" in capsys.readouterr().err
    assert cli(["launch", "--image", IMAGE, "--role", ROLE, "--train", str(data), "--output-path", OUT,
                "--instance-type", "lcoal"]) == 2
    assert "did you mean 'local'" in capsys.readouterr().err
    _nothing_sent(aws)
    # `describe | head`: no BrokenPipeError traceback
    out = subprocess.run(f"{sys.executable} -m sdk describe | head -1", shell=True, capture_output=True, text=True,
                         check=False,
                         cwd=str(tmp_path), env={**__import__("os").environ,
                                                 "PYTHONPATH": str(__import__("tests.conftest").conftest.ROOT)})
    assert out.stdout.strip() and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_tuning_keeps_checkpoints_per_training_job(tmp_path):
    """Each training job of a tuning job keeps its own folder under the shared prefix (spot resumes its own run)."""
    from container.contract import Environment

    env = Environment(base_dir=tmp_path, hyperparameters_raw={"_tuning_objective_metric": "m"},
                      environ={"TRAINING_JOB_NAME": "tune-001"})
    assert env.host_checkpoint_dir == env.checkpoint_dir / "tune-001" / env.current_host
    plain = Environment(base_dir=tmp_path, environ={"TRAINING_JOB_NAME": "job"})
    assert plain.host_checkpoint_dir == plain.checkpoint_dir / plain.current_host


NOTEBOOK_VENV = __import__("os").environ.get("SDK_ONLY_VENV", "/tmp/venv-sdk-only")  # .ci/run may point elsewhere


def test_notebook_install_runs_the_preflight_cases():
    """The [sdk] extra alone (no ultralytics, no torch): the same preflight verdicts."""
    from pathlib import Path

    from tests.conftest import ROOT

    python = Path(NOTEBOOK_VENV) / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no notebook-only environment at {NOTEBOOK_VENV}: python3 -m venv {NOTEBOOK_VENV} && "
                    f"{NOTEBOOK_VENV}/bin/pip install -c constraints.txt -e '.[sdk,test]'")
    code = "import importlib.util as u; print(u.find_spec('ultralytics'), u.find_spec('torch'))"
    probe = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["None", "None"], "the notebook environment must not have ultralytics or torch"
    out = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
                          "-k", "not notebook_install", "tests/unit/test_schema.py"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
