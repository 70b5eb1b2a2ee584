"""The ``CreateTrainingJob`` request, built and validated without touching AWS (or importing boto3).

Everything a launch could get wrong is caught here, before a bucket is created or a byte
uploaded: the image, the job name, channels and their input modes, hyperparameters (against the
image's own schema), limits of the API. :func:`build_request` is what ``launch_job``, the CLI's
``--dry-run`` and the ``sagemaker`` v2 adapter all use.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.contract import CHANNEL_NAME_RULE, SAGEMAKER, encode_value, is_channel_name, is_reserved
from container.schema import Schema, known_images
from sdk._errors import ConfigurationError, user_errors

IMAGE_FILE = "ecr_image_fullname.txt"  # what build-and-push.sh writes
KINDS = tuple(known_images())  # the images that exist: each container/<name>/schema.yaml
CHECKPOINT_LOCAL_PATH = str(SAGEMAKER.checkpoints)  # CheckpointConfig.LocalPath: where the image looks
TENSORBOARD_LOCAL_PATH = str(SAGEMAKER.tensorboard)
INPUT_MODES = ("File", "FastFile", "Pipe")

JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_RE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
S3_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?$")
ECR_IMAGE_RE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                          r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$")


@dataclass(frozen=True)
class EcrImage:
    """An Amazon ECR image URI's parts: ``<account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag][@digest]``
    (sdk.registry reads the digest ECR has for a tag, sdk.serving looks for the serving variant's tag)."""

    account: str
    region: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, uri: str) -> EcrImage | None:
        """The parts, or None for an image in another registry."""
        found = ECR_IMAGE_RE.match(uri)
        return cls(**found.groupdict()) if found else None


IMAGE_URI_RE = re.compile(r"^[a-z0-9.\-]+(:\d+)?/[a-z0-9._/\-]+([:@][\w.\-:]+)?$")


@dataclass(frozen=True)
class Image:
    """Which image a job runs: its URI (None in local process mode) and its kind (whose schema applies)."""

    uri: str | None
    kind: str

    @property
    def schema(self) -> Schema:
        return Schema.load(self.kind)


def resolve_image(image: str | Path | None, kind: str | None = None) -> Image:
    """An image from an ECR URI, a file written by ``build-and-push.sh``, or a kind (``yolo``) for local runs."""
    if image is None:
        found = Path(IMAGE_FILE)
        if not found.is_file():
            if kind:
                return Image(None, _check_kind(kind))
            raise ConfigurationError(
                f"no image given and no {IMAGE_FILE} here: pass image='<account>.dkr.ecr.<region>.amazonaws.com/"
                "<repo>:<tag>' (build-and-push.sh prints it) or the path of its ecr_image_fullname.txt")
        image = found
    text = str(image).strip()
    if text in KINDS:
        return Image(None, _check_kind(kind or text))
    path = Path(text)
    if path.name == IMAGE_FILE or (path.is_file() and not IMAGE_URI_RE.match(text)):
        if not path.is_file():
            raise ConfigurationError(f"image file {path} does not exist (build-and-push.sh writes it)")
        text = path.read_text().strip()
    if not IMAGE_URI_RE.match(text):
        raise ConfigurationError(f"image {text!r} is not an image URI like "
                                 "'<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>'")
    if kind is None:
        repo = text.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
        matches = [k for k in KINDS if k in repo]
        if len(matches) != 1:
            raise ConfigurationError(f"cannot tell which image {text!r} is from its name; pass kind='yolo' or "
                                     "kind='tfod' (on the command line: --kind yolo or --kind tfod)")
        kind = matches[0]
    return Image(text, _check_kind(kind))


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigurationError(f"unknown image kind {kind!r}; known: {', '.join(KINDS)}")
    return kind


# -- names -----------------------------------------------------------------------------------------
def unique_job_name(base: str) -> str:
    """``<base>-YYYYmmdd-HHMMSS-xxxx``: valid for the API and unique without asking AWS."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    suffix = f"{stamp}-{secrets.token_hex(2)}"
    clean = re.sub(r"[^a-zA-Z0-9-]+", "-", base).strip("-") or "job"
    return f"{clean[: 63 - len(suffix) - 1].rstrip('-')}-{suffix}"


def check_job_name(name: str) -> str:
    if not JOB_NAME_RE.match(name):
        raise ConfigurationError(
            f"job name {name!r} is not valid: 1 to 63 letters, digits and hyphens, starting and ending "
            "with a letter or digit")
    return name


# -- S3 URIs ----------------------------------------------------------------------------------------
def is_s3(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` URI, or ConfigurationError saying what is wrong with it."""
    m = S3_RE.match(uri) if isinstance(uri, str) else None
    if m:
        return m.group(1), (m.group(2) or "/")[1:]
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ConfigurationError(f"{uri!r} is not an S3 URI like s3://bucket/prefix/")
    bucket = uri[len("s3://"):].split("/", 1)[0]
    if not 3 <= len(bucket) <= 63:
        raise ConfigurationError(f"{uri!r}: bucket name {bucket!r} is {len(bucket)} characters; S3 bucket names "
                                 "are 3 to 63 characters")
    raise ConfigurationError(f"{uri!r}: bucket name {bucket!r} is not valid (lowercase letters, digits, dots and "
                             "hyphens, starting and ending with a letter or digit)")


def s3_join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def as_prefix(uri: str) -> str:
    """A folder URI ends in ``/``: without it ``s3://b/ckpt`` also matches ``s3://b/ckpt-old/...``."""
    split_s3(uri)
    return uri if uri.endswith("/") else uri + "/"


# -- hyperparameters --------------------------------------------------------------------------------
def encode_hyperparameters(schema: Schema, hyperparameters: Mapping[str, Any] | None) -> dict[str, str]:
    """Validated against the image's schema, then written the one way the image reads back."""
    hyperparameters = dict(hyperparameters or {})
    for key in hyperparameters:
        if not isinstance(key, str):
            raise ConfigurationError(f"hyperparameter names are strings, got {key!r}")
    reserved = sorted(k for k in hyperparameters if is_reserved(k))
    if reserved:  # the image skips them (SageMaker adds its own); sent by a user they would vanish silently
        raise ConfigurationError(f"hyperparameter(s) {', '.join(map(repr, reserved))} are reserved for SageMaker "
                                 "and its training toolkit, which set them; this image does not read them: remove them")
    with user_errors():
        typed = schema.parse(hyperparameters)
    # a value left as None means "the image's default" and is not sent; "none" typed for an optional
    # hyperparameter (export: none) is sent, as null, and the image reads it back as None
    encoded = {key: encode_value(value) for key, value in typed.items()
               if value is not None or hyperparameters.get(key) is not None}
    if len(encoded) > 100:
        raise ConfigurationError(f"{len(encoded)} hyperparameters; SageMaker accepts at most 100")
    for key, value in encoded.items():
        if len(value) > 2500:
            raise ConfigurationError(f"hyperparameter {key!r} is {len(value)} characters long; "
                                     "SageMaker keeps at most 2500 (put it in a file in the cfg channel)")
    return encoded


# -- channels ---------------------------------------------------------------------------------------
def check_channels(schema: Schema, names: Iterable[str], modes: Mapping[str, str]) -> None:
    names = list(names)
    problems = []
    if not 1 <= len(names) <= 20:
        problems.append(f"{len(names)} channels; a job has 1 to 20")
    for name in names:
        if not is_channel_name(name):
            problems.append(f"channel name {name!r} is not valid ({CHANNEL_NAME_RULE})")
        elif name not in schema.channels:
            import difflib

            hint = difflib.get_close_matches(name, list(schema.channels), n=2)
            problems.append(f"the {schema.image} image has no channel {name!r}"
                            + (f"; did you mean {' or '.join(map(repr, hint))}?" if hint else
                               f" (it reads {', '.join(schema.channels)})"))
    if schema.required_channels and not any(set(group) <= set(names) for group in schema.required_channels):
        needs = " or ".join(" + ".join(group) for group in schema.required_channels)
        problems.append(f"the {schema.image} image needs the channel(s) {needs}; got {', '.join(names) or 'none'}")
    for name, mode in modes.items():
        if name not in names:
            problems.append(f"input mode given for {name!r}, which is not a channel of this job")
        elif mode not in INPUT_MODES:
            problems.append(f"input mode {mode!r} of channel {name!r}: use one of {', '.join(INPUT_MODES)}")
        elif mode not in schema.input_modes:
            problems.append(f"the {schema.image} image reads channels in {' or '.join(schema.input_modes)} mode, "
                            f"not {mode} (channel {name!r})")
    if problems:
        raise ConfigurationError("; ".join(problems))


# -- the request ------------------------------------------------------------------------------------
def build_request(
    *,
    job_name: str,
    image_uri: str,
    schema: Schema,
    role: str | None,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, str],
    output_path: str,
    instance_type: str = "ml.g5.xlarge",
    instance_count: int = 1,
    volume_size_gb: int = 50,
    max_run: int = 24 * 3600,
    spot: bool = False,
    max_wait: int | None = None,
    checkpoint_s3_uri: str | None = None,
    tensorboard_s3_uri: str | None = None,
    input_modes: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    class_names: Iterable[str] = (),
    local: bool = False,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request. ``channels`` map names to S3 URIs (uploads already planned).

    ``hyperparameters`` are already encoded (:func:`encode_hyperparameters`). ``local=True`` (local
    mode, never sent to AWS) also accepts ``file://`` URIs and no role, as SageMaker's local mode does.
    """
    check_job_name(job_name)
    _check_role(role, local=local)
    modes = dict(input_modes or {})
    check_channels(schema, channels, modes)
    _check_locations([*channels.values(), output_path], local=local)
    _check_resources(instance_count=instance_count, volume_size_gb=volume_size_gb, max_run=max_run)
    stopping = _stopping_condition(max_run=max_run, spot=spot, max_wait=max_wait)
    # counts, lengths and patterns of Environment, Tags, names...: botocore's service model (sdk.jobs.api)
    env = {str(k): str(v) for k, v in (environment or {}).items()}

    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": schema.metric_definitions(class_names),
        },
        "RoleArn": role or "",
        "InputDataConfig": _input_data_config(channels, modes),
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": int(instance_count),
                           "VolumeSizeInGB": int(volume_size_gb)},
        "StoppingCondition": stopping,
        "HyperParameters": dict(hyperparameters),
        # Our images use neither SageMaker Debugger nor its profiler: off, so no rule jobs start.
        "ProfilerConfig": {"DisableProfiler": True},
    }
    if not request["RoleArn"]:
        del request["RoleArn"]
    request.update(_optional_settings(spot=spot, checkpoint_s3_uri=checkpoint_s3_uri,
                                      tensorboard_s3_uri=tensorboard_s3_uri, env=env, tags=tags))
    return request


def _check_role(role: str | None, *, local: bool) -> None:
    """An IAM role ARN (a local-mode job may have none)."""
    if not (local and role is None) and not ROLE_RE.match(role or ""):
        raise ConfigurationError(f"role {role!r} is not an IAM role ARN like arn:aws:iam::123456789012:role/Name")


def _check_locations(uris: Iterable[str], *, local: bool) -> None:
    """S3 URIs (a local-mode job's may be ``file://`` URIs)."""
    for uri in uris:
        if not (local and uri.startswith("file://")):
            split_s3(uri)


def _check_resources(*, instance_count: int, volume_size_gb: int, max_run: int) -> None:
    """The instances, their volume and the run time, within what SageMaker accepts."""
    if instance_count < 1:
        raise ConfigurationError(f"instance_count must be at least 1, got {instance_count}")
    if not 1 <= volume_size_gb <= 16384:
        raise ConfigurationError(f"volume_size_gb must be 1 to 16384, got {volume_size_gb}")
    if max_run < 1:
        raise ConfigurationError(f"max_run must be at least 1 second, got {max_run}")


def _stopping_condition(*, max_run: int, spot: bool, max_wait: int | None) -> dict[str, int]:
    """``StoppingCondition``: the run time, and for spot training the wait (default twice the run time)."""
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": int(max_run)}
    if spot:
        wait = int(max_wait if max_wait is not None else max_run * 2)
        if wait < max_run:
            raise ConfigurationError(f"max_wait ({wait} s) must be at least max_run ({max_run} s) for spot training")
        stopping["MaxWaitTimeInSeconds"] = wait
    elif max_wait is not None:
        raise ConfigurationError("max_wait only applies to spot training (spot=True)")
    return stopping


def _input_data_config(channels: Mapping[str, str], modes: Mapping[str, str]) -> list[dict[str, Any]]:
    """``InputDataConfig``: each channel's S3 prefix, read in its mode (default File)."""
    return [
        {
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
            "InputMode": modes.get(name, "File"),
        }
        for name, uri in channels.items()
    ]


def _optional_settings(*, spot: bool, checkpoint_s3_uri: str | None, tensorboard_s3_uri: str | None,
                       env: Mapping[str, str], tags: Mapping[str, str] | None) -> dict[str, Any]:
    """The request's fields that are sent only when set: spot, checkpoints, TensorBoard, environment, tags."""
    settings: dict[str, Any] = {}
    if spot:
        settings["EnableManagedSpotTraining"] = True
    if checkpoint_s3_uri:
        settings["CheckpointConfig"] = {"S3Uri": as_prefix(checkpoint_s3_uri), "LocalPath": CHECKPOINT_LOCAL_PATH}
    if tensorboard_s3_uri:
        settings["TensorBoardOutputConfig"] = {"S3OutputPath": tensorboard_s3_uri,
                                               "LocalPath": TENSORBOARD_LOCAL_PATH}
    if env:
        settings["Environment"] = env
    if tags:
        settings["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return settings
