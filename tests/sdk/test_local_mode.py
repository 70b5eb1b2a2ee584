"""launch_job(instance_type="local"): the same request, run on this machine as a process."""

from __future__ import annotations

import pytest

import sdk
from tests.conftest import FAST
from tests.sdk.conftest import BUCKET

pytestmark = pytest.mark.slow


def test_local_folder_to_fetched_model(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    job = sdk.launch_job(instance_type="local", image="yolo", train=shapes, hyperparameters=FAST, base_job_name="loc",
                         logs=True)
    out = capsys.readouterr().out
    assert "[final]" in out and "epoch 2/2" in out  # the log and the progress line, while waiting
    assert isinstance(job, sdk.LocalJob) and job.status == "Completed"
    assert job.metrics()["epoch"] == 2.0
    request = job.describe()["Request"]
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == shapes.resolve().as_uri()
    model = sdk.fetch_model(job, dest=tmp_path / "m")
    assert model.best.is_file() and model.metrics["final"]
    # the same series and plot as a SageMaker job, from the local log
    history = job.metrics_history()
    assert [e for e, _ in history["val:mAP50"]] == [1.0, 2.0]
    assert job.plot(tmp_path / "local.png").stat().st_size > 0
    monkeypatch.delenv("AWS_REGION", raising=False)  # a local job's name is enough: no region asked
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    from sdk.cli import main as cli

    assert cli(["plot", job.name, "--out", str(tmp_path / "cli.png")]) == 0
    assert cli(["status", job.name]) == 0
    # another Python session finds it by name or as the latest local job
    assert sdk.fetch_model(job.name, local=True, dest=tmp_path / "m2").job_name == job.name
    assert sdk.fetch_model("latest", local=True, name_prefix="loc", dest=tmp_path / "m3").job_name == job.name


def test_s3_channels_are_downloaded(aws, shapes, tmp_path):
    s3 = aws.client("s3")
    for path in shapes.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"data/shapes/{path.relative_to(shapes).as_posix()}")
    job = sdk.launch_job(instance_type="local", image="yolo", train=f"s3://{BUCKET}/data/shapes/",
                         hyperparameters={**FAST, "epochs": "1"}, logs=False)
    assert job.status == "Completed"
    summary = sdk.fetch_model(job, dest=tmp_path / "m").metrics["dataset"]
    assert summary["train_images"] == 16 and summary["val_images"] == 4


def test_a_failing_local_job_raises_with_its_reason(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    weights = tmp_path / "weights"  # a weights channel without the .pt named: only the image can tell
    weights.mkdir()
    (weights / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(sdk.JobFailedError, match="missing.pt") as info:
        sdk.launch_job(instance_type="local", image="yolo", train=shapes, channels={"weights": weights},
                       hyperparameters={**FAST, "model": "missing.pt"}, logs=False)
    assert info.value.status == "Failed"
    assert sdk.LocalJob.attach(info.value.job_name).failure_reason == info.value.reason
