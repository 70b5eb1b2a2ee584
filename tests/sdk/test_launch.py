"""launch -> wait -> logs -> fetch, end to end against a moto server over HTTP, with the real trainer."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

import sdk
from sdk.cli import main as cli
from sdk.jobs import s3 as _s3
from tests.conftest import FAST
from tests.sdk.conftest import BUCKET, IMAGE, ROLE

OUT = f"s3://{BUCKET}/jobs"


def launch(**kwargs):
    return sdk.launch_job(**{"image": IMAGE, "role": ROLE, "output_path": OUT, "hyperparameters": FAST, **kwargs})


@pytest.mark.slow
def test_launch_wait_logs_fetch(sagemaker, shapes, tmp_path, capsys):
    job = launch(train=shapes, tags={"team": "cv"}, base_job_name="shapes")
    printed = capsys.readouterr()
    assert not sagemaker.errors
    # while waiting: one progress line, rewritten in place, read from the CloudWatch log (not the raw lines)
    assert "\r" in printed.out and "epoch 2/2" in printed.out and "val:mAP50-95 " in printed.out
    assert "[metrics] epoch=" not in printed.out
    assert "region us-east-1 (from AWS_REGION)" in printed.err
    files = sum(1 for p in shapes.rglob("*") if p.is_file())
    assert f"({files} uploaded, 0 already there)" in printed.err
    assert job.status == "Completed"
    metrics = job.metrics()
    assert metrics["epoch"] == 2.0 and 0.0 <= metrics["final:mAP50"] <= 1.0
    # what SageMaker received: channels uploaded under the content prefix, schema-generated metrics
    request = sagemaker.requests[job.name]
    uri = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri.startswith(f"{OUT}/datasets/{shapes.name}-") and uri.endswith("/")
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == sdk.metric_definitions("yolo")
    assert "[final]" in job.logs()
    # the per-epoch series, from the same log with the job's own regexes; and its plot
    history = job.metrics_history()
    assert [e for e, _ in history["val:mAP50-95"]] == [1.0, 2.0] and len(history["train:box_loss"]) == 2
    best = [v for _, v in history["val:best_mAP50-95"]]
    assert best == sorted(best) and best[-1] == max(v for _, v in history["val:mAP50-95"])
    png = job.plot(tmp_path / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli(["plot", job.name, "--out", str(tmp_path / "cli.png")]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2 and (tmp_path / "cli.png").stat().st_size > 0

    model = sdk.fetch_model(job, dest=tmp_path / "model")
    assert model.best.name == "best.pt" and model.best.stat().st_size > 0
    assert model.metrics["final"]["mAP50"] == metrics["final:mAP50"]
    assert model.metrics["job_name"] == job.name
    # "latest" with a tag finds the same job
    latest = sdk.fetch_model("latest", name_prefix="shapes", tags={"team": "cv"}, dest=tmp_path / "m2")
    assert latest.job_name == job.name
    # the same folder again: nothing to upload
    again = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=shapes).uploads["train"]
    assert _s3.upload(sagemaker.session.client("s3"), again, channel="train") == (0, len(again.files))


def test_failed_job_raises_with_name_and_reason(sagemaker, shapes, tmp_path):
    weights = tmp_path / "weights"  # a weights channel without the .pt named: only the image can tell
    weights.mkdir()
    (weights / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(sdk.JobFailedError) as info:
        launch(train=shapes, channels={"weights": weights}, hyperparameters={**FAST, "model": "missing.pt"})
    err = info.value
    assert err.status == "Failed" and err.job_name in str(err)
    assert "missing.pt" in err.reason and "weights" in err.reason
    # the image's own failure file became the FailureReason
    assert sdk.Job.attach(err.job_name).failure_reason == err.reason
    with pytest.raises(sdk.JobFailedError, match="missing.pt"):
        sdk.fetch_model(err.job_name)


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_restart_resumes_from_it(sagemaker, shapes):
    sagemaker.pause_next = "epoch-start:2"  # the job waits there for the stop: mid-training on any machine
    job = launch(train=shapes, hyperparameters={**FAST, "epochs": "3"}, wait=False)
    deadline = time.monotonic() + 600
    while "[pause] epoch-start:2:" not in job.logs():
        assert time.monotonic() < deadline and job.status == "InProgress", job.logs()[-2000:]
        time.sleep(1)
    job.stop()
    with pytest.raises(sdk.JobFailedError) as info:
        job.wait(poll=1)
    assert info.value.status == "Stopped"
    assert "stopped by a StopTrainingJob request" in str(info.value) and "no reason given" not in str(info.value)
    assert f"python -m sdk resume {job.name}" in str(info.value)
    s3 = sagemaker.session.client("s3")
    prefix = f"jobs/{job.name}/checkpoints/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    assert any(k.endswith("weights/last.pt") for k in keys), keys
    # one call resumes it: same image, channels, hyperparameters and checkpoint location
    resumed = job.restart()
    assert resumed.name != job.name and resumed.status == "Completed"
    old, new = sagemaker.requests[job.name], sagemaker.requests[resumed.name]
    for key in ("AlgorithmSpecification", "InputDataConfig", "HyperParameters", "CheckpointConfig", "RoleArn",
                "OutputDataConfig"):
        assert new[key] == old[key], key
    assert "resuming from" in resumed.logs()


def test_missing_bucket_creates_nothing(sagemaker, shapes):
    with pytest.raises(sdk.NotFoundError, match="no such bucket 'not-there'"):
        launch(train=shapes, output_path="s3://not-there/jobs")
    assert sagemaker.session.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_s3_channels_are_checked_and_get_their_slash(sagemaker, aws, shapes):
    s3 = aws.client("s3")
    s3.upload_file(str(next(shapes.rglob("*.jpg"))), BUCKET, "data/train/images/a.jpg")
    assert _s3.check_s3_channel(s3, f"s3://{BUCKET}/data/train", channel="train") == f"s3://{BUCKET}/data/train/"
    one = f"s3://{BUCKET}/data/train/images/a.jpg"
    assert _s3.check_s3_channel(s3, one, channel="weights") == one
    with pytest.raises(sdk.NotFoundError, match="channel 'train': nothing under"):
        launch(train=f"s3://{BUCKET}/data/trian")
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_default_bucket_is_created(aws, shapes):
    job = launch(train=shapes, output_path=None, wait=False)
    assert job.request["OutputDataConfig"]["S3OutputPath"] == "s3://sagemaker-us-east-1-123456789012/sm-detectors"
    aws.client("s3").head_bucket(Bucket="sagemaker-us-east-1-123456789012")


def test_no_credentials(aws, monkeypatch, tmp_path, shapes):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(sdk.CredentialsError, match="no AWS credentials"):
        launch(train=shapes)


def test_multipart_etags_are_computed_like_s3(aws, tmp_path, monkeypatch):
    monkeypatch.setattr(_s3, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 50_000)  # 12.8 MB: 3 parts
    (folder / "exact.bin").write_bytes(b"x" * _s3.PART_SIZE)  # at the threshold: multipart with one part
    (folder / "small.txt").write_text("hello")
    source = _s3.plan_upload(folder, OUT, channel="train")
    assert _s3.upload(aws.client("s3"), source, channel="train") == (3, 0)
    assert _s3.upload(aws.client("s3"), source, channel="train") == (0, 3)  # listed size + ETag match
    (folder / "small.txt").write_text("hello again")
    changed = _s3.plan_upload(folder, OUT, channel="train")
    assert changed.uri != source.uri  # a changed folder never mixes with the old one


def _fake_completed_job(aws, name, tags=None):
    """A job moto marks Completed at once, with a model.tar.gz put where ModelArtifacts points."""
    sm = aws.client("sagemaker")
    plan = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=f"s3://{BUCKET}/d/", job_name=name, tags=tags)
    sm.create_training_job(**plan.request)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = json.dumps({"final": {"mAP50": 0.5}, "job_name": name}).encode()
        info = tarfile.TarInfo("metrics.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"jobs/{name}/output/model.tar.gz", Body=buf.getvalue())


def test_latest_by_prefix_and_tag(aws, tmp_path):
    _fake_completed_job(aws, "pcb-1", {"team": "cv"})
    time.sleep(1.1)
    _fake_completed_job(aws, "pcb-2", {"team": "other"})
    time.sleep(1.1)
    _fake_completed_job(aws, "cars-1", {"team": "cv"})
    assert sdk.fetch_model("latest", name_prefix="pcb", dest=tmp_path / "a").job_name == "pcb-2"
    assert sdk.fetch_model("latest", name_prefix="pcb", tags={"team": "cv"}, dest=tmp_path / "b").job_name == "pcb-1"
    assert sdk.fetch_model("latest", dest=tmp_path / "c").metrics["job_name"] == "cars-1"
    with pytest.raises(sdk.NoJobError, match="name starting 'boats'"):
        sdk.fetch_model("latest", name_prefix="boats")


def test_cli_status_and_fetch(aws, tmp_path, capsys):
    _fake_completed_job(aws, "pcb-9")
    assert cli(["status", "pcb-9"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "Completed"
    assert cli(["fetch", "latest", "--name-prefix", "pcb", "--dest", str(tmp_path / "m")]) == 0
    assert json.loads(capsys.readouterr().out)["final"] == {"mAP50": 0.5}
    assert cli(["status", "no-such-job"]) == 1
    assert "Could not find training job" in capsys.readouterr().err
