"""``launch_job(mlflow=..., experiment=...)``: the job's MLflow tracking, checked before anything is paid for.

The image does the logging (``container/tracking.py``, docs/mlflow.md); the SDK puts the tracking server in the
job's environment (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``), checks the URI or ARN's shape and region
first, and says which IAM actions the job's role needs. :func:`run_of` reads the run back from the job's log line.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from container.tracking import (
    CHANNEL_SOURCES_ENV,
    DEFAULT_EXPERIMENT,
    EXPERIMENT_ENV,
    IMAGE_URI_ENV,
    RUN_LINE_RE,
    TRACKING_URI_ENV,
)
from sdk._errors import ConfigurationError

# SageMaker's own pattern for an MLflow resource (API_AIMlflowConfig: MlflowResourceArn)
ARN_RE = re.compile(r"^arn:aws[a-z\-]*:sagemaker:(?P<region>[a-z0-9\-]+):(?P<account>[0-9]{12}):"
                    r"(?P<kind>mlflow-app|mlflow-tracking-server)/(?P<name>[A-Za-z0-9][A-Za-z0-9\-]*)$")
ENV_VALUE_LIMIT = 512  # CreateTrainingJob's limit on one Environment value
EXPERIMENT_RE = re.compile(r"^[a-zA-Z0-9\-_./ ]{1,256}$")

# What the job's role calls on a SageMaker managed MLflow server (service prefix sagemaker-mlflow), and on the
# server's S3 artifact store, which the MLflow client writes to directly
IAM_ACTIONS = ("sagemaker-mlflow:GetExperimentByName", "sagemaker-mlflow:CreateExperiment",
               "sagemaker-mlflow:CreateRun", "sagemaker-mlflow:GetRun", "sagemaker-mlflow:UpdateRun",
               "sagemaker-mlflow:LogBatch")
ARTIFACT_IAM_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:ListBucket")


def tracking_environment(mlflow: str | None, experiment: str | None, *, region: str | None, image_uri: str | None,
                         environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the image reads, after the checks; ``{}`` without ``mlflow``."""
    if mlflow is None:
        if experiment is not None:
            raise ConfigurationError("experiment= names an MLflow experiment: give the tracking server too, "
                                     "mlflow='https://...' or a SageMaker MLflow ARN")
        return {}
    uri = check_uri(mlflow, region=region)
    name = experiment if experiment is not None else DEFAULT_EXPERIMENT
    if not isinstance(name, str) or not EXPERIMENT_RE.match(name):
        raise ConfigurationError(f"experiment {name!r}: 1 to 256 letters, digits, spaces and - _ . / (SageMaker's "
                                 "MLflow rule)")
    given = {k: v for k, v in (environment or {}).items() if k in (TRACKING_URI_ENV, EXPERIMENT_ENV)}
    wanted = {TRACKING_URI_ENV: uri, EXPERIMENT_ENV: name}
    clash = [k for k, v in given.items() if v != wanted[k]]
    if clash:
        raise ConfigurationError(f"environment sets {', '.join(clash)} and mlflow=/experiment= say otherwise: "
                                 "give one of them")
    return {**wanted, **({IMAGE_URI_ENV: image_uri} if image_uri else {})}


def channel_sources(uris: Mapping[str, str]) -> dict[str, str]:
    """Each channel's S3 URI (or local folder) for the run's tags, in one variable; left out past SageMaker's
    512 characters for an environment value."""
    text = json.dumps(dict(uris), separators=(",", ":"))
    if len(text) > ENV_VALUE_LIMIT:
        print(f"mlflow: the channels' sources take {len(text)} characters, over the {ENV_VALUE_LIMIT} an environment "
              "variable may hold; the run's tags give their input modes only", file=sys.stderr)
        return {}
    return {CHANNEL_SOURCES_ENV: text}


def check_uri(uri: Any, *, region: str | None) -> str:
    """An ``http(s)://`` server or a SageMaker MLflow tracking-server / App ARN in the job's region."""
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigurationError(f"mlflow={uri!r}: give the tracking server's http(s):// URL or a SageMaker MLflow "
                                 "ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)")
    uri = uri.strip()
    if uri.startswith("arn:"):
        match = ARN_RE.match(uri)
        if match is None:
            raise ConfigurationError(f"mlflow={uri!r} is not a SageMaker MLflow ARN; expected "
                                     "arn:aws:sagemaker:<region>:<12-digit account>:mlflow-tracking-server/<name> "
                                     "(or mlflow-app/<id>), as DescribeMlflowTrackingServer shows it")
        if region and match["region"] != region:
            raise ConfigurationError(f"mlflow ARN is in {match['region']} but the job runs in {region}: use a "
                                     f"tracking server in {region}, or launch the job in {match['region']}")
        return uri
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"mlflow={uri!r}: a tracking server is an http(s):// URL (the address `mlflow "
                                 "server` listens on) or a SageMaker MLflow ARN; file and database URIs are not "
                                 "reachable from a training job")
    if parts.password:
        raise ConfigurationError("mlflow= holds a password in the URL; it would be stored in the job's description: "
                                 "use a server the job reaches without one (SageMaker MLflow with the job's role)")
    return uri


def iam_note(uri: str) -> str | None:
    """What the role needs, for a SageMaker MLflow ARN (an http server authenticates its own way)."""
    match = ARN_RE.match(uri)
    if match is None:
        return None
    return (f"mlflow: the job's role needs {', '.join(IAM_ACTIONS)} on {uri}, and "
            f"{', '.join(ARTIFACT_IAM_ACTIONS)} on the server's artifact store (its S3 bucket)")


def say_iam(environment: Mapping[str, str]) -> None:
    uri = environment.get(TRACKING_URI_ENV)
    if uri and (note := iam_note(uri)):
        print(note, file=sys.stderr)


def run_of(lines: Iterable[str]) -> dict[str, str] | None:
    """The job's MLflow run from its log (``run_id``, ``experiment_id``, ``link`` when one can be formed)."""
    found = None
    for line in lines:
        match = RUN_LINE_RE.search(line)
        if match:
            found = {k: v for k, v in match.groupdict().items() if v}
    return found
