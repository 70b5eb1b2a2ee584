"""``fetch_model``: a job's ``model.tar.gz``, downloaded, safely unpacked, its files named.

This module finds the job (by handle, name, or ``"latest"``); the handle downloads and unpacks
(:mod:`sdk.jobs.unpack`). Imports run one way: ``_fetch -> _job -> _unpack``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdk._errors import ConfigurationError, NoJobError, aws_errors
from sdk.jobs.job import Job, LocalJob, _Handle
from sdk.jobs.unpack import FetchedModel, describe_model_dir

__all__ = ["FetchedModel", "describe_model_dir", "fetch_model", "latest_job"]


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
    from sdk.jobs.local import jobs_home, read_record

    done = []
    for job_dir in jobs_home().glob("*/job.json"):
        record = read_record(job_dir.parent)
        if record["TrainingJobStatus"] == "Completed" and record["TrainingJobName"].startswith(name_prefix or ""):
            done.append((job_dir.stat().st_mtime, record["TrainingJobName"]))
    if not done:
        starting = f" starting {name_prefix!r}" if name_prefix else ""
        raise NoJobError(f"no Completed local job{starting} in {jobs_home()}")
    return max(done)[1]


def fetch_model(job: Any = "latest", *, name_prefix: str | None = None, tags: Mapping[str, str] | None = None,
                dest: str | Path | None = None, local: bool = False, session: Any = None) -> FetchedModel:
    """Download and unpack a job's model; returns the paths of its weights, exports and metrics.

    ``job`` is a handle from ``launch_job``, a job name, a :class:`RegisteredModel` (its version's model, in
    ``./models/<group>-v<version>`` by default), or ``"latest"``: the newest Completed job
    whose name starts with ``name_prefix`` and that carries every tag in ``tags``. ``local=True``
    looks among local-mode jobs. The model lands in ``dest`` (default ``./models/<job name>``),
    which must be new, empty, or an earlier fetch of the same model (its files identical): nothing
    of yours is ever replaced or deleted. The archive is unpacked beside ``dest`` and moved in, so a
    refused archive leaves ``dest`` as it was. Every error is an :class:`SDKError`:
    :class:`ConfigurationError` for a ``dest`` holding other files, :class:`FetchError` for an
    unsafe or unreadable archive, :class:`JobFailedError` for a job that did not complete.
    """
    from sdk.jobs.model_registry import RegisteredModel

    if isinstance(job, RegisteredModel):  # a version of the Model Registry: its model.tar.gz
        if name_prefix or tags or local:
            raise ConfigurationError("name_prefix, tags and local do not apply to a registered model")
        from sdk.jobs.unpack import fetch_job_model

        info = {"TrainingJobStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": job.model_data}}
        target = dest if dest is not None else Path("models") / job.name
        return fetch_job_model(job.job_name or job.name, info, dest=target, session=session or job.session)
    if isinstance(job, str):
        if job == "latest":
            if local:
                job = LocalJob.attach(_latest_local(name_prefix))
            else:
                from sdk._session import aws_session

                session = aws_session(session)
                with aws_errors("connecting to SageMaker"):
                    client = session.client("sagemaker")
                job = Job(latest_job(client, name_prefix=name_prefix, tags=tags), session=session)
        elif local:
            job = LocalJob.attach(job)
        else:
            job = Job(job, session=session)
    elif name_prefix or tags:
        raise ConfigurationError("name_prefix and tags only apply to fetch_model('latest', ...)")
    elif not isinstance(job, _Handle):
        raise ConfigurationError("job must be a job name, 'latest' or a handle from launch_job, "
                                 f"not {type(job).__name__}")
    return job.fetch_model(dest=dest)
