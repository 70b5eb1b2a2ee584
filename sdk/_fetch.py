"""``fetch_model``: a job's ``model.tar.gz``, downloaded, safely unpacked, its files named."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.archive import safe_extract
from sdk._errors import ConfigurationError, JobFailedError, NoJobError, NotFoundError, aws_errors

WEIGHT_NAMES = ("best.pt", "last.pt")


@dataclass(frozen=True)
class FetchedModel:
    """What a finished job left: ``directory`` holds the unpacked ``model.tar.gz``."""

    job_name: str
    directory: Path
    best: Path | None  # the weights to use (best.pt, or the SavedModel folder of a TF job)
    last: Path | None
    exports: dict[str, Path] = field(default_factory=dict)  # format -> file or folder
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json, as the image wrote it
    metrics_file: Path | None = None


def describe_model_dir(job_name: str, directory: Path) -> FetchedModel:
    """Name the files of an unpacked model folder (the layout both images write)."""
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    exports: dict[str, Path] = {}
    export_dir = directory / "exports"
    if export_dir.is_dir():
        for item in sorted(export_dir.iterdir()):
            fmt = item.name.rsplit("_", 1)[-1] if item.is_dir() else item.suffix.lstrip(".")
            exports[fmt or item.name] = item
    for item in sorted(directory.glob("*.tflite")):
        exports[item.stem] = item
    saved_models = sorted((p.parent for p in directory.glob("[0-9]*/saved_model.pb")), key=lambda p: int(p.name))
    if saved_models:
        exports["saved_model"] = saved_models[-1]
    best = directory / "best.pt"
    last = directory / "last.pt"
    return FetchedModel(
        job_name=job_name,
        directory=directory,
        best=best if best.is_file() else exports.get("saved_model"),
        last=last if last.is_file() else None,
        exports=exports,
        metrics=metrics,
        metrics_file=metrics_file if metrics_file.is_file() else None,
    )


def _unpack(tarball: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    safe_extract(tarball, dest)


def _tags_match(sagemaker: Any, arn: str, tags: Mapping[str, str]) -> bool:
    with aws_errors("reading job tags"):
        have = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
    return all(have.get(k) == v for k, v in tags.items())


def latest_job(sagemaker: Any, *, name_prefix: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """The newest Completed job whose name starts with ``name_prefix`` and carries ``tags``."""
    kwargs: dict[str, Any] = {"StatusEquals": "Completed", "SortBy": "CreationTime", "SortOrder": "Descending",
                              "MaxResults": 100}
    if name_prefix:
        kwargs["NameContains"] = name_prefix
    summaries: list[dict[str, Any]] = []
    with aws_errors("listing training jobs"):
        for page in sagemaker.get_paginator("list_training_jobs").paginate(**kwargs):
            summaries += page.get("TrainingJobSummaries", [])
    summaries.sort(key=lambda s: s["CreationTime"], reverse=True)
    for summary in summaries:
        if name_prefix and not summary["TrainingJobName"].startswith(name_prefix):
            continue
        if tags and not _tags_match(sagemaker, summary["TrainingJobArn"], tags):
            continue
        return summary["TrainingJobName"]
    wanted = " and ".join(filter(None, [f"name starting {name_prefix!r}" if name_prefix else "",
                                        f"tags {dict(tags)}" if tags else ""])) or "any name"
    raise NoJobError(f"no Completed training job with {wanted}")


def _latest_local(name_prefix: str | None) -> str:
    from sdk._local import jobs_home, read_record

    done = []
    for job_dir in jobs_home().glob("*/job.json"):
        record = read_record(job_dir.parent)
        if record["TrainingJobStatus"] == "Completed" and record["TrainingJobName"].startswith(name_prefix or ""):
            done.append((job_dir.stat().st_mtime, record["TrainingJobName"]))
    if not done:
        raise NoJobError(f"no Completed local job{f' starting {name_prefix!r}' if name_prefix else ''} in {jobs_home()}")
    return max(done)[1]


def fetch_model(job: Any = "latest", *, name_prefix: str | None = None, tags: Mapping[str, str] | None = None,
                dest: str | Path | None = None, local: bool = False, session: Any = None) -> FetchedModel:
    """Download and unpack a job's model; returns the paths of its weights, exports and metrics.

    ``job`` is a handle from ``launch_job``, a job name, or ``"latest"``: the newest Completed job
    whose name starts with ``name_prefix`` and that carries every tag in ``tags``. ``local=True``
    looks among local-mode jobs. The model lands in ``dest`` (default ``./models/<job name>``).
    """
    from sdk._job import Job, LocalJob

    if isinstance(job, str):
        if job == "latest":
            if local:
                job = LocalJob.attach(_latest_local(name_prefix))
            else:
                import boto3

                session = session or boto3.Session()
                with aws_errors("connecting to SageMaker"):
                    client = session.client("sagemaker")
                job = Job(latest_job(client, name_prefix=name_prefix, tags=tags), session=session)
        elif local:
            job = LocalJob.attach(job)
        else:
            job = Job(job, session=session)
    elif name_prefix or tags:
        raise ConfigurationError("name_prefix and tags only apply to fetch_model('latest', ...)")
    info = job.describe()
    if info["TrainingJobStatus"] != "Completed":
        raise JobFailedError(job.name, info["TrainingJobStatus"],
                             info.get("FailureReason", "") or "it has not completed, so there is no model to fetch")
    uri = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    target = Path(dest) if dest else Path("models") / job.name
    if isinstance(job, LocalJob):
        tarball = Path(uri.removeprefix("file://"))
        if not tarball.is_file():
            raise NotFoundError(f"local job {job.name}: {tarball} is missing", code="NoSuchKey")
        _unpack(tarball, target)
    else:
        from sdk._request import split_s3

        bucket, key = split_s3(uri)
        with tempfile.TemporaryDirectory() as tmp, aws_errors(f"downloading the model of {job.name} from {uri}"):
            tarball = Path(tmp) / "model.tar.gz"
            job.session.client("s3").download_file(bucket, key, str(tarball))
            _unpack(tarball, target)
    return describe_model_dir(job.name, target)
