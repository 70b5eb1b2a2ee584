"""``convert``: a dataset conversion as a SageMaker Processing job, in the training image itself.

    python -m container convert --to tfrecord [--from auto] [--split 0.8,0.2] [--names a,b] ...
        [--image-list [FILE] --images [DIR]] [--annotations-only]

SageMaker Processing mounts the job's inputs under ``/opt/ml/processing/input/<name>`` and uploads
``/opt/ml/processing/output/<name>`` when the container exits; ``/opt/ml/config/resourceconfig.json`` names
this machine and all of them. Two ways to run on N machines, both writing per-machine files
(``train-host1of4-00000-of-00002.tfrecord``, ``train-host1of4.json``), so no two machines write the same file,
no image is converted twice or missed, and the output prefix, put together, is a channel ``launch_job``
takes as is:

* the whole source on every machine (``input/data``): machine i converts the images whose key (path
  relative to the dataset root) hashes to i (``annotations.convert(shard=...)``);
* the images sharded (``sdk.data.convert_on_sagemaker``): every machine gets the annotation files
  (``input/data``) and the list of every image key (``--image-list``, a SageMaker manifest file), but only
  its own share of the image files (``--images``, SageMaker's ``ShardedByS3Key``: how SageMaker splits them
  is not assumed). The machine links both into one dataset tree in which every listed image has its place
  (a link that dangles where the image went to another machine), so an annotation names the same image
  key as in a local conversion; it converts exactly the images it received, and an image the annotations
  name but no listing holds is reported by the one machine its key hashes to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from container.failure import EXIT_USER_ERROR, UserError

if TYPE_CHECKING:
    from container.annotations.types import Item

PROCESSING_DIR_ENV = "SM_PROCESSING_DIR"  # tests point it at a folder; SageMaker's is /opt/ml/processing
DEFAULT_PROCESSING_DIR = "/opt/ml/processing"
RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"
# The job's inputs and output under the processing folder: the SDK's request names the same places.
DATA_INPUT = "input/data"  # the source (whole), or its annotation files alone when the images are sharded
IMAGES_INPUT = "input/images"  # this machine's share of the image files
IMAGE_LIST_INPUT = "input/image-list"  # a folder holding IMAGE_LIST, every image key of the source
IMAGE_LIST = "images.manifest"
OUTPUT = "output/data"


def host_shard(resource_config: Path) -> tuple[int, int]:
    """(this machine's index, how many machines) from Processing's resourceconfig.json; (0, 1) without one."""
    if not resource_config.is_file():
        return 0, 1
    config = json.loads(resource_config.read_text(encoding="utf-8"))
    hosts = sorted(config.get("hosts") or [config.get("current_host", "algo-1")])
    return hosts.index(config.get("current_host", hosts[0])), len(hosts)


# -- SageMaker manifest files: [{"prefix": "s3://bucket/prefix/"}, "relative/key", ...] -------------------
def manifest_body(prefix: str, keys: Iterable[str]) -> bytes:
    """A SageMaker ``ManifestFile`` (``S3DataType``) naming ``prefix`` + each relative key; the SDK writes it."""
    if not prefix.startswith("s3://") or not prefix.endswith("/"):
        raise ValueError(f"a manifest prefix is an s3:// folder ending in '/': got {prefix!r}")
    return json.dumps([{"prefix": prefix}, *keys], separators=(",", ":")).encode()


def manifest_keys(path: Path) -> list[str]:
    """The relative keys a manifest file names (what a machine finds under ``--image-list``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable image list ({err}); it is written by sdk.data.convert_on_sagemaker "
                        "(a SageMaker manifest file)") from None
    if not (isinstance(data, list) and data and isinstance(data[0], dict) and "prefix" in data[0]
            and all(isinstance(k, str) for k in data[1:])):
        raise UserError(f"{path}: not a SageMaker manifest file ([{{\"prefix\": \"s3://...\"}}, \"key\", ...])")
    return data[1:]


# -- one dataset tree from the annotations, the image list and this machine's images ---------------------
def _safe(rel: str) -> str:
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UserError(f"image key {rel!r} leaves the dataset folder: rename it in S3")
    return "/".join(parts)


def link_tree(annotations: Path, images: Path, keys: list[str], into: Path) -> int:
    """Link every annotation file under ``annotations`` and every listed image key into ``into``; an image
    links to ``images/<key>``, which exists only where this machine received it. The readers then resolve an
    annotation's image name against the whole source, exactly as a local conversion does. Returns how many
    listed images this machine holds. Links, not copies: a million of them take seconds and no space."""
    made: set[str] = set()

    def link(target: Path, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in made:
            (into / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)
        os.symlink(target, into / rel)

    into.mkdir(parents=True, exist_ok=True)
    base = str(annotations)
    for dirpath, _dirnames, files in os.walk(base):
        rel_dir = dirpath[len(base):].lstrip(os.sep).replace(os.sep, "/")
        for name in files:
            link(Path(dirpath, name), f"{rel_dir}/{name}" if rel_dir else name)
    held = 0
    for key in keys:
        rel = _safe(key)
        if not os.path.lexists(into / rel):  # an annotation file of the same name wins (it cannot be an image)
            link(images / rel, rel)
            held += (images / rel).is_file()
    return held


def received_or_hashed(index: int, count: int) -> Callable[[Item], bool]:
    """Whose image an item is, in a linked tree: the machine that received it; an image no listing holds
    (no link: the annotation names a missing image) is reported by the machine its key hashes to."""
    from container.annotations.convert import in_shard

    def select(item: Item) -> bool:
        if item.path is not None and os.path.lexists(item.path):
            return item.path.exists()  # a link: the image is here, or on another machine (it dangles)
        return in_shard(item.name, index, count)

    return select


def main(argv: list[str] | None = None) -> int:
    from container.annotations import FORMATS, WRITERS, convert

    base = Path(os.environ.get(PROCESSING_DIR_ENV) or DEFAULT_PROCESSING_DIR)
    parser = argparse.ArgumentParser(prog="convert", description=__doc__.split("\n")[0])
    parser.add_argument("--to", required=True, choices=sorted(WRITERS))
    parser.add_argument("--from", dest="fmt", default="auto", choices=["auto", *FORMATS])
    parser.add_argument("--input", type=Path, default=base / DATA_INPUT)
    parser.add_argument("--output", type=Path, default=base / OUTPUT)
    # bare, as the SDK passes them: the places the SDK's request mounts them (IMAGES_INPUT, IMAGE_LIST_INPUT)
    parser.add_argument("--images", type=Path, nargs="?", const=base / IMAGES_INPUT,
                        help="this machine's share of the images (with --image-list)")
    parser.add_argument("--image-list", type=Path, nargs="?", const=base / IMAGE_LIST_INPUT / IMAGE_LIST,
                        help="a manifest file naming every image of the source: --input then holds the "
                             "annotation files alone")
    parser.add_argument("--resource-config", type=Path,
                        default=Path(os.environ.get("SM_RESOURCE_CONFIG") or RESOURCE_CONFIG))
    parser.add_argument("--split", dest="ratios", help="re-split: train,val[,test] ratios (seeded, per image key)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", help="class names in id order, comma-separated (needed when each machine "
                                        "sees part of a format without a class list: VOC, LabelMe, CSV)")
    parser.add_argument("--keep-crowd", action="store_true")
    parser.add_argument("--keep-difficult", action="store_true")
    parser.add_argument("--annotations-only", action="store_true",
                        help="convert the annotations alone: no image is read or copied (not for TFRecords)")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    try:
        index, count = host_shard(args.resource_config)
        ratios = [float(x) for x in args.ratios.split(",")] if args.ratios else None
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        print(f"convert: machine {index + 1} of {count}, {args.input} -> {args.output} as {args.to}", flush=True)
        with tempfile.TemporaryDirectory(prefix="convert-") as tmp:
            source, select = args.input, None
            if args.image_list is not None:
                if args.images is None and not args.annotations_only:
                    raise UserError("--image-list needs --images (this machine's share of the images)")
                keys = manifest_keys(args.image_list)
                images = args.images or Path(tmp, "no-images")
                source = Path(tmp, "dataset")
                held = link_tree(args.input, images, keys, source)
                print(f"convert: {held} of the source's {len(keys)} images are on this machine", flush=True)
                if not args.annotations_only:
                    select = received_or_hashed(index, count)
            ann, report = convert(source, args.to, args.output, fmt=args.fmt, ratios=ratios, seed=args.seed,
                                  names=names, strict=args.strict, images=not args.annotations_only,
                                  keep_crowd=args.keep_crowd, keep_difficult=args.keep_difficult,
                                  shard=(index, count) if count > 1 else None, select=select,
                                  log=lambda s: print(s, flush=True))
        print(json.dumps({"machine": index, "machines": count, "converted": ann.summary(),
                          "left_out": len(report.left_out),
                          "problems": {k: f.count for k, f in report.problems.items()}}), flush=True)
        return 0
    except (UserError, ValueError) as err:
        print(f"convert: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
