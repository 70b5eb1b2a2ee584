"""Which model is in production, and why: the SageMaker Model Registry for this project's jobs.

    from sdk import register, approve, reject, registered_models, deploy

    model = register(job, group="pcb-detectors")             # a Job, a job name or "latest"; PendingManualApproval
    registered_models("pcb-detectors")                       # newest first; a table in a notebook
    approve(model, note="beats v3 on the night set")         # or reject(model, note="...")
    endpoint = deploy(group="pcb-detectors")                 # the latest Approved version
    endpoint.update(group="pcb-detectors")                   # later: the newer Approved version, same endpoint
    served_version(endpoint.name)                            # which version it serves (a RegisteredModel)

A registered version is a SageMaker model package: the job's training image and ``model.tar.gz`` (the images
serve what they train), the serving contract's content types, the job's scores and provenance as
``CustomerMetadataProperties`` (the console's registry page shows them), the job's ``metrics.json`` stored
beside the model as the model-quality statistics, and the job's ARN as ``MetadataProperties.GeneratedBy``.
See docs/registry.md (the flow, the CLI, the console, the IAM actions).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Mapping
from typing import Any

from container.serving.variant import serves_onnx
from sdk._errors import AWSError, ConfigurationError, JobFailedError, NotFoundError, SDKError, aws_errors
from sdk.jobs.model_registry import (
    APPROVED,
    CREATED_BY,
    PENDING,
    REJECTED,
    SCORES,
    ModelList,
    RegisteredModel,
    _client,
    check_approval,
    check_group_name,
    describe,
    group_exists,
    list_versions,
    meta_problem,
    metric_name,
    package_request,
    set_status,
)

__all__ = ["ModelList", "RegisteredModel", "approve", "register", "registered_models", "reject", "served_version"]

METRICS_CAP = 16 * 2**20  # a metrics.json bigger than this is not one the images wrote


def registered_models(group: str, *, status: str | None = None, session: Any = None) -> ModelList:
    """The versions of ``group``, newest first (``status``: only Approved, Rejected or PendingManualApproval).
    A notebook shows the list as a table (version, status, mAP50-95, job, created); ``.text()`` for a shell."""
    if status is not None:
        check_approval(status)
    session, sm = _client(session)
    return list_versions(sm, check_group_name(group), status=status, session=session)


def approve(model: Any, note: str | None = None, *, session: Any = None) -> RegisteredModel:
    """Set a version Approved: ``model`` is a RegisteredModel, a model package ARN or ``"GROUP/VERSION"``."""
    return set_status(model, APPROVED, note, session=session)


def reject(model: Any, note: str, *, session: Any = None) -> RegisteredModel:
    """Set a version Rejected; ``note`` says why (kept as the version's ApprovalDescription)."""
    return set_status(model, REJECTED, note, session=session)


def served_version(endpoint: str, *, session: Any = None) -> RegisteredModel | None:
    """The registered version an endpoint serves (its first variant's Model made from a model package), or None
    when it serves something else (a job's model.tar.gz, a hand-made Model)."""
    session, sm = _client(session)
    with aws_errors(f"reading endpoint {endpoint} (sagemaker:DescribeEndpoint, DescribeEndpointConfig, "
                    "DescribeModel)"):
        config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        variant = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
        model = sm.describe_model(ModelName=variant["ModelName"])
    package = (model.get("PrimaryContainer") or {}).get("ModelPackageName")
    return describe(sm, package, session) if package else None


# -- register -------------------------------------------------------------------------------------------------
def _job_info(job: Any, session: Any, sm: Any) -> dict[str, Any]:
    from sdk.jobs.job import Job, LocalJob

    if isinstance(job, LocalJob):
        raise ConfigurationError(f"local job {job.name} has its model on this machine, not in S3: the registry "
                                 "holds models SageMaker can serve. Train on SageMaker (launch_job without "
                                 "instance_type='local'), then register that job")
    if isinstance(job, str):
        if job == "latest":
            from sdk.jobs.fetch import latest_job

            job = latest_job(sm)
        job = Job(job, session=session)
    if not isinstance(job, Job):
        raise ConfigurationError(f"register takes a training job (a Job, a job name or 'latest'), not "
                                 f"{type(job).__name__}")
    info = job.describe()
    status = info["TrainingJobStatus"]
    if status in ("Failed", "Stopped"):
        raise JobFailedError(job.name, status, info.get("FailureReason", "") or "it has no model to register")
    if status != "Completed":
        raise ConfigurationError(f"training job {job.name} is {status}: only a Completed job has a model to "
                                 f"register. Wait for it (job.wait() or python -m sdk logs {job.name} --follow), "
                                 "then register it")
    return info


def read_metrics_json(s3: Any, uri: str) -> bytes | None:
    """``metrics.json`` from a ``model.tar.gz`` in S3, read as a stream (nothing written to disk); None if the
    archive has none. The images write it at the archive's root."""
    from sdk.jobs.request import split_s3

    bucket, key = split_s3(uri)
    with aws_errors(f"reading {uri} (s3:GetObject)"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with tarfile.open(fileobj=body, mode="r|gz") as tar:
                for member in tar:
                    if member.isfile() and member.name.lstrip("./") == "metrics.json":
                        if member.size > METRICS_CAP:
                            raise ConfigurationError(f"{uri}: metrics.json is {member.size} bytes, not one the "
                                                     "images write")
                        handle = tar.extractfile(member)
                        return handle.read() if handle else None
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ConfigurationError(f"{uri} is not a readable model.tar.gz ({err}): register a job whose model "
                                     "SageMaker wrote") from err
        finally:
            body.close()
    return None


def _scores(kind: str | None, metrics: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, float]:
    """The scores from metrics.json's ``final`` (the job's own evaluation of its best weights), else from the
    job's ``FinalMetricDataList`` (SageMaker's reading of its log)."""
    if kind not in SCORES:
        return {}
    final = metrics.get("final") or {}
    listed = {m["MetricName"]: m["Value"] for m in info.get("FinalMetricDataList", [])}
    scores: dict[str, float] = {}
    for score, (_, key) in SCORES[kind].items():
        value = final.get(key, listed.get(metric_name(kind, score)))
        try:
            scores[score] = round(float(value), 4)  # type: ignore[arg-type]  # None: TypeError, skipped
        except (TypeError, ValueError):
            continue
    return scores


def _kind(info: Mapping[str, Any]) -> str | None:
    """Which image trained the job: from its URI's repository name, else from its metric definitions (a
    repository named otherwise, launched with kind=)."""
    from sdk.jobs.progress import kind_of

    kind = kind_of(dict(info))
    if kind:
        return kind
    names = {d.get("Name") for d in info.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])}
    found = [k for k in SCORES if metric_name(k, "mAP50-95") in names]
    return found[0] if len(found) == 1 else None


def image_digest(session: Any, image: str) -> str | None:
    """The image's ``sha256:`` digest: from the URI when pinned, else ECR's for the tag now (ecr:DescribeImages).
    None, with a line on stderr, when ECR does not say (another registry, no permission)."""
    from sdk.jobs.request import EcrImage

    ecr = EcrImage.parse(image)
    if "@sha256:" in image:
        return image.rsplit("@", 1)[1]
    if ecr is None:
        return None
    try:
        with aws_errors(f"reading the digest of {image} (ecr:DescribeImages)"):
            found = session.client("ecr", region_name=ecr.region).describe_images(
                registryId=ecr.account, repositoryName=ecr.repository,
                imageIds=[{"imageTag": ecr.tag or "latest"}])["imageDetails"]
    except SDKError as err:
        print(f"note: the version records no image digest: {err}", file=sys.stderr)
        return None
    return found[0].get("imageDigest") if found else None


def _properties(info: Mapping[str, Any], kind: str | None, metrics: Mapping[str, Any], scores: Mapping[str, float],
                digest: str | None) -> dict[str, str]:
    """What the console's registry page shows without opening anything; entries SageMaker would refuse are
    left out with a note on stderr (an S3 URI over 256 characters, a character outside its set)."""
    hps = info.get("HyperParameters") or {}
    wanted: dict[str, Any] = {k: v for k, v in scores.items()}
    if kind == "tfod":
        wanted["steps"] = hps.get("num_steps")
    else:
        wanted["epochs"] = metrics.get("epochs_completed") or hps.get("epochs")
    wanted["image"] = info["AlgorithmSpecification"].get("TrainingImage")
    wanted["image_digest"] = digest
    for key, value in sorted(metrics.items()):
        if key.endswith("_version"):  # the frameworks the image trained with (ultralytics_version, ...)
            wanted[key] = value
    for channel in info.get("InputDataConfig", []):
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        wanted[f"channel:{channel['ChannelName']}"] = source.get("S3Uri")
    wanted["training_job"] = info["TrainingJobName"]
    properties: dict[str, str] = {}
    for key, value in wanted.items():
        if value is None or value == "":
            continue
        text = str(value).strip('"')
        problem = meta_problem(key, text)
        if problem:
            print(f"note: CustomerMetadataProperties leaves out {key}: {problem}", file=sys.stderr)
            continue
        properties[key] = text
    return dict(list(properties.items())[:50])


def _statistics_key(model_key: str) -> str:
    """``metrics.json`` beside ``model.tar.gz`` (``<job>/output/metrics.json``)."""
    folder = model_key.rsplit("/", 1)[0] + "/" if "/" in model_key else ""
    return f"{folder}metrics.json"


def register(job: Any = "latest", *, group: str, approval: str = PENDING, description: str | None = None,
             weights: str | None = None, tags: Mapping[str, str] | None = None, session: Any = None) -> RegisteredModel:
    """Register a Completed job's model as a new version of ``group`` (created, tagged, if it does not exist).

    ``job``: a :class:`Job`, a job name, or ``"latest"`` (the newest Completed job). ``approval``:
    ``PendingManualApproval`` (default: deploy(group=...) will not serve it until approved), ``Approved`` or
    ``Rejected``. ``weights="onnx"``: the version serves the ONNX export (``SERVING_WEIGHTS``).

    Everything that can be checked is checked before anything is created: the job (Completed, its model in S3),
    its ``metrics.json``, the request against the API's model. If SageMaker then refuses the version, what this
    call created (the group, the metrics file) is removed again.
    """
    _check_arguments(group=group, approval=approval, weights=weights, description=description)
    session = session if session is not None else getattr(job, "session", None)
    session, sm = _client(session)
    info = _job_info(job, session, sm)
    job_name = info["TrainingJobName"]
    model_data = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    from sdk.jobs.api import check_request

    s3 = _s3_holding_model(session, job_name, model_data)
    raw = read_metrics_json(s3, model_data)
    metrics = _metrics_of(raw, model_data)
    kind = _kind(info)
    request, statistics = _version_request(session, info, kind, metrics, raw, model_data=model_data, group=group,
                                           approval=approval, description=description, weights=weights, tags=tags)
    group_request = {"ModelPackageGroupName": group, "ModelPackageGroupDescription":
                     f"{kind or 'detector'} models registered by sm-detectors (sdk.register)", "Tags": [CREATED_BY]}
    check_request("CreateModelPackage", request)
    check_request("CreateModelPackageGroup", group_request)
    arn = _create_version(sm, s3, request, group_request, raw=raw, statistics=statistics, job_name=job_name)
    model = describe(sm, arn, session)
    print(f"registered {job_name} as {model.name} ({model.status})", file=sys.stderr)
    return model


def _check_arguments(*, group: str, approval: str, weights: str | None, description: str | None) -> None:
    """``register``'s own arguments, before AWS is asked anything."""
    check_group_name(group)
    check_approval(approval)
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise ConfigurationError(f"weights must be 'best.pt', 'onnx' or a path inside the model, got {weights!r}")
    if description is not None and len(description) > 1024:
        raise ConfigurationError(f"description is {len(description)} characters; SageMaker keeps at most 1024")


def _s3_holding_model(session: Any, job_name: str, model_data: str) -> Any:
    """An S3 client, once the job's ``model.tar.gz`` is found in S3 (a job with none, or a deleted one, is an
    error naming it)."""
    from sdk.jobs.request import split_s3

    if not model_data.startswith("s3://"):
        raise ConfigurationError(f"training job {job_name} has no model in S3 ({model_data or 'none'})")
    bucket, key = split_s3(model_data)
    with aws_errors("connecting to S3"):
        s3 = session.client("s3")
    try:
        with aws_errors(f"finding the model of {job_name} at {model_data} (s3:GetObject)"):
            s3.head_object(Bucket=bucket, Key=key)
    except NotFoundError as err:
        raise NotFoundError(f"the model of training job {job_name} is missing: nothing at {model_data} (deleted "
                            "since?). Register a job whose model.tar.gz is still there", code=err.code,
                            operation=err.operation) from err
    return s3


def _metrics_of(raw: bytes | None, model_data: str) -> dict[str, Any]:
    """The job's ``metrics.json`` (``{}`` when it has none); one that is not a JSON object is an error."""
    try:
        metrics = json.loads(raw) if raw else {}
    except ValueError as err:
        raise ConfigurationError(f"{model_data}: its metrics.json is not JSON ({err})") from err
    if not isinstance(metrics, dict):
        raise ConfigurationError(f"{model_data}: its metrics.json is not a JSON object")
    return metrics


def _version_request(session: Any, info: Mapping[str, Any], kind: str | None, metrics: Mapping[str, Any],
                     raw: bytes | None, *, model_data: str, group: str, approval: str, description: str | None,
                     weights: str | None, tags: Mapping[str, str] | None) -> tuple[dict[str, Any], str | None]:
    """The ``CreateModelPackage`` request, and where the job's metrics.json is to be stored beside the model
    (None without one): the scores and provenance as properties, the container that serves ``weights``."""
    from sdk.jobs.request import split_s3

    bucket, key = split_s3(model_data)
    image = info["AlgorithmSpecification"]["TrainingImage"]
    properties = _properties(info, kind, metrics, _scores(kind, metrics, info), image_digest(session, image))
    statistics = None
    if raw:
        statistics = f"s3://{bucket}/{_statistics_key(key)}"
    served = image  # what the version's container runs: the torch-free serving variant for ONNX, when pushed
    if serves_onnx(weights):
        from sdk.serving import serving_variant

        served = serving_variant(image, session)
    request = package_request(group=group, image=served, model_data=model_data, approval=approval,
                              description=description, weights=weights, properties=properties,
                              statistics=statistics, generated_by=info["TrainingJobArn"], tags=tags)
    if raw:
        request["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"] = \
            "sha256:" + hashlib.sha256(raw).hexdigest()
    return request, statistics


def _create_version(sm: Any, s3: Any, request: dict[str, Any], group_request: Mapping[str, Any], *,
                    raw: bytes | None, statistics: str | None, job_name: str) -> str:
    """Create the group when new, store metrics.json, create the version: its ARN. When a step fails, what the
    steps before it created is removed again (:func:`_rolled_back`)."""
    group = group_request["ModelPackageGroupName"]
    undo: list[tuple[str, Any]] = []
    try:
        if not group_exists(sm, group):
            with aws_errors(f"creating model package group {group} (sagemaker:CreateModelPackageGroup)"):
                sm.create_model_package_group(**group_request)
            undo.append((f"model package group {group}", lambda: sm.delete_model_package_group(
                ModelPackageGroupName=group)))
            print(f"model package group {group} created", file=sys.stderr)
        if raw and statistics:
            _store_statistics(s3, request, raw, statistics, undo)
        with aws_errors(f"registering {job_name} in {group} (sagemaker:CreateModelPackage)"):
            arn: str = sm.create_model_package(**request)["ModelPackageArn"]
    except SDKError as err:
        raise _rolled_back(err, undo) from err
    return arn


def _store_statistics(s3: Any, request: dict[str, Any], raw: bytes, statistics: str,
                      undo: list[tuple[str, Any]]) -> None:
    """The job's metrics.json at ``statistics``, beside the model, unless the same file is there already; someone
    else's file there is never replaced: ours goes beside it, and the request names that one."""
    from sdk.jobs.request import split_s3

    bucket, stats_key = split_s3(statistics)
    there = _existing(s3, bucket, stats_key)
    if there != raw:
        if there is not None:  # someone's file: never replaced; ours goes beside it
            stats_key = stats_key.replace("metrics.json", f"metrics-{hashlib.sha256(raw).hexdigest()[:12]}.json")
            request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] = f"s3://{bucket}/{stats_key}"
        with aws_errors(f"storing metrics.json beside the model (s3:PutObject on s3://{bucket}/{stats_key})"):
            s3.put_object(Bucket=bucket, Key=stats_key, Body=raw, ContentType="application/json")
        undo.append((f"s3://{bucket}/{stats_key}", lambda k=stats_key: s3.delete_object(Bucket=bucket, Key=k)))


def _existing(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        with aws_errors(f"reading s3://{bucket}/{key}"):
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except NotFoundError:
        return None


def _undo(steps: list[tuple[str, Any]]) -> list[str]:
    """Run the undo steps, newest first; the names of those that failed."""
    left = []
    for what, step in reversed(steps):
        try:
            with aws_errors(f"removing {what}"):
                step()
        except SDKError:
            left.append(what)
    return left


def _rolled_back(err: SDKError, undo: list[tuple[str, Any]]) -> SDKError:
    """The error, saying what was removed again (or could not be): nothing half-created goes unsaid."""
    left = _undo(undo)
    removed = [what for what, _ in undo if what not in left]
    message = str(err)
    if removed:
        message += f". Not registered; removed again what this call had created: {', '.join(removed)}"
    if left:
        message += f". Could not remove {', '.join(left)}: delete by hand"
    if isinstance(err, AWSError):
        return type(err)(message, code=err.code, operation=err.operation)
    if isinstance(err, ConfigurationError):
        return ConfigurationError(message)
    return SDKError(message)
