"""``launch_job``: validate, upload local channels, create the job (or run it here), follow it.

Order matters: everything that can be checked without AWS is checked first (image, name,
hyperparameters against the image's schema, channel names and modes), so a typo costs nothing;
then local channels are hashed and uploaded; then the job is created.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk._errors import ConfigurationError, NotFoundError, aws_errors
from sdk._request import (
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

ROLE_ENV = ("SM_DETECTORS_ROLE", "SAGEMAKER_ROLE")
LOCAL = "local"


@dataclass(frozen=True)
class Plan:
    """A job ready to go: the request, and the local folders to upload first (``LocalSource``s by channel)."""

    request: dict[str, Any]
    kind: str
    image_uri: str | None
    uploads: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.request["ResourceConfig"]["InstanceType"] == LOCAL


def _default_output_path(session: Any) -> str:
    if not session.region_name:
        raise ConfigurationError("no AWS region set: set AWS_REGION (or a profile's region), pass "
                                 "session=boto3.Session(region_name=...), or pass output_path")
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


def plan_job(
    *,
    image: str | Path | None = None,
    kind: str | None = None,
    train: str | Path | None = None,
    val: str | Path | None = None,
    channels: Mapping[str, str | Path] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    role: str | None = None,
    instance_type: str = "ml.g5.xlarge",
    instance_count: int = 1,
    volume_size_gb: int = 50,
    spot: bool = False,
    max_run: int = 24 * 3600,
    max_wait: int | None = None,
    output_path: str | None = None,
    checkpoint_s3_uri: str | None = None,
    checkpoints: bool = True,
    tensorboard: bool | str = False,
    input_modes: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    job_name: str | None = None,
    base_job_name: str | None = None,
    class_names: Iterable[str] = (),
    session: Any = None,
) -> Plan:
    """Everything ``launch_job`` sends, validated, without creating or uploading anything.

    Local channels are hashed (to name their S3 prefix). AWS is asked only for what the
    arguments leave open: the account, for the default bucket, when ``output_path`` is not given.
    """
    local = instance_type == LOCAL
    img = resolve_image(image, kind)
    if img.uri is None and not local:
        raise ConfigurationError(f"image={img.kind!r} runs only in local mode; a SageMaker job needs the image URI "
                                 "from build-and-push.sh (or its ecr_image_fullname.txt)")
    schema = img.schema
    sources: dict[str, str | Path] = {}
    for name, value in (("train", train), ("val", val)):
        if value is not None:
            sources[name] = value
    for name, value in (channels or {}).items():
        if name in sources:
            raise ConfigurationError(f"channel {name!r} given twice")
        sources[name] = value
    check_channels(schema, sources, input_modes or {})
    encoded = encode_hyperparameters(schema, hyperparameters)
    name = check_job_name(job_name) if job_name else unique_job_name(base_job_name or img.kind)
    if not local and role is None:
        role = next((os.environ[v] for v in ROLE_ENV if os.environ.get(v)), None)
        if role is None:
            raise ConfigurationError(f"no role: pass role='arn:aws:iam::<account>:role/<SageMaker execution role>' "
                                     f"or set {ROLE_ENV[0]}")
    uploads: dict[str, Any] = {}
    uris: dict[str, str] = {}
    if local:
        from sdk._local import jobs_home

        output = (jobs_home() / name).resolve().as_uri()
        for ch, value in sources.items():
            if is_s3(value):
                uris[ch] = str(value)
            else:
                path = Path(value).expanduser().resolve()
                if not path.exists():
                    raise ConfigurationError(f"channel {ch!r}: {path} does not exist")
                uris[ch] = path.as_uri()
    else:
        if output_path is None:
            import boto3

            session = session or boto3.Session()
            output_path = _default_output_path(session)
        split_s3(output_path)
        output = output_path.rstrip("/")
        from sdk._s3 import plan_upload

        for ch, value in sources.items():
            if is_s3(value):
                uris[ch] = str(value)
            else:
                uploads[ch] = plan_upload(value, output, channel=ch)
                uris[ch] = uploads[ch].uri
    if checkpoint_s3_uri is None and checkpoints and not local:
        checkpoint_s3_uri = s3_join(output, name, "checkpoints") + "/"
    tb_uri = None
    if tensorboard and not local:
        tb_uri = tensorboard if isinstance(tensorboard, str) else s3_join(output, name, "tensorboard")
    request = build_request(
        job_name=name, image_uri=img.uri or f"local/{img.kind}", schema=schema, role=role, channels=uris,
        hyperparameters=encoded, output_path=output, instance_type=instance_type, instance_count=instance_count,
        volume_size_gb=volume_size_gb, max_run=max_run, spot=spot, max_wait=max_wait,
        checkpoint_s3_uri=checkpoint_s3_uri, tensorboard_s3_uri=tb_uri, input_modes=input_modes,
        environment=environment, tags=tags, class_names=class_names, local=local)
    return Plan(request=request, kind=img.kind, image_uri=img.uri, uploads=uploads)


def launch_job(*, wait: bool = True, logs: bool = True, session: Any = None, engine: str | None = None,
               **kwargs: Any) -> Any:
    """Create a training job of one of this project's images and (by default) follow it to the end.

    Takes every argument of :func:`plan_job`, plus ``wait`` and ``logs`` (follow the job, printing
    its log), ``session`` (a ``boto3.Session``) and ``engine`` (docker or podman, for a local
    run of an image). Returns a :class:`Job`, or a :class:`LocalJob` when ``instance_type="local"``.
    Raises :class:`JobFailedError` (job name and reason) when a waited-for job fails.
    """
    if kwargs.get("instance_type") == LOCAL:
        plan = plan_job(**kwargs)
        return _launch_local(plan, wait=wait, logs=logs, session=session, engine=engine)
    import boto3

    session = session or boto3.Session()
    plan = plan_job(session=session, **kwargs)
    request = prepare_inputs(plan, session=session, create_bucket=kwargs.get("output_path") is None)
    from sdk._job import Job

    with aws_errors(f"creating training job {request['TrainingJobName']}"):
        session.client("sagemaker").create_training_job(**request)
    job = Job(request["TrainingJobName"], session=session, request=request)
    print(f"training job {job.name} created", file=sys.stderr)
    if wait:
        job.wait(logs=logs)
    return job


def prepare_inputs(plan: Plan, *, session: Any, create_bucket: bool) -> dict[str, Any]:
    """What must exist before ``CreateTrainingJob``: the output bucket, the uploaded channels, S3 channels that
    hold something (their URIs fixed with a trailing ``/`` where they name a folder). Returns the request."""
    request = plan.request
    with aws_errors("connecting to S3"):
        s3 = session.client("s3")
    bucket, _ = split_s3(request["OutputDataConfig"]["S3OutputPath"])
    _ensure_bucket(s3, bucket, create=create_bucket, region=session.region_name or "us-east-1")
    from sdk._s3 import check_s3_channel, upload

    for channel in request["InputDataConfig"]:
        ch = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        if ch in plan.uploads:
            sent, skipped = upload(s3, plan.uploads[ch], channel=ch)
            print(f"channel {ch}: {source['S3Uri']} ({sent} uploaded, {skipped} already there)", file=sys.stderr)
        else:
            source["S3Uri"] = check_s3_channel(s3, source["S3Uri"], channel=ch)
    return request


def _launch_local(plan: Plan, *, wait: bool, logs: bool, session: Any, engine: str | None) -> Any:
    from sdk._job import LocalJob
    from sdk._local import LocalRun, jobs_home, write_record

    request = plan.request
    job_dir = jobs_home() / request["TrainingJobName"]
    job_dir.mkdir(parents=True, exist_ok=True)
    s3 = None
    if any(is_s3(c["DataSource"]["S3DataSource"]["S3Uri"]) for c in request["InputDataConfig"]):
        import boto3

        with aws_errors("connecting to S3"):
            s3 = (session or boto3.Session()).client("s3")
    run = LocalRun(request, job_dir, kind=plan.kind, image=plan.image_uri, engine=engine, s3=s3)
    write_record(job_dir, {"TrainingJobName": run.name, "TrainingJobStatus": "InProgress",
                           "SecondaryStatus": "Downloading", "Request": request})
    try:
        run.prepare()
        run.start()
    except Exception as err:
        write_record(job_dir, {"TrainingJobName": run.name, "TrainingJobStatus": "Failed",
                               "FailureReason": str(err), "Request": request})
        raise
    job = LocalJob(run.name, job_dir, run)
    job._start(timeout=request["StoppingCondition"]["MaxRuntimeInSeconds"])
    print(f"local job {job.name} started in {job_dir}", file=sys.stderr)
    if wait:
        job.wait(logs=logs)
    return job
