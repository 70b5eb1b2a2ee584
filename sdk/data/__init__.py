"""Datasets in any format, from a notebook or a shell: convert, split, check.

    python -m sdk.data check  labelimg-export/ [--strict] [--json]
    python -m sdk.data convert labelimg-export/ --to yolo --out data/ [--split 0.8,0.2] [--seed 0]
    python -m sdk.data convert coco/ --to tfrecord --out records/        # + label_map.pbtxt/.csv
    python -m sdk.data split  data/ --out data-split/ --ratios 0.8,0.1,0.1 [--to yolo]
    python -m sdk.data convert s3://b/coco/ --to tfrecord --out s3://b/records/ --instance-count 4 \
        --image <tfod image URI> [--role arn:...]          # a SageMaker Processing job in the image:
                                                           # annotations to all 4, images sharded by key

Reads YOLO trees (boxes or polygons), Pascal VOC XML (labelImg), CVAT for images 1.1 XML, LabelMe JSON,
COCO JSON, Ground Truth output manifests and CSV (``filename,width,height,class,xmin,ymin,xmax,ymax``);
the format is detected. Writes YOLO, COCO, sharded TFRecords (TF Object Detection keys) with label maps,
VOC, CSV, Ground Truth manifests. Crowd (COCO) and difficult (VOC) boxes are left out unless
``--keep-crowd``/``--keep-difficult``; images with problems are left out and counted (``--strict``: fail).
See docs/datasets.md. In a notebook: ``from sdk.data import read, check, convert, split``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import container.annotations as _annotations
from container.annotations import WRITERS, Annotations, Report
from container.processing import DATA_INPUT, OUTPUT
from sdk._errors import ConfigurationError, JobFailedError, aws_errors, user_errors
from sdk.data.convert_inputs import PROCESSING, Staged, sharded_inputs

__all__ = ["Annotations", "Report", "check", "convert", "convert_on_sagemaker", "detect", "read", "split"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _sdk_errors(function: _F) -> _F:
    """The shared library's function, its UserErrors raised as the SDK's ConfigurationError (sdk/_errors.py)."""
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return function(*args, **kwargs)

    return cast(_F, call)


# the annotation library's calls (container/annotations), with the SDK's errors: a notebook catches SDKError alone
read = _sdk_errors(_annotations.read)
check = _sdk_errors(_annotations.check)
convert = _sdk_errors(_annotations.convert)
split = _sdk_errors(_annotations.split)
detect = _sdk_errors(_annotations.detect)


def processing_request(*, source: str, to: str, out: str, image: str, role: str, instance_count: int = 1,
                       instance_type: str = "ml.m5.xlarge", volume_size_gb: int = 100, fmt: str = "auto",
                       ratios: Sequence[float] | None = None, seed: int = 0, names: Sequence[str] | None = None,
                       keep_crowd: bool = False, keep_difficult: bool = False, annotations_only: bool = False,
                       job_name: str | None = None, max_runtime_s: int = 24 * 3600,
                       staged: Staged | None = None) -> dict[str, Any]:
    """The ``CreateProcessingJob`` request of a conversion (validated, nothing sent). Without ``staged``
    every machine gets the whole source (one ``S3Prefix`` input) and converts the images whose key hashes to
    it; with ``staged`` (the manifest files ``convert_on_sagemaker`` writes) every machine gets the
    annotation files and the image list, and only its share of the images (``sdk/data/convert_inputs.py``)."""
    from sdk.jobs.request import check_job_name, is_s3, resolve_image, unique_job_name

    if not (is_s3(source) and is_s3(out)):
        raise ConfigurationError(f"a conversion on SageMaker reads and writes S3: got {source!r} -> {out!r}")
    if to not in WRITERS:
        raise ConfigurationError(f"cannot write {to!r}; writable formats: {', '.join(WRITERS)}")
    uri = resolve_image(image).uri
    if uri is None:
        raise ConfigurationError("a Processing job needs the image URI (build-and-push.sh prints it)")
    if instance_count < 1:
        raise ConfigurationError(f"instance_count must be 1 or more, got {instance_count}")
    if annotations_only and to == "tfrecord":
        raise ConfigurationError("TFRecords hold the image bytes: a conversion to tfrecord needs the images "
                                 "(leave out annotations_only / --annotations-only)")
    args = ["--to", to, "--from", fmt, "--seed", str(seed)]
    if ratios:
        args += ["--split", ",".join(str(r) for r in ratios)]
    if names:
        args += ["--names", ",".join(names)]
    args += ["--keep-crowd"] * keep_crowd + ["--keep-difficult"] * keep_difficult
    # the whole source on every machine: an annotation file and its images must not land on two machines;
    # each converts only the images whose key hashes to it (container/processing.py)
    inputs: list[dict[str, Any]] = [{"InputName": "data", "S3Input": {
        "S3Uri": source, "LocalPath": f"{PROCESSING}/{DATA_INPUT}", "S3DataType": "S3Prefix",
        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}]
    if staged is not None:
        inputs, more = sharded_inputs(staged, annotations_only=annotations_only)
        args += more
    elif annotations_only:
        args.append("--annotations-only")
    return {
        "ProcessingJobName": check_job_name(job_name) if job_name else unique_job_name(f"convert-{to}"),
        "RoleArn": role,
        "AppSpecification": {"ImageUri": uri, "ContainerEntrypoint": ["python", "-m", "container", "convert"],
                             "ContainerArguments": args},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "data", "S3Output": {
            "S3Uri": out, "LocalPath": f"{PROCESSING}/{OUTPUT}", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": instance_count, "InstanceType": instance_type,
                                                  "VolumeSizeInGB": volume_size_gb}},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
    }


def convert_on_sagemaker(*, source: str, to: str, out: str, image: str, role: str | None = None,
                         instance_count: int = 1, instance_type: str = "ml.m5.xlarge",
                         annotations_only: bool = False, wait: bool = True, poll_s: float = 10.0,
                         session: Any = None, **options: Any) -> dict[str, Any]:
    """Convert a dataset in S3 with a SageMaker Processing job running ``convert`` in the project's image on
    ``instance_count`` machines; ``out`` is then a channel ``launch_job`` takes as is. Returns the job's
    description (``ProcessingJobStatus`` ``Completed`` when ``wait``). ``options``: ``fmt``, ``ratios``,
    ``seed``, ``names``, ``keep_crowd``, ``keep_difficult``, ``volume_size_gb``, ``job_name``.

    With ``instance_count > 1`` (or ``annotations_only``) the source is listed first and the images are
    sharded: each machine downloads the annotation files and about 1/N of the images, not the whole source
    (manifest files under ``s3://<out bucket>/sm-detectors/convert/<job>/``, see ``sdk/data/convert_inputs.py``).
    ``annotations_only`` downloads no image at all (not for TFRecords)."""
    from sdk._session import aws_session
    from sdk.data.convert_inputs import check_listing, describe, list_source, stage, staging_uri
    from sdk.jobs.plan import ROLE_ENV

    role = role or next((os.environ[v] for v in ROLE_ENV if os.environ.get(v)), None)
    if role is None:
        raise ConfigurationError(f"no role: pass role='arn:aws:iam::<account>:role/<role>' or set {ROLE_ENV[0]}")
    settings = {"source": source, "to": to, "out": out, "image": image, "role": role,
                "instance_count": instance_count, "instance_type": instance_type,
                "annotations_only": annotations_only, **options}
    request = processing_request(**settings)  # validated before anything is listed or written
    boto = aws_session(session)
    name = request["ProcessingJobName"]
    if instance_count > 1 or annotations_only:
        s3 = boto.client("s3")
        staging = staging_uri(out, name)
        listing = list_source(s3, source)
        check_listing(listing, instance_count=instance_count, annotations_only=annotations_only)
        print(describe(listing, instance_count=instance_count, annotations_only=annotations_only), file=sys.stderr)
        request = processing_request(**{**settings, "job_name": name}, staged=stage(s3, listing, staging=staging))
    sm = boto.client("sagemaker")
    with aws_errors(f"creating processing job {name}"):
        sm.create_processing_job(**request)
    print(f"processing job {name}: {instance_count} x {instance_type}, {source} -> {out}", file=sys.stderr)
    while True:
        with aws_errors(f"describing processing job {name}"):
            info = sm.describe_processing_job(ProcessingJobName=name)
        status = info["ProcessingJobStatus"]
        if not wait or status in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(poll_s)
    if wait and status != "Completed":
        err = JobFailedError(name, status, info.get("FailureReason", ""))
        err.args = (f"processing job {name} {status.lower()}: {err.reason or 'no reason given'}",)
        raise err
    return info


CASE_CLASH = "class names that differ only by case (trained as separate classes; merge them if they are one)"


def case_clashes(names: list[str]) -> list[list[str]]:
    """Groups of class names equal but for case (``Cat``, ``cat``): separate classes, rarely what was meant."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), []).append(name)
    return [group for group in groups.values() if len(set(group)) > 1]


