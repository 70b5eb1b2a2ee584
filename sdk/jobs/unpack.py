"""A job's model, from ``model.tar.gz`` to a named folder: downloaded, unpacked without losing anything.

The job handles (:mod:`sdk.jobs.job`) and ``fetch_model`` (:mod:`sdk.jobs.fetch`) both end here; this
module imports neither, so the arrows run one way: ``_fetch -> _job -> _unpack``.

What ``dest`` may hold (``docs/sdk-fetch.md``): nothing, or an earlier fetch of the same model
(every file there identical to the archive's). Anything else is refused with
:class:`ConfigurationError` before a byte is written; the archive is unpacked into a folder
beside ``dest`` and moved in, so a refused or broken archive leaves ``dest`` as it was.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.archive import DestinationConflict, safe_extract
from sdk._errors import ConfigurationError, FetchError, JobFailedError, NotFoundError, aws_errors, user_errors


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
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, or nested past the parser: not the image's
        raise FetchError(f"{metrics_file} is not the metrics.json an image writes ({type(err).__name__}): the "
                         "archive is not a model folder of these images") from None
    if not isinstance(metrics, dict):  # a list or a string: every reader of .metrics takes a mapping
        raise FetchError(f"{metrics_file} is not the metrics.json an image writes (a JSON {type(metrics).__name__}, "
                         "not an object): the archive is not a model folder of these images")
    exports: dict[str, Path] = {}
    export_dir = directory / "exports"
    if export_dir.is_dir():
        for item in sorted(export_dir.iterdir()):
            fmt = item.name.rsplit("_", 1)[-1] if item.is_dir() else item.suffix.lstrip(".")
            exports[fmt or item.name] = item
    for item in sorted(directory.glob("*.tflite")):
        exports[item.stem] = item
    saved_models = sorted((p.parent for p in directory.glob("[0-9]*/saved_model.pb")  # TF Serving's <version>/
                           if p.parent.name.isascii() and p.parent.name.isdigit() and len(p.parent.name) < 20),
                          key=lambda p: int(p.name))  # '1a' matched the glob and int() raised a ValueError
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


def unpack(tarball: Path, dest: Path, *, exclusive: bool = True, **caps: Any) -> list[Path]:
    """:func:`container.archive.safe_extract`, its errors translated at the SDK's boundary.

    A ``dest`` that would lose files is a :class:`ConfigurationError` (the argument is wrong);
    an unsafe or unreadable archive, or a disk error, a :class:`FetchError`.
    """
    try:
        with user_errors(error=FetchError):
            try:
                return safe_extract(tarball, dest, exclusive=exclusive, **caps)
            except DestinationConflict as err:
                raise ConfigurationError(f"{err} (dest must be new, empty, or an earlier fetch of the same "
                                         "model)") from err
    except OSError as err:
        raise FetchError(f"unpacking {tarball.name} into {dest}: {err}") from err


def _check_dest(dest: Path) -> None:
    """What can be refused before downloading: a dest that is a file, or one that cannot be created."""
    if dest.exists() and not dest.is_dir():
        raise ConfigurationError(f"dest {dest} is a file; fetch into a folder (default models/<job name>)")


def fetch_job_model(job_name: str, info: dict[str, Any], *, dest: str | Path | None = None,
                    session: Any = None) -> FetchedModel:
    """Download and unpack the model of the job ``info`` (its ``DescribeTrainingJob``) describes."""
    if info["TrainingJobStatus"] != "Completed":
        raise JobFailedError(job_name, info["TrainingJobStatus"],
                             info.get("FailureReason", "") or "it has not completed, so there is no model to fetch")
    uri = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    target = Path(dest if dest is not None else Path("models") / job_name).expanduser()
    _check_dest(target)
    if uri.startswith("file://"):  # a local job
        from sdk.jobs.local import path_of_uri

        tarball = path_of_uri(uri)
        if not tarball.is_file():
            raise NotFoundError(f"local job {job_name}: {tarball} is missing", code="NoSuchKey")
        unpack(tarball, target)
    else:
        from sdk._session import aws_session
        from sdk.jobs.request import split_s3

        session = aws_session(session)
        bucket, key = split_s3(uri)
        with tempfile.TemporaryDirectory() as tmp:
            tarball = Path(tmp) / "model.tar.gz"
            with aws_errors(f"downloading the model of {job_name} from {uri}"):
                session.client("s3").download_file(bucket, key, str(tarball))
            unpack(tarball, target)
    try:
        return describe_model_dir(job_name, target)
    except (ValueError, OSError) as err:  # a metrics.json that is not JSON (UnicodeDecodeError is a ValueError)
        raise FetchError(f"the model of {job_name} is in {target}, but its metrics.json cannot be read: {err}") from err
