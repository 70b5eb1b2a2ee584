"""The inputs of a conversion on several Processing machines: the source listed once, the images sharded.

Every machine needs every annotation file (a COCO JSON names images any machine may hold), but only its
share of the images, which are nearly all the bytes. So the source prefix is listed here (1,000 keys per
``ListObjectsV2`` call) and written as two SageMaker manifest files (``S3DataType: ManifestFile``) beside
the job, under ``s3://<out bucket>/sm-detectors/convert/<job>/``:

* ``annotations.manifest``: every file that is not an image, ``FullyReplicated`` (every machine);
* ``image-list/images.manifest``: every image, given twice: as the job's ``ShardedByS3Key`` input (each
  machine downloads about 1/N of the images: how SageMaker deals them out is its business) and, as a
  small ``FullyReplicated`` file, as the list the machines resolve annotations against
  (``container/processing.py``), so each converts exactly the images it received and an image named but
  absent is reported once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from container.annotations.paths import is_image
from container.processing import DATA_INPUT, IMAGE_LIST, IMAGE_LIST_INPUT, IMAGES_INPUT, manifest_body
from container.processing import DEFAULT_PROCESSING_DIR as PROCESSING  # where Processing mounts inputs and outputs
from sdk._errors import ConfigurationError, aws_errors

STAGING = "sm-detectors/convert"  # s3://<out bucket>/sm-detectors/convert/<job>/: a job's manifest files
PROGRESS_EVERY = 100_000  # keys between progress lines when no terminal shows a bar


@dataclass
class Listing:
    """A source prefix, listed: its image keys and its other keys, relative to ``folder``."""

    folder: str  # s3://bucket/prefix/
    images: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    image_bytes: int = 0
    other_bytes: int = 0


@dataclass(frozen=True)
class Staged:
    """Where a job's manifest files are (``s3://`` URIs)."""

    annotations: str  # the annotations.manifest object
    images: str  # the images.manifest object
    image_list: str  # the folder that holds images.manifest alone (an S3Prefix input)


def _folder(uri: str) -> tuple[str, str]:
    from sdk.jobs.request import split_s3

    bucket, key = split_s3(uri)
    return bucket, key if key.endswith("/") or not key else key + "/"


def _size(n: int) -> str:
    size, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def list_source(s3: Any, source: str) -> Listing:
    """List ``source`` (a folder) page by page: images by suffix (``paths.IMG_SUFFIXES``), the rest apart.
    Folder markers and earlier jobs' manifest files (``sm-detectors/convert/``) are left out."""
    from sdk.jobs.s3 import _bar

    bucket, prefix = _folder(source)
    listing = Listing(f"s3://{bucket}/{prefix}")
    seen = 0
    with aws_errors(f"listing {listing.folder}"), _bar(None, f"listing {listing.folder}", unit="key") as bar:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/") or key.startswith(f"{STAGING}/"):
                    continue
                rel = key[len(prefix):]
                if is_image(rel):
                    listing.images.append(rel)
                    listing.image_bytes += obj.get("Size", 0)
                else:
                    listing.others.append(rel)
                    listing.other_bytes += obj.get("Size", 0)
            count = len(page.get("Contents", []))
            bar.update(count)
            if bar.disable and (seen + count) // PROGRESS_EVERY > seen // PROGRESS_EVERY:
                print(f"listing {listing.folder}: {seen + count:,} keys", file=sys.stderr, flush=True)
            seen += count
    return listing


def check_listing(listing: Listing, *, instance_count: int, annotations_only: bool) -> None:
    """A clear message now, rather than N machines failing (or idling) later."""
    if not listing.others:
        raise ConfigurationError(f"{listing.folder} holds no annotation files ({len(listing.images)} images): "
                                 "give the folder that holds the annotations and the images")
    if annotations_only:
        return
    if not listing.images:
        raise ConfigurationError(f"{listing.folder} holds no images: the conversion needs them beside the "
                                 "annotations (or pass annotations_only=True / --annotations-only when the target "
                                 "format does not hold the images)")
    if len(listing.images) < instance_count:
        raise ConfigurationError(f"{len(listing.images)} images for {instance_count} machines: some would get no "
                                 f"image and idle; use instance_count={len(listing.images)} or fewer")


def staging_uri(out: str, job_name: str) -> str:
    """``s3://<out bucket>/sm-detectors/convert/<job>/``, refused where it would land inside ``out``."""
    bucket, out_prefix = _folder(out)
    staging = f"{STAGING}/{job_name}/"
    if staging.startswith(out_prefix):
        raise ConfigurationError(f"out={out!r} would hold the job's manifest files (s3://{bucket}/{staging}), "
                                 f"and a training channel would read them: give a prefix below the bucket root, "
                                 f"e.g. s3://{bucket}/records/")
    return f"s3://{bucket}/{staging}"


def stage(s3: Any, listing: Listing, *, staging: str) -> Staged:
    """Write the two manifest files under ``staging`` (an s3:// folder) and say where they are."""
    bucket, key = _folder(staging)
    staged = Staged(annotations=f"s3://{bucket}/{key}annotations.manifest",
                    images=f"s3://{bucket}/{key}image-list/{IMAGE_LIST}", image_list=f"s3://{bucket}/{key}image-list/")
    for uri, keys in ((staged.annotations, listing.others), (staged.images, listing.images)):
        with aws_errors(f"writing {uri}"):
            s3.put_object(Bucket=bucket, Key=uri[len(f"s3://{bucket}/"):], Body=manifest_body(listing.folder, keys),
                          ContentType="application/json")
    return staged


def describe(listing: Listing, *, instance_count: int, annotations_only: bool) -> str:
    """One line on what goes where (and what it costs)."""
    n = len(listing.others)
    others = f"{n:,} other file{'s' * (n != 1)} ({_size(listing.other_bytes)}) copied to every machine"
    if annotations_only:
        return (f"{listing.folder}: {others}; {len(listing.images):,} images ({_size(listing.image_bytes)}) "
                "listed, not downloaded (annotations only)")
    return (f"{listing.folder}: {len(listing.images):,} images ({_size(listing.image_bytes)}) sharded over "
            f"{instance_count} machines (about {len(listing.images) // instance_count:,} each); {others}")


def sharded_inputs(staged: Staged, *, annotations_only: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``ProcessingInputs`` and the ``convert`` arguments that read them."""
    def s3_input(name: str, uri: str, local: str, data_type: str, distribution: str) -> dict[str, Any]:
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"{PROCESSING}/{local}",
                                               "S3DataType": data_type, "S3InputMode": "File",
                                               "S3DataDistributionType": distribution}}

    inputs = [s3_input("annotations", staged.annotations, DATA_INPUT, "ManifestFile", "FullyReplicated"),
              s3_input("image-list", staged.image_list, IMAGE_LIST_INPUT, "S3Prefix", "FullyReplicated")]
    args = ["--image-list"]  # bare: the entry knows where its inputs are mounted (the same constants)
    if annotations_only:
        args.append("--annotations-only")
    else:
        inputs.append(s3_input("images", staged.images, IMAGES_INPUT, "ManifestFile", "ShardedByS3Key"))
        args.append("--images")
    return inputs, args
