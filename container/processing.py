"""``convert``: a dataset conversion as a SageMaker Processing job, in the training image itself.

    python -m container convert --to tfrecord [--from auto] [--split 0.8,0.2] [--names a,b] ...

SageMaker Processing mounts the job's input under ``/opt/ml/processing/input/<name>`` and uploads
``/opt/ml/processing/output/<name>`` when the container exits; ``/opt/ml/config/resourceconfig.json`` names
this machine and all of them. With N machines, machine i converts the images whose key (path relative to
the dataset root) hashes to i (``annotations.convert(shard=...)``): with a single-file format (COCO JSON,
a Ground Truth manifest, a CVAT XML) given whole to every machine, each converts its share and writes its
own files (``train-host1of4-00000-of-00002.tfrecord``), so no image is converted twice or missed and the
output folder, put together, is a channel ``launch_job`` takes as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from container.failure import EXIT_USER_ERROR, UserError

PROCESSING_DIR_ENV = "SM_PROCESSING_DIR"  # tests point it at a folder; SageMaker's is /opt/ml/processing
DEFAULT_PROCESSING_DIR = "/opt/ml/processing"
RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"


def host_shard(resource_config: Path) -> tuple[int, int]:
    """(this machine's index, how many machines) from Processing's resourceconfig.json; (0, 1) without one."""
    if not resource_config.is_file():
        return 0, 1
    config = json.loads(resource_config.read_text(encoding="utf-8"))
    hosts = sorted(config.get("hosts") or [config.get("current_host", "algo-1")])
    return hosts.index(config.get("current_host", hosts[0])), len(hosts)


def main(argv: list[str] | None = None) -> int:
    from container.annotations import FORMATS, WRITERS, convert

    base = Path(os.environ.get(PROCESSING_DIR_ENV) or DEFAULT_PROCESSING_DIR)
    parser = argparse.ArgumentParser(prog="convert", description=__doc__.split("\n")[0])
    parser.add_argument("--to", required=True, choices=sorted(WRITERS))
    parser.add_argument("--from", dest="fmt", default="auto", choices=["auto", *FORMATS])
    parser.add_argument("--input", type=Path, default=base / "input" / "data")
    parser.add_argument("--output", type=Path, default=base / "output" / "data")
    parser.add_argument("--resource-config", type=Path,
                        default=Path(os.environ.get("SM_RESOURCE_CONFIG") or RESOURCE_CONFIG))
    parser.add_argument("--split", dest="ratios", help="re-split: train,val[,test] ratios (seeded, per image key)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", help="class names in id order, comma-separated (needed when each machine "
                                        "sees part of a format without a class list: VOC, LabelMe, CSV)")
    parser.add_argument("--keep-crowd", action="store_true")
    parser.add_argument("--keep-difficult", action="store_true")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    try:
        index, count = host_shard(args.resource_config)
        ratios = [float(x) for x in args.ratios.split(",")] if args.ratios else None
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        print(f"convert: machine {index + 1} of {count}, {args.input} -> {args.output} as {args.to}", flush=True)
        ann, report = convert(args.input, args.to, args.output, fmt=args.fmt, ratios=ratios, seed=args.seed,
                              names=names, strict=args.strict, keep_crowd=args.keep_crowd,
                              keep_difficult=args.keep_difficult, shard=(index, count) if count > 1 else None,
                              log=lambda s: print(s, flush=True))
        print(json.dumps({"machine": index, "machines": count, "converted": ann.summary(),
                          "left_out": len(report.left_out)}), flush=True)
        return 0
    except (UserError, ValueError) as err:
        print(f"convert: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
