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
  is not assumed). The machine links both into one dataset tree that also lists the images it did not
  receive (``link_tree``), so an annotation names the same image key as in a local conversion; it converts
  exactly the images it received, and an image the annotations name but no listing holds is reported by
  the one machine its key hashes to.
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

from container.contract import SAGEMAKER
from container.failure import EXIT_USER_ERROR, UserError

if TYPE_CHECKING:
    from container.annotations.types import Item

PROCESSING_DIR_ENV = "SM_PROCESSING_DIR"  # tests point it at a folder; SageMaker's is SAGEMAKER.processing
DEFAULT_PROCESSING_DIR = str(SAGEMAKER.processing)
RESOURCE_CONFIG = str(SAGEMAKER.processing_resource_config)
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
    if any(c in rel for c in "\n\r\x00"):  # the list of images kept elsewhere has one key a line
        raise UserError(f"image key {rel!r} holds a line break or a NUL byte: rename it in S3")
    if not rel.startswith((".", "/")) and "\\" not in rel and "//" not in rel and "/." not in rel:
        return rel  # the common case, without splitting a million keys
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UserError(f"image key {rel!r} leaves the dataset folder: rename it in S3")
    return "/".join(parts)


def link_tree(annotations: Path, images: Path, keys: list[str], into: Path, *, hard_links: bool = True) -> int:
    """One dataset tree in ``into``: a link to every annotation file under ``annotations`` and to every image
    this machine received under ``images``, and the other listed keys in ``into/.images-elsewhere``
    (``paths.ELSEWHERE``), which the readers' index knows. An annotation then names the same image key as
    in a local conversion of the whole source, whichever machine reads it. Returns how many images this
    machine holds. Links, not copies (no space): hard ones where the tree and the inputs share a file
    system, else symbolic; only for what is here, as most of a million listed images are elsewhere
    (benchmarks/bench_processing_shards.py)."""
    from container.annotations.paths import ELSEWHERE

    made: set[str] = set()
    root = str(into)
    hard = [hard_links]  # hard links while they work (one file system): far cheaper than symbolic ones on some

    def link(target: str, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in made:
            os.makedirs(f"{root}/{parent}", exist_ok=True)
            made.add(parent)
        if hard[0]:
            try:
                return os.link(target, f"{root}/{rel}")
            except FileExistsError:
                raise
            except OSError:  # another file system (each input its own mount), or links refused
                hard[0] = False
        os.symlink(target, f"{root}/{rel}")

    def walk(folder: Path) -> Iterable[tuple[str, str]]:  # (path, path relative to the folder)
        base = str(folder)
        for dirpath, _dirnames, files in os.walk(base):
            rel_dir = dirpath[len(base):].lstrip(os.sep).replace(os.sep, "/")
            for name in files:
                yield os.path.join(dirpath, name), f"{rel_dir}/{name}" if rel_dir else name

    os.makedirs(root, exist_ok=True)
    for path, rel in walk(annotations):
        link(path, rel)
    held: set[str] = set()
    for path, rel in walk(images):
        try:
            link(path, rel)
        except FileExistsError:  # an annotation file of that name came first: not an image to convert
            continue
        held.add(rel)
    with open(f"{root}/{ELSEWHERE}", "w", encoding="utf-8") as fh:
        for key in keys:
            if (rel := _safe(key)) not in held:
                fh.write(f"{rel}\n")
    return len(held)


def received_or_hashed(index: int, count: int) -> Callable[[Item], bool]:
    """Whose image an item is, in a linked tree: the machine that received it; an image the annotations
    name but no listing holds (not found: no path) is reported by the machine its key hashes to."""
    from container.annotations.convert import in_shard

    def select(item: Item) -> bool:
        if item.path is not None:
            return item.path.exists()  # here, or listed elsewhere (another machine's)
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
    parser.add_argument("--split", dest="ratios", help="re-split: train,val[,test] ratios (seeded; each machine "
                        "splits its own share)")
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
                                  log=lambda s: print(s, flush=True), links_out_ok=args.image_list is not None)
        print(json.dumps({"machine": index, "machines": count, "converted": ann.summary(),
                          "left_out": len(report.left_out),
                          "problems": {k: f.count for k, f in report.problems.items()}}), flush=True)
        return 0
    except (UserError, ValueError) as err:
        print(f"convert: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
