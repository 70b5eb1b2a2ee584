"""``plan_job``: validate and plan a job, and the uploads it needs (``sdk.jobs.job.launch_job`` sends it).

Order matters: everything that can be checked without AWS is checked first (image, name,
hyperparameters against the image's schema, channel names and modes), so a typo costs nothing;
then local channels are hashed and uploaded; then the job is created.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk._errors import ConfigurationError, NotFoundError, aws_errors, user_errors
from sdk._session import aws_session, resolve_region
from sdk.jobs.request import (
    build_request,
    check_channels,
    check_job_name,
    encode_hyperparameters,
    is_s3,
    resolve_image,
    s3_join,
    split_s3,
    unique_job_name,
)
from sdk.jobs.spec import DEFAULT_INSTANCE_TYPE, JobSpec, takes

ROLE_ENV = ("SM_DETECTORS_ROLE", "SAGEMAKER_ROLE")
LOCAL = "local"


@dataclass(frozen=True)
class Plan:
    """A job ready to go: the request, and the local folders to upload first (``LocalSource``s by channel)."""

    request: dict[str, Any]
    kind: str
    image_uri: str | None
    uploads: dict[str, Any] = field(default_factory=dict)
    region: str = ""  # "region eu-west-1 (from AWS_REGION)": which region, and where it came from

    @property
    def local(self) -> bool:
        return self.request["ResourceConfig"]["InstanceType"] == LOCAL


def session_with_region(session: Any) -> tuple[Any, str]:
    """A boto3 session with its region resolved (and said where it came from), before anything is uploaded."""
    region, source = resolve_region(session)
    return aws_session(session), f"region {region} (from {source})"


def _default_output_path(session: Any) -> str:
    with aws_errors("finding your AWS account (for the default bucket)"):
        account = session.client("sts").get_caller_identity()["Account"]
    return f"s3://sagemaker-{session.region_name}-{account}/sm-detectors"


def _ensure_bucket(s3: Any, bucket: str, *, create: bool, region: str) -> None:
    try:
        with aws_errors(f"checking bucket {bucket}"):
            s3.head_bucket(Bucket=bucket)
        return
    except NotFoundError:
        if not create:
            raise NotFoundError(f"no such bucket {bucket!r} (from output_path); create it or pass another output_path",
                                code="NoSuchBucket", operation="HeadBucket") from None
    with aws_errors(f"creating the default bucket {bucket}"):
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    print(f"created bucket s3://{bucket}", file=sys.stderr)


@takes(JobSpec)
def plan_job(**kwargs: Any) -> Plan:
    """Everything ``launch_job`` sends, validated, without creating or uploading anything.

    The verdict is the launch's: the image's schema (types, choices, ranges), its limits (instances,
    a ``.pt`` model needs ``weights``), the whole ``CreateTrainingJob`` request against botocore's
    service model, the region. Local channels are hashed (to name their S3 prefix). AWS is asked
    only for what the arguments leave open: the account, for the default bucket, when ``output_path``
    is not given (and, with ``resume``, the stopped job's description). Arguments: :class:`sdk.jobs.spec.JobSpec`.
    """
    spec = JobSpec.of(kwargs, what="plan_job")
    if spec.resume is not None:
        return _plan_resumed(spec)
    local = spec.instance_type == LOCAL
    if not local:
        _check_instance_type(spec.instance_type)
    img = resolve_image(spec.image, spec.kind)
    if img.uri is None and not local:
        raise ConfigurationError(f"image={img.kind!r} runs only in local mode; a SageMaker job needs the image URI "
                                 "from build-and-push.sh (or its ecr_image_fullname.txt)")
    schema = img.schema
    sources = _channel_sources(spec)
    check_channels(schema, sources, spec.input_modes or {})
    encoded = _checked_hyperparameters(schema, spec, sources)
    name = check_job_name(spec.job_name) if spec.job_name else unique_job_name(spec.base_job_name or img.kind)
    role = spec.role if local else _role(spec.role)
    class_names = spec.class_names
    if class_names is None:
        with user_errors():
            class_names = dataset_class_names(schema, encoded, sources)
    environment = _tracking_environment(spec, img.uri, local)
    common: dict[str, Any] = {
        "job_name": name, "image_uri": img.uri or f"local/{img.kind}", "schema": schema, "role": role,
        "hyperparameters": encoded, "instance_type": spec.instance_type, "instance_count": spec.instance_count,
        "volume_size_gb": spec.volume_size_gb, "max_run": spec.max_run, "spot": spec.spot, "max_wait": spec.max_wait,
        "input_modes": spec.input_modes, "environment": environment, "tags": spec.tags, "class_names": class_names,
        "local": local}
    uploads: dict[str, Any] = {}
    region_note = ""
    if local:
        output, uris = _local_channels(name, sources)
    else:
        region, source = resolve_region(spec.session)
        region_note = f"region {region} (from {source})"
        _check_with_stand_in_bucket(spec, region, sources, common)
        output = _output_path(spec)
        uris, uploads = _upload_channels(sources, output)
    request = _request(spec, common, uris, output)
    return Plan(request=request, kind=img.kind, image_uri=img.uri, uploads=uploads, region=region_note)


def _plan_resumed(spec: JobSpec) -> Plan:
    """The plan that resumes the stopped job ``spec.resume``: its arguments, with those given here overriding."""
    from sdk.jobs.resume import resumed_arguments

    given = spec.job_arguments(omit=("resume", "session"))
    return plan_job(**resumed_arguments(spec.resume, given, session=spec.session), session=spec.session)


def _check_instance_type(instance_type: Any) -> None:
    """A SageMaker instance type, or a ConfigurationError with the one meant ("g5.xlarge": "ml.g5.xlarge")."""
    from sdk.jobs.api import suggest_instance_type

    hint = suggest_instance_type(instance_type) if isinstance(instance_type, str) else None
    if hint:
        raise ConfigurationError(f"instance_type {instance_type!r} is not an instance type; did you mean {hint!r}?")


def _channel_sources(spec: JobSpec) -> dict[str, str | Path]:
    """Each channel's source: ``train``, ``val``, then ``channels`` (a name given twice is an error)."""
    sources: dict[str, str | Path] = {}
    for name, value in (("train", spec.train), ("val", spec.val)):
        if value is not None:
            sources[name] = value
    for name, value in (spec.channels or {}).items():
        if name in sources:
            raise ConfigurationError(f"channel {name!r} given twice")
        sources[name] = value
    return sources


def _checked_hyperparameters(schema: Any, spec: JobSpec, sources: Mapping[str, Any]) -> dict[str, str]:
    """The hyperparameters encoded for the request, checked against the image's schema and its limits."""
    encoded = encode_hyperparameters(schema, spec.hyperparameters)
    with user_errors():
        problems = schema.check_job(schema.parse(encoded), sources, instance_count=spec.instance_count)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return encoded


def _role(role: str | None) -> str:
    """The execution role: ``role``, else the first of :data:`ROLE_ENV` set."""
    if role is None:
        role = next((os.environ[v] for v in ROLE_ENV if os.environ.get(v)), None)
        if role is None:
            raise ConfigurationError(f"no role: pass role='arn:aws:iam::<account>:role/<SageMaker execution role>' "
                                     f"or set {ROLE_ENV[0]}")
    return role


def _tracking_environment(spec: JobSpec, image_uri: str | None, local: bool) -> Mapping[str, str] | None:
    """The job's environment, with MLflow's variables when ``mlflow`` or ``experiment`` is given (docs/mlflow.md):
    checked, and the IAM it needs said, before paying."""
    environment = spec.environment
    if spec.mlflow is None and spec.experiment is None:
        return environment
    from sdk.jobs.mlflow import say_iam, tracking_environment

    environment = {**(environment or {}), **tracking_environment(
        spec.mlflow, spec.experiment, region=None if local else resolve_region(spec.session)[0], image_uri=image_uri,
        environment=environment)}
    say_iam(environment)
    return environment


def _local_channels(name: str, sources: Mapping[str, str | Path]) -> tuple[str, dict[str, str]]:
    """A local job's output folder's URI, and its channels' URIs (a local folder must exist)."""
    from sdk.jobs.local import jobs_home

    output = (jobs_home() / name).resolve().as_uri()
    uris: dict[str, str] = {}
    for ch, value in sources.items():
        if is_s3(value):
            uris[ch] = str(value)
        else:
            path = Path(value).expanduser().resolve()
            if not path.exists():
                raise ConfigurationError(f"channel {ch!r}: {path} does not exist")
            uris[ch] = path.as_uri()
    return output, uris


def _check_with_stand_in_bucket(spec: JobSpec, region: str, sources: Mapping[str, str | Path],
                                common: Mapping[str, Any]) -> None:
    """The API's verdict first, with a stand-in bucket when the account is not known yet: a mistake is
    reported without credentials, before the STS call and before a byte is hashed or uploaded."""
    if spec.output_path is not None:
        split_s3(spec.output_path)
    stand_in = spec.output_path or f"s3://sagemaker-{region}-000000000000/sm-detectors"
    _api_check(build_request(channels={ch: str(v) if is_s3(v) else s3_join(stand_in, "datasets", ch) + "/"
                                       for ch, v in sources.items()},
                             output_path=stand_in.rstrip("/"), **common,
                             **_checkpoint_args(spec, stand_in, common["job_name"])))


def _output_path(spec: JobSpec) -> str:
    """Where the job's output goes: ``output_path``, else the default bucket (the account is asked for)."""
    output_path = spec.output_path
    if output_path is None:
        output_path = _default_output_path(session_with_region(spec.session)[0])
    return output_path.rstrip("/")


def _upload_channels(sources: Mapping[str, str | Path], output: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Each channel's S3 URI, and the uploads of the local ones (hashed, to name their S3 prefix)."""
    from sdk.jobs.s3 import plan_upload

    uris: dict[str, str] = {}
    uploads: dict[str, Any] = {}
    for ch, value in sources.items():
        if is_s3(value):
            uris[ch] = str(value)
        else:
            uploads[ch] = plan_upload(value, output, channel=ch)
            uris[ch] = uploads[ch].uri
    return uris, uploads


def _request(spec: JobSpec, common: dict[str, Any], uris: dict[str, str], output: str) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request (a SageMaker one with its checkpoint and TensorBoard URIs, checked against
    botocore's model). With MLflow, the run's tags name each channel's source: a job's own files do not say it."""
    if spec.mlflow is not None:
        from sdk.jobs.mlflow import channel_sources

        common["environment"] = {**common["environment"], **channel_sources(uris)}
    local = common["local"]
    request = build_request(channels=uris, output_path=output, **common,
                            **({} if local else _checkpoint_args(spec, output, common["job_name"])))
    if not local:
        _api_check(request)
    return request


def _checkpoint_args(spec: JobSpec, output: str, name: str) -> dict[str, Any]:
    checkpoint_s3_uri = spec.checkpoint_s3_uri
    if checkpoint_s3_uri is None and spec.checkpoints:
        checkpoint_s3_uri = s3_join(output, name, "checkpoints") + "/"
    tb_uri = None
    if spec.tensorboard:
        tb_uri = spec.tensorboard if isinstance(spec.tensorboard, str) else s3_join(output, name, "tensorboard")
    return {"checkpoint_s3_uri": checkpoint_s3_uri, "tensorboard_s3_uri": tb_uri}


def _api_check(request: dict[str, Any]) -> None:
    from sdk.jobs.api import check_request

    check_request("CreateTrainingJob", request)


def dataset_class_names(schema: Any, encoded: Mapping[str, str], sources: Mapping[str, Any]) -> tuple[str, ...]:
    """Class names for per-class metric definitions, when the job prints per-class lines.

    The image names classes from the ``names`` hyperparameter, else from the data (data.yaml,
    classes.txt, or the annotation format's own names); so does this, reading the local train
    folder it is about to upload. An S3 train channel is not read (pass ``class_names=``).
    """
    if not schema.per_class_metrics:
        return ()
    typed = schema.parse(encoded)
    if not typed.get("per_class_metrics"):
        return ()
    names = typed.get("names")
    if names:
        return tuple(n.strip() for n in (names.split(",") if isinstance(names, str) else names) if str(n).strip())
    train = sources.get("train") or sources.get("labels")
    if train is None or is_s3(train):
        print("per_class_metrics: the train channel is on S3, so its class names are not read here; pass "
              "class_names=[...] for per-class metric definitions", file=sys.stderr)
        return ()
    from sdk.jobs.classes import class_names_of

    return tuple(class_names_of(Path(train), data_format=str(typed.get("data_format") or "auto")))


STAND_IN_ACCOUNT = "000000000000"


def plan_with_gaps(planner: Any = None, **kwargs: Any) -> tuple[Any, dict[str, str]]:
    """For ``--dry-run``: the plan even without the image file, a role, a region, credentials or an output path.

    Each missing piece gets a stand-in in the request and is named, with its fix, in the second value, all
    at once (a newcomer should not find them one run at a time). Nothing is sent to AWS for them; with
    credentials and no output path the default bucket's account is asked, as ``plan_job`` does. ``planner``:
    ``plan_job`` (default) or another that takes its arguments (``plan_tuning``).
    """
    planner = planner or plan_job
    missing: dict[str, str] = {}
    if kwargs.get("instance_type", DEFAULT_INSTANCE_TYPE) == LOCAL or kwargs.get("resume") is not None:
        return planner(**kwargs), missing
    from sdk.jobs.request import IMAGE_FILE

    image = kwargs.get("image")
    if (Path(str(image or IMAGE_FILE)).name == IMAGE_FILE) and not Path(str(image or IMAGE_FILE)).is_file():
        kind = kwargs.get("kind") or "yolo"
        missing["image"] = (f"no {image or IMAGE_FILE} here (build-and-push.sh writes it): pass --image "
                            "<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> or the path of that file")
        kwargs.update(image=f"{STAND_IN_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/sm-{kind}:missing", kind=kind)
    if kwargs.get("role") is None and not any(os.environ.get(v) for v in ROLE_ENV):
        missing["role"] = (f"no execution role: pass --role arn:aws:iam::<account>:role/<SageMaker execution role> "
                           f"or set {ROLE_ENV[0]}")
        kwargs["role"] = f"arn:aws:iam::{STAND_IN_ACCOUNT}:role/missing-execution-role"
    region_note = ""
    try:
        region, _ = resolve_region(kwargs.get("session"))
    except ConfigurationError as err:
        missing["region"] = str(err)
        region = "us-east-1"
        region_note = f"region {region} (a stand-in: no region is set)"
        from types import SimpleNamespace

        kwargs["session"] = SimpleNamespace(region_name=region, profile_name=None)  # read for its region only
    from sdk._errors import CREDENTIALS_HINT
    from sdk._session import has_credentials

    if not has_credentials(None if region_note else kwargs.get("session")):
        missing["credentials"] = f"no AWS credentials found; {CREDENTIALS_HINT}"
        if kwargs.get("output_path") is None:
            missing["output_path"] = ("the default bucket is named after your AWS account, which only credentials "
                                      "tell: pass --output-path s3://<bucket>/<prefix> (or give credentials)")
            kwargs["output_path"] = f"s3://sagemaker-{region}-{STAND_IN_ACCOUNT}/sm-detectors"
    try:
        plan = planner(**kwargs)
    except ConfigurationError as err:
        if not missing:
            raise
        raise ConfigurationError(f"{err}\nmissing as well: " + "; ".join(missing.values())) from None
    if region_note and isinstance(plan, Plan):
        from dataclasses import replace

        plan = replace(plan, region=region_note)
    return plan, missing


def prepare_inputs(plan: Plan, *, session: Any, create_bucket: bool) -> dict[str, Any]:
    """What must exist before ``CreateTrainingJob``: the output bucket, the uploaded channels, S3 channels that
    hold something (their URIs fixed with a trailing ``/`` where they name a folder). Returns the request."""
    request = plan.request
    with aws_errors("connecting to S3"):
        s3 = session.client("s3")
    bucket, _ = split_s3(request["OutputDataConfig"]["S3OutputPath"])
    _ensure_bucket(s3, bucket, create=create_bucket, region=session.region_name or "us-east-1")
    from sdk.jobs.s3 import check_s3_channel, upload

    for channel in request["InputDataConfig"]:
        ch = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        if ch in plan.uploads:
            sent, skipped = upload(s3, plan.uploads[ch], channel=ch)
            print(f"channel {ch}: {source['S3Uri']} ({sent} uploaded, {skipped} already there)", file=sys.stderr)
        else:
            source["S3Uri"] = check_s3_channel(s3, source["S3Uri"], channel=ch)
    return request
