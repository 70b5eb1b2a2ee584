"""Resume a stopped job in one call: its image, channels, hyperparameters and checkpoint location.

``DescribeTrainingJob`` returns everything ``CreateTrainingJob`` was sent; the new job reuses it,
with the same ``CheckpointConfig``, so SageMaker puts the stopped job's checkpoints back into
the image's checkpoint folder (``CHECKPOINT_LOCAL_PATH``) and the image resumes from ``last.pt``.
Arguments the caller gives with a value other than the default override what the stopped job had
(hyperparameters are merged).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdk._errors import ConfigurationError, aws_errors
from sdk.jobs.spec import JOB_ARGS

_DEFAULTS = {a.name: a.default for a in JOB_ARGS}
_STAMP = re.compile(r"-\d{8}-\d{6}-[0-9a-f]{4}$")  # unique_job_name's suffix


def _describe(job: Any, session: Any) -> tuple[dict[str, Any], bool]:
    """The stopped job's description, and whether it ran here. A handle (sdk.jobs.job, which imports this module
    through sdk.jobs.plan: imports run one way) says so itself; a name is a SageMaker job's."""
    if isinstance(job, str):
        from sdk._session import aws_session

        with aws_errors("connecting to SageMaker"):
            sagemaker = aws_session(session).client("sagemaker")
        with aws_errors(f"describing training job {job}"):
            return sagemaker.describe_training_job(TrainingJobName=job), False
    if isinstance(getattr(type(job), "runs_here", None), bool) and callable(getattr(job, "describe", None)):
        return job.describe(), type(job).runs_here
    raise ConfigurationError(f"resume takes a Job, a LocalJob or a job name, got {type(job).__name__}")


def resumed_arguments(job: Any, given: Mapping[str, Any], *, session: Any = None) -> dict[str, Any]:
    """``plan_job`` arguments that recreate ``job`` with its checkpoints, overridden by ``given``."""
    info, local = _describe(job, session)
    name = info["TrainingJobName"]
    status = info.get("TrainingJobStatus")
    if status in ("InProgress", "Stopping"):
        raise ConfigurationError(f"training job {name} is still {status}; stop it (and wait until it is Stopped) "
                                 "before resuming it")
    request = info.get("Request", info) if local else info
    checkpoint = (request.get("CheckpointConfig") or {}).get("S3Uri")
    if not checkpoint and not local:
        raise ConfigurationError(f"training job {name} synced no checkpoints (no CheckpointConfig), so there is "
                                 "nothing to resume from; launch it again instead")
    algo = request["AlgorithmSpecification"]
    resources = request["ResourceConfig"]
    stopping = request.get("StoppingCondition", {})
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    image = algo["TrainingImage"]
    kind = None
    if local:
        channels = {ch: uri.removeprefix("file://") for ch, uri in channels.items()}
        if image.startswith("local/"):
            image, kind = image.split("/", 1)[1], None
    derived: dict[str, Any] = {
        "image": image, "kind": kind, "channels": channels,
        "hyperparameters": dict(request.get("HyperParameters") or {}),
        "role": request.get("RoleArn"),
        "instance_type": resources["InstanceType"], "instance_count": resources.get("InstanceCount", 1),
        "volume_size_gb": resources.get("VolumeSizeInGB", 50),
        "spot": bool(request.get("EnableManagedSpotTraining")),
        "max_run": stopping.get("MaxRuntimeInSeconds", _DEFAULTS["max_run"]),
        "max_wait": stopping.get("MaxWaitTimeInSeconds"),
        "output_path": None if local else request["OutputDataConfig"]["S3OutputPath"],
        "checkpoint_s3_uri": checkpoint, "checkpoints": bool(checkpoint),
        "input_modes": {c["ChannelName"]: c.get("InputMode", "File") for c in request["InputDataConfig"]},
        "environment": request.get("Environment") or None,
        "base_job_name": _STAMP.sub("", name)[:40] + "-resumed",
        "class_names": _class_names(algo.get("MetricDefinitions") or []),
    }
    if local:
        derived["job_name"] = name  # a local job resumes in its own folder, where its checkpoints are
    out = dict(derived)
    for key, value in given.items():
        if key == "hyperparameters" and value:
            out["hyperparameters"] = {**derived["hyperparameters"], **value}
        elif key in ("train", "val") and value is not None:
            out["channels"] = {k: v for k, v in out["channels"].items() if k != key}
            out[key] = value
        elif value is not None and value != _DEFAULTS.get(key) and key in _DEFAULTS:
            out[key] = value
    return out


def _class_names(definitions: list[dict[str, str]]) -> tuple[str, ...]:
    """The per-class names the stopped job's metric definitions carry (``class:<name>:mAP50``)."""
    names: list[str] = []
    for d in definitions:
        parts = d.get("Name", "").split(":")
        if len(parts) == 3 and parts[0] == "class" and parts[1] not in names:
            names.append(parts[1])
    return tuple(names)
