"""The SageMaker Model Registry, read and written at the API's level: groups, versions, approval, requests.

    RegisteredModel            one version (a model package) of a group: arn, group, version, status, metrics,
                               job_name, created; ``approve()`` / ``reject()``
    ModelList                  ``registered_models(group)``: newest first, a table in a notebook and as text
    package_request(...)       the ``CreateModelPackage`` request ``register`` sends and the pipeline's
                               register step carries (one builder for both)
    latest_approved(...)       the version ``deploy(group=...)`` serves, or NoApprovedModelError naming the
                               pending versions and how to approve one

Imports run one way: :mod:`sdk.registry` (``register``), :mod:`sdk.serving` (``deploy``), :mod:`sdk.jobs.fetch`
(``fetch_model``) and :mod:`sdk.pipeline` import this module; it imports none of them. No boto3 here: clients
are passed in.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from container.serving.protocol import IMAGE_TYPES, JSON, JSONLINES
from container.serving.resources import WEIGHTS_ENV
from sdk._errors import AWSError, ConfigurationError, NoApprovedModelError, NotFoundError, aws_errors

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
CREATED_BY = {"Key": "sm-detectors:created-by", "Value": "sdk.register"}
# what the serving contract reads and answers (container/serving/protocol.py)
CONTENT_TYPES = [*IMAGE_TYPES, JSON, JSONLINES[0]]
RESPONSE_TYPES = [JSON, JSONLINES[0]]
# recorded on each version (the console shows them; Inference Recommender starts from them); deploy is not
# limited to them. CPU types serve best.pt or ONNX; the GPU types run CUDA where the image has it
DEFAULT_INSTANCE_TYPE = "ml.m5.large"  # deploy's and transform's (and their CLI's) default: plenty for yolo11n
REALTIME_INSTANCE_TYPES = [DEFAULT_INSTANCE_TYPE, "ml.m5.xlarge", "ml.c5.xlarge", "ml.c5.2xlarge", "ml.g4dn.xlarge",
                           "ml.g5.xlarge"]
TRANSFORM_INSTANCE_TYPES = [DEFAULT_INSTANCE_TYPE, "ml.m5.xlarge", "ml.c5.xlarge", "ml.c5.2xlarge", "ml.g4dn.xlarge"]
# the score of each image: which line/key of its schema's metrics, and its name in metrics.json's "final"
SCORES = {"yolo": {"mAP50-95": ("final", "mAP50-95"), "mAP50": ("final", "mAP50"),
                   "precision": ("final", "precision"), "recall": ("final", "recall")},
          "tfod": {"mAP50-95": ("eval", "AP"), "mAP50": ("eval", "AP50")}}
COLUMNS = ("version", "status", "mAP50-95", "job", "created")
GROUP_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# CustomerMetadataProperties: the API's pattern is Java's [\p{L}\p{Z}\p{N}_.:/=+\-@]; Python's re has no \p
_META_PUNCT = set("_.:/=+-@")
META_KEY_MAX, META_VALUE_MAX, META_MAX = 128, 256, 50


def metric_name(kind: str, score: str) -> str:
    """The ``MetricDefinitions`` name (``final:mAP50-95``; ``eval:AP`` for tfod) of a score, from the image's schema."""
    from container.schema import Schema

    line, key = SCORES[kind][score]
    for definition in Schema.load(kind).metrics:
        if definition.line == line and definition.key == key:
            return definition.name
    raise ConfigurationError(f"the {kind} image's schema has no {line}/{key} metric")


def check_group_name(group: str) -> str:
    if not isinstance(group, str) or not GROUP_RE.match(group):
        raise ConfigurationError(f"model package group name {group!r} is not valid: 1 to 63 letters, digits and "
                                 "hyphens, starting and ending with a letter or digit")
    return group


def meta_problem(key: str, value: str) -> str | None:
    """Why SageMaker would refuse this CustomerMetadataProperties entry, or None."""
    for what, text, limit in (("key", key, META_KEY_MAX), ("value", value, META_VALUE_MAX)):
        if not 1 <= len(text) <= limit:
            return f"{what} is {len(text)} characters (1 to {limit})"
        bad = sorted({c for c in text if not (c.isalnum() or c.isspace() or c in _META_PUNCT)})
        if bad:
            return f"{what} {text!r} holds {''.join(bad)!r} (letters, digits, spaces and _.:/=+-@ only)"
    return None


# -- a version ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegisteredModel:
    """One version of a model package group (a SageMaker model package), as ``DescribeModelPackage`` tells it.

    ``metrics``: the scores recorded at registration (mAP50-95, mAP50, precision, recall), read back from the
    package's ``CustomerMetadataProperties``. ``approve()`` / ``reject()`` change its status; ``deploy(model)``
    serves it, ``fetch_model(model)`` downloads it."""

    arn: str
    group: str
    version: int
    status: str
    metrics: dict[str, float]
    job_name: str
    created: datetime | None
    description: str = ""
    note: str = ""  # ApprovalDescription
    image: str = ""
    model_data: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)  # CustomerMetadataProperties, as stored
    statistics: str = ""  # ModelMetrics.ModelQuality.Statistics.S3Uri: the job's metrics.json
    session: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_description(cls, info: Mapping[str, Any], session: Any = None) -> RegisteredModel:
        properties = dict(info.get("CustomerMetadataProperties") or {})
        metrics = {}
        for name in SCORES["yolo"]:
            try:
                metrics[name] = float(properties[name])
            except (KeyError, ValueError):
                continue
        container = ((info.get("InferenceSpecification") or {}).get("Containers") or [{}])[0]
        generated = (info.get("MetadataProperties") or {}).get("GeneratedBy", "")
        job = properties.get("training_job") or (generated.rsplit("/", 1)[-1] if ":training-job/" in generated else "")
        arn = info["ModelPackageArn"]
        statistics = (((info.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {})
        return cls(arn=arn, group=info.get("ModelPackageGroupName") or arn.rsplit("/", 2)[-2],
                   version=int(info.get("ModelPackageVersion") or 0), status=info.get("ModelApprovalStatus") or "",
                   metrics=metrics, job_name=job, created=info.get("CreationTime"),
                   description=info.get("ModelPackageDescription") or "", note=info.get("ApprovalDescription") or "",
                   image=container.get("Image", ""), model_data=container.get("ModelDataUrl", ""),
                   environment=dict(container.get("Environment") or {}), properties=properties,
                   statistics=statistics.get("S3Uri", ""), session=session)

    @property
    def name(self) -> str:
        """``<group>-v<version>``: the base name of what deploy and fetch_model make from it."""
        return f"{self.group}-v{self.version}"

    def row(self) -> dict[str, Any]:
        created = self.created.strftime("%Y-%m-%d %H:%M:%S") if isinstance(self.created, datetime) else ""
        return {"version": self.version, "status": self.status, "mAP50-95": self.metrics.get("mAP50-95"),
                "job": self.job_name, "created": created}

    def approve(self, note: str | None = None) -> RegisteredModel:
        """Set this version ``Approved`` (``note``: why, kept as its ApprovalDescription); the updated version."""
        return set_status(self, APPROVED, note, session=self.session)

    def reject(self, note: str) -> RegisteredModel:
        """Set this version ``Rejected``; ``note`` says why (required: whoever reads the registry next asks)."""
        return set_status(self, REJECTED, note, session=self.session)


class ModelList(list):
    """Versions of a group, newest first: ``text()`` for a shell, a table of its own in a notebook."""

    def rows(self) -> list[dict[str, Any]]:
        return [m.row() for m in self]

    def text(self) -> str:
        rows = [[("" if v is None else str(v)) for v in r.values()] for r in self.rows()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
        body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join([line, "-" * len(line), *body])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r.values())
                       + "</tr>" for r in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.text()


# -- reading --------------------------------------------------------------------------------------------------
def _client(session: Any) -> Any:
    from sdk._session import aws_session

    session = aws_session(session)
    with aws_errors("connecting to SageMaker"):
        return session, session.client("sagemaker")


def _missing(err: Exception) -> bool:
    """moto and SageMaker say "does not exist" / "not found" for a group or package as a ValidationException."""
    text = str(err)
    return isinstance(err, NotFoundError) or ("ValidationException" in text and re.search(
        r"does not exist|not found|Could not find", text, re.IGNORECASE) is not None)


def group_exists(sm: Any, group: str) -> bool:
    try:
        with aws_errors(f"reading model package group {group} (sagemaker:DescribeModelPackageGroup)"):
            sm.describe_model_package_group(ModelPackageGroupName=group)
    except (ConfigurationError, AWSError) as err:
        if _missing(err):
            return False
        raise
    return True


def require_group(sm: Any, group: str) -> None:
    """NotFoundError naming the groups there are (the nearest first) and how a group comes to be."""
    check_group_name(group)
    if group_exists(sm, group):
        return
    with aws_errors("listing model package groups (sagemaker:ListModelPackageGroups)"):
        names = [g["ModelPackageGroupName"] for page in sm.get_paginator("list_model_package_groups").paginate()
                 for g in page.get("ModelPackageGroupSummaryList", [])]
    near = difflib.get_close_matches(group, names, n=1, cutoff=0.6)
    there = (f"; did you mean {near[0]!r}?" if near else
             f"; the account has {', '.join(sorted(names)[:10])}" if names else "; the account has none in this region")
    raise NotFoundError(f"no model package group {group!r}{there} A group is made by the first registration: "
                        f"sdk.register(job, group={group!r}) or python -m sdk register JOB --group {group}",
                        code="ResourceNotFound", operation="DescribeModelPackageGroup")


def describe(sm: Any, arn: str, session: Any = None) -> RegisteredModel:
    try:
        with aws_errors(f"reading model package {arn} (sagemaker:DescribeModelPackage)"):
            info = sm.describe_model_package(ModelPackageName=arn)
    except (ConfigurationError, AWSError) as err:
        if _missing(err):
            raise NotFoundError(f"no model package {arn}: list a group's versions with sdk.registered_models(group) "
                                "or python -m sdk models GROUP", code="ResourceNotFound",
                                operation="DescribeModelPackage") from err
        raise
    return RegisteredModel.from_description(info, session)


def list_versions(sm: Any, group: str, *, status: str | None = None, session: Any = None,
                  limit: int | None = None) -> ModelList:
    """The group's versions, newest first (each described: the metrics live there, not in the summaries)."""
    require_group(sm, group)
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending"}
    if status:
        kwargs["ModelApprovalStatus"] = status
    summaries: list[dict[str, Any]] = []
    with aws_errors(f"listing the versions of {group} (sagemaker:ListModelPackages)"):
        for page in sm.get_paginator("list_model_packages").paginate(**kwargs):
            summaries += page.get("ModelPackageSummaryList", [])
    summaries.sort(key=lambda s: (s.get("ModelPackageVersion") or 0, s["CreationTime"]), reverse=True)
    if limit is not None:
        summaries = summaries[:limit]
    return ModelList(describe(sm, s["ModelPackageArn"], session) for s in summaries)


def latest_approved(sm: Any, group: str, session: Any = None) -> RegisteredModel:
    approved = list_versions(sm, group, status=APPROVED, session=session, limit=1)
    if approved:
        return approved[0]
    pending = list_versions(sm, group, status=PENDING, session=session)
    if pending:
        newest = pending[0]
        waiting = ", ".join(f"v{m.version} (" + ", ".join(filter(None, [
            f"mAP50-95 {m.metrics['mAP50-95']}" if "mAP50-95" in m.metrics else "no mAP50-95 recorded",
            f"job {m.job_name}" if m.job_name else ""])) + ")" for m in pending[:5])
        raise NoApprovedModelError(
            f"model package group {group} has no Approved version, so there is nothing to deploy; nothing was "
            f"created. Pending approval: {waiting}. Approve one: sdk.approve({newest.arn!r}) or "
            f"python -m sdk approve {newest.arn}", group=group, pending=[m.arn for m in pending])
    raise NoApprovedModelError(
        f"model package group {group} has no Approved and no pending version, so there is nothing to deploy; nothing "
        f"was created. Register one (sdk.register(job, group={group!r})) and approve it", group=group, pending=[])


def resolve(model: Any, session: Any = None) -> RegisteredModel:
    """A RegisteredModel (read again: its status may have changed), a model package ARN, or ``GROUP/VERSION``."""
    session, sm = _client(session if session is not None else getattr(model, "session", None))
    if isinstance(model, RegisteredModel):
        return describe(sm, model.arn, session)
    if not isinstance(model, str):
        raise ConfigurationError(f"expected a RegisteredModel, a model package ARN or GROUP/VERSION, not "
                                 f"{type(model).__name__}")
    if model.startswith("arn:"):
        if ":model-package/" not in model:
            raise ConfigurationError(f"{model} is not a model package ARN (arn:aws:sagemaker:...:model-package/...)")
        return describe(sm, model, session)
    group, sep, version = model.rpartition("/")
    if not sep or not version.isdigit():
        raise ConfigurationError(f"{model!r}: expected a model package ARN or GROUP/VERSION like pcb-detectors/3")
    for found in list_versions(sm, check_group_name(group), session=session):
        if found.version == int(version):
            return found
    raise NotFoundError(f"model package group {group} has no version {version}: python -m sdk models {group} lists "
                        "them", code="ResourceNotFound", operation="ListModelPackages")


def set_status(model: Any, status: str, note: str | None, session: Any = None) -> RegisteredModel:
    if status == REJECTED and not (note or "").strip():
        raise ConfigurationError("reject needs a note saying why (whoever reads the registry next will ask): "
                                 "reject(model, note='mAP50-95 below production on the night set')")
    if note is not None and len(note) > 1024:
        raise ConfigurationError(f"note is {len(note)} characters; SageMaker keeps at most 1024")
    current = resolve(model, session)
    session, sm = _client(current.session)
    request: dict[str, Any] = {"ModelPackageArn": current.arn, "ModelApprovalStatus": status}
    if note is not None:
        request["ApprovalDescription"] = note
    from sdk.jobs.api import check_request

    check_request("UpdateModelPackage", request)
    with aws_errors(f"setting {current.name} {status} (sagemaker:UpdateModelPackage)"):
        sm.update_model_package(**request)
    return describe(sm, current.arn, session)


# -- writing --------------------------------------------------------------------------------------------------
def package_request(*, group: str, image: str, model_data: Any, approval: str = PENDING,
                    description: str | None = None, weights: str | None = None,
                    properties: Mapping[str, Any] | None = None, statistics: str | None = None,
                    generated_by: Any = None, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``CreateModelPackage`` for the training image and its ``model.tar.gz`` (a URI, or a pipeline expression)."""
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_data}
    if weights:
        container["Environment"] = {WEIGHTS_ENV: weights}
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "InferenceSpecification": {"Containers": [container], "SupportedContentTypes": list(CONTENT_TYPES),
                                   "SupportedResponseMIMETypes": list(RESPONSE_TYPES),
                                   "SupportedRealtimeInferenceInstanceTypes": list(REALTIME_INSTANCE_TYPES),
                                   "SupportedTransformInstanceTypes": list(TRANSFORM_INSTANCE_TYPES)},
        "ModelApprovalStatus": approval,
    }
    if description:
        request["ModelPackageDescription"] = description
    if statistics:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": JSON, "S3Uri": statistics}}}
    if properties:
        request["CustomerMetadataProperties"] = dict(properties)
    if generated_by:
        request["MetadataProperties"] = {"GeneratedBy": generated_by}
    request["Tags"] = [CREATED_BY, *({"Key": k, "Value": v} for k, v in (tags or {}).items())]
    return request


def check_approval(approval: str) -> str:
    from sdk.jobs.api import enum_of

    allowed = enum_of("CreateModelPackage", "ModelApprovalStatus")
    if approval not in allowed:
        hint = difflib.get_close_matches(approval, allowed, n=1)
        raise ConfigurationError(f"approval {approval!r} is not one of {', '.join(allowed)}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return approval


# -- serving a version ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackageSource:
    """What ``deploy`` makes a Model of: the version, and the role SageMaker runs it with."""

    model: RegisteredModel
    role: str

    @property
    def name(self) -> str:
        return self.model.name

    def container(self, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``CreateModel``'s container: the package (SageMaker takes its image, model and environment), plus
        ``environment`` set on top."""
        container: dict[str, Any] = {"ModelPackageName": self.model.arn}
        if environment:
            container["Environment"] = {**self.model.environment, **environment}
        return container


def package_source(job_or_model: Any, *, group: str | None, role: str | None, session: Any) -> PackageSource | None:
    """For ``deploy``: the version to serve (``group``'s latest Approved, or a RegisteredModel), or None when
    ``job_or_model`` is something else (a job, a model.tar.gz). Refuses an unapproved version before anything is
    created."""
    if group is None and not isinstance(job_or_model, RegisteredModel):
        return None
    if group is not None and job_or_model not in (None, "latest"):
        raise ConfigurationError("give either a model (job, registered model, s3:// URI) or group=, not both")
    session, sm = _client(session)
    if group is not None:
        model = latest_approved(sm, check_group_name(group), session)
    else:
        model = describe(sm, job_or_model.arn, session)
        if model.status != APPROVED:
            raise NoApprovedModelError(
                f"{model.name} is {model.status}, not Approved: nothing was created. Approve it first: "
                f"sdk.approve({model.arn!r}) or python -m sdk approve {model.arn}", group=model.group,
                pending=[model.arn] if model.status == PENDING else [])
    return PackageSource(model, role or _role(sm, model))


def _role(sm: Any, model: RegisteredModel) -> str:
    """The role to run the Model with: $SM_DETECTORS_ROLE, else the training job's (as deploy(job) does)."""
    import os

    from sdk.jobs.plan import ROLE_ENV

    role = next((os.environ[k] for k in ROLE_ENV if os.environ.get(k)), None)
    if role:
        return role
    if model.job_name:
        try:
            with aws_errors(f"reading training job {model.job_name} for its role"):
                found = sm.describe_training_job(TrainingJobName=model.job_name).get("RoleArn")
            if found:
                return found
        except NotFoundError:
            pass
    raise ConfigurationError(f"no role for {model.name}: pass role='arn:aws:iam::<account>:role/<name>' (SageMaker "
                             f"pulls the image and the model with it) or set {ROLE_ENV[0]}")


def replace_model(sm: Any, session: Any, old_model: str, endpoint: str, *, model: Any, group: str | None,
                  tag: str) -> str:
    """For ``Endpoint.update(model=... | group=...)``: a new Model of that version (Approved, or refused before
    anything is created), run with the role of the Model it replaces and tagged for the endpoint. Its name."""
    if (model is None) == (group is None):
        raise ConfigurationError("update to a registered version: give model= (a RegisteredModel) or group=, "
                                 "not both")
    if model is not None and not isinstance(model, RegisteredModel):
        raise ConfigurationError(f"model= takes a RegisteredModel (sdk.registered_models(group)[0], ...), not "
                                 f"{type(model).__name__}")
    with aws_errors(f"describing model {old_model}"):
        old = sm.describe_model(ModelName=old_model)
    source = package_source(model if model is not None else "latest", group=group, role=old["ExecutionRoleArn"],
                            session=session)
    assert source is not None  # a RegisteredModel or a group was given
    if (old.get("PrimaryContainer") or {}).get("ModelPackageName") == source.model.arn:
        raise ConfigurationError(f"endpoint {endpoint} already serves {source.name}: nothing to update")
    from sdk.jobs.api import check_request
    from sdk.jobs.request import unique_job_name

    request: dict[str, Any] = {"ModelName": unique_job_name(source.name[:40]), "PrimaryContainer": source.container(),
               "ExecutionRoleArn": source.role, "Tags": [{"Key": tag, "Value": endpoint}]}
    check_request("CreateModel", request)
    with aws_errors(f"creating model {request['ModelName']} of {source.name} (sagemaker:CreateModel)"):
        sm.create_model(**request)
    return request["ModelName"]


# -- the retrain pipeline's register step ---------------------------------------------------------------------
def pipeline_steps(*, train: str, image: str, kind: str, group: str, min_map: float | None, approval: str,
                   parameters: Mapping[str, str], description: str) -> list[dict[str, Any]]:
    """Steps (pipeline definition schema 2020-12-01) after the training step ``train``: a register step
    (``CreateModelPackage`` with the model the step wrote, its scores as CustomerMetadataProperties), behind a
    condition (final mAP50-95 >= ``min_map``, else a Fail step saying so) when ``min_map`` is given.
    ``parameters``: CustomerMetadataProperties entries taken from pipeline parameters (``{"epochs": "hp_epochs"}``).

    No ModelMetrics here: the job's metrics.json is inside its model.tar.gz, and a pipeline step that copies it
    beside the model would be a processing job per execution; ``register`` (the SDK) adds it."""
    if min_map is not None and not (isinstance(min_map, (int, float)) and 0 <= min_map <= 1):
        raise ConfigurationError(f"min_map is a mAP50-95 between 0 and 1 (0.5 is 50%), got {min_map!r}")

    def final(score: str) -> dict[str, str]:
        return {"Get": f"Steps.{train}.FinalMetricDataList['{metric_name(kind, score)}'].Value"}

    properties: dict[str, Any] = {score: {"Std:Join": {"On": "", "Values": [final(score)]}} for score in SCORES[kind]}
    properties.update({key: {"Get": f"Parameters.{name}"} for key, name in parameters.items()})
    properties["image"] = image
    properties["training_job"] = {"Get": f"Steps.{train}.TrainingJobName"}
    request = package_request(group=check_group_name(group), image=image,
                              model_data={"Get": f"Steps.{train}.ModelArtifacts.S3ModelArtifacts"},
                              approval=check_approval(approval), description=description, properties=properties,
                              generated_by={"Get": f"Steps.{train}.TrainingJobArn"})
    request["SkipModelValidation"] = "None"
    register = {"Name": "Register", "Type": "RegisterModel", "Arguments": request, "Description": description}
    if min_map is None:
        return [register]
    score = final("mAP50-95")
    fail = {"Name": "BelowMinMap", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {"On": " ", "Values": [
        f"not registered: {metric_name(kind, 'mAP50-95')}", score, "is below min_map", min_map]}}}}
    return [{"Name": "CheckMinMap", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": score, "RightValue": min_map}],
        "IfSteps": [register], "ElseSteps": [fail]}}]


def ensure_group(sm: Any, group: str, description: str) -> bool:
    """Create ``group`` (tagged as this SDK's) unless it exists; True when it was created."""
    if group_exists(sm, check_group_name(group)):
        return False
    with aws_errors(f"creating model package group {group} (sagemaker:CreateModelPackageGroup)"):
        sm.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription=description,
                                      Tags=[CREATED_BY])
    return True
