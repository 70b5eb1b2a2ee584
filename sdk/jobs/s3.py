"""Channels on S3: local folders uploaded under a content-addressed prefix, S3 prefixes checked and fetched.

A local folder ``data/`` goes to ``<base>/datasets/data-<digest>/`` where the digest covers every
file's relative path, size and ETag. The same folder always maps to the same prefix, so a second
launch uploads nothing, an interrupted upload resumes, and a changed folder never mixes with an
old one. A file counts as already there when S3 lists it with the same size and ETag (the MD5,
or the multipart ETag computed locally with the same part size we upload with) - one listing, no
per-file requests.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.walk import walk_files
from sdk._errors import ConfigurationError, NotFoundError, aws_errors, user_errors
from sdk.jobs.request import as_prefix, s3_join, split_s3

PART_SIZE = 16 * 1024 * 1024
WORKERS = 8


@dataclass(frozen=True)
class LocalFile:
    path: Path
    relpath: str
    size: int
    etag: str


@dataclass(frozen=True)
class LocalSource:
    """A local folder (or file) and the S3 prefix it uploads to."""

    root: Path
    files: tuple[LocalFile, ...]
    uri: str

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def etag_of(path: Path, part_size: int | None = None) -> str:
    """The ETag S3 gives this file when uploaded with ``part_size`` parts (plain MD5 when it fits in one)."""
    part_size = part_size or PART_SIZE
    digests = []
    with open(path, "rb") as fh:
        while chunk := fh.read(part_size):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if path.stat().st_size < part_size:  # s3transfer goes multipart from the threshold up, even for one part
        return (digests[0] if digests else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def _bar(total: int | None, desc: str, unit: str = "B") -> Any:
    from tqdm.auto import tqdm

    # Off when nobody watches: \r-redrawn bars garble logs and CI output.
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024 if unit == "B" else 1000,
                disable=not sys.stderr.isatty() or None, leave=False)


def plan_upload(local: str | Path, base_uri: str, *, channel: str) -> LocalSource:
    """Hash a local folder or file and name its prefix under ``base_uri``/datasets (no AWS call)."""
    root = Path(local).expanduser()
    if not root.exists():
        raise ConfigurationError(f"channel {channel!r}: {root} does not exist")
    with user_errors(f"channel {channel!r}: "):
        paths = [(f.path, f.relpath) for f in walk_files(root)]  # the files local mode would link, too
    if not paths:
        raise ConfigurationError(f"channel {channel!r}: {root} has no files")
    total = sum(p.stat().st_size for p, _ in paths)
    files = []
    with _bar(total, f"hashing {channel}") as bar:
        for path, rel in paths:
            files.append(LocalFile(path, rel, path.stat().st_size, etag_of(path)))
            bar.update(files[-1].size)
    digest = hashlib.sha256("\n".join(f"{f.relpath}\t{f.size}\t{f.etag}" for f in files).encode()).hexdigest()[:12]
    name = (root.resolve().name if root.is_dir() else root.stem) or channel
    return LocalSource(root, tuple(files), as_prefix(s3_join(base_uri, "datasets", f"{name}-{digest}")))


def _listing(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def upload(s3: Any, source: LocalSource, *, channel: str) -> tuple[int, int]:
    """Upload what is not there yet; ``(files uploaded, files skipped)``."""
    from boto3.s3.transfer import TransferConfig

    bucket, prefix = split_s3(source.uri)
    with aws_errors(f"listing {source.uri}"):
        there = _listing(s3, bucket, prefix)
    todo = [f for f in source.files if there.get(prefix + f.relpath) != (f.size, f.etag)]
    if not todo:
        return 0, len(source.files)
    config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4)
    with _bar(sum(f.size for f in todo), f"uploading {channel}") as bar, \
            aws_errors(f"uploading channel {channel!r} to {source.uri}"), ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(s3.upload_file, str(f.path), bucket, prefix + f.relpath, Config=config,
                               Callback=bar.update) for f in todo]
        for future in futures:
            future.result()
    return len(todo), len(source.files) - len(todo)


def check_s3_channel(s3: Any, uri: str, *, channel: str) -> str:
    """The URI to send for an S3 channel: a folder gets its trailing ``/``; nothing there is an error now,
    not an hour later when the instance starts."""
    bucket, key = split_s3(uri)
    with aws_errors(f"checking channel {channel!r} at {uri}"):
        if key and not key.endswith("/"):
            page = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=2)
            if any(obj["Key"] == key for obj in page.get("Contents", [])):
                return uri  # one object: the channel is that file
            uri, key = uri + "/", key + "/"
        page = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    if not page.get("KeyCount", len(page.get("Contents", []))):
        raise NotFoundError(f"channel {channel!r}: nothing under {uri}", code="NoSuchKey", operation="ListObjectsV2")
    return uri


def download(s3: Any, uri: str, dest: Path, *, what: str) -> Path:
    """Copy every object under an S3 URI (a prefix or one object) into ``dest`` (a folder)."""
    bucket, key = split_s3(uri)
    dest.mkdir(parents=True, exist_ok=True)
    with aws_errors(f"downloading {what} from {uri}"):
        listing = _listing(s3, bucket, key)
        if key in listing:  # one object
            items = {key: listing[key]}
            names = {key: key.rsplit("/", 1)[-1]}
        else:
            prefix = key if not key or key.endswith("/") else key + "/"
            items = {k: v for k, v in listing.items() if k.startswith(prefix) and not k.endswith("/")}
            names = {k: k[len(prefix):] for k in items}
        if not items:
            raise NotFoundError(f"{what}: nothing under {uri}", code="NoSuchKey", operation="ListObjectsV2")
        total = sum(size for size, _ in items.values())
        with _bar(total, f"downloading {what}") as bar, ThreadPoolExecutor(WORKERS) as pool:
            futures = []
            for k in items:
                target = dest / names[k]
                if os.path.relpath(target.resolve(), dest.resolve()).startswith(".."):
                    raise ConfigurationError(f"{what}: object {k!r} would land outside {dest}")
                target.parent.mkdir(parents=True, exist_ok=True)
                futures.append(pool.submit(s3.download_file, bucket, k, str(target), Callback=bar.update))
            for future in futures:
                future.result()
    return dest
