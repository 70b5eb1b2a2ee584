"""Datasets in any format, from a notebook or a shell: convert, split, check.

    python -m sdk.data check  labelimg-export/ [--strict] [--json]
    python -m sdk.data convert labelimg-export/ --to yolo --out data/ [--split 0.8,0.2] [--seed 0]
    python -m sdk.data convert coco/ --to tfrecord --out records/        # + label_map.pbtxt/.csv
    python -m sdk.data split  data/ --out data-split/ --ratios 0.8,0.1,0.1 [--to yolo]

Reads YOLO trees (boxes or polygons), Pascal VOC XML (labelImg), CVAT for images 1.1 XML, LabelMe JSON,
COCO JSON, Ground Truth output manifests and CSV (``filename,width,height,class,xmin,ymin,xmax,ymax``);
the format is detected. Writes YOLO, COCO, sharded TFRecords (TF Object Detection keys) with label maps,
VOC, CSV, Ground Truth manifests. Crowd (COCO) and difficult (VOC) boxes are left out unless
``--keep-crowd``/``--keep-difficult``; images with problems are left out and counted (``--strict``: fail).
See docs/datasets.md. In a notebook: ``from sdk.data import read, check, convert, split``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from container.annotations import FORMATS, WRITERS, Annotations, Report, check, convert, detect, read, split
from container.failure import UserError
from sdk._s3 import _bar

__all__ = ["Annotations", "Report", "check", "convert", "detect", "read", "split"]


def _ratios(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"ratios {text!r}: expected numbers like 0.8,0.2") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdk.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("check", "convert", "split"):
        cmd = sub.add_parser(name)
        cmd.add_argument("source", type=Path, help="dataset folder or annotation file")
        cmd.add_argument("--from", dest="fmt", default="auto", choices=["auto", *FORMATS])
        cmd.add_argument("--names", help="class names in id order, comma-separated (else from the data)")
        cmd.add_argument("--strict", action="store_true", help="any problem is fatal")
        cmd.add_argument("--no-verify-images", action="store_true", help="trust the images (faster)")
        cmd.add_argument("--keep-crowd", action="store_true", help="train on COCO iscrowd boxes too")
        cmd.add_argument("--keep-difficult", action="store_true", help="train on VOC difficult boxes too")
        cmd.add_argument("--annotations-only", action="store_true",
                         help="the images are elsewhere (e.g. S3): check and convert the annotations alone")
        if name == "check":
            cmd.add_argument("--json", action="store_true")
        else:
            cmd.add_argument("--out", type=Path, required=True)
            cmd.add_argument("--to", choices=sorted(WRITERS), default="yolo" if name == "convert" else None)
            cmd.add_argument("--seed", type=int, default=0)
            if name == "convert":
                cmd.add_argument("--split", dest="ratios", type=_ratios, help="re-split: train,val[,test] ratios")
            else:
                cmd.add_argument("--ratios", type=_ratios, default=[0.8, 0.2], help="default 0.8,0.2")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    try:
        if args.command == "check":
            ann = read(args.source, args.fmt, names=names)
            with _bar(len(ann.items), "checking", unit="img") as bar:
                report = check(ann, names=names, verify_images=not args.no_verify_images,
                               images=not args.annotations_only, keep_crowd=args.keep_crowd,
                               keep_difficult=args.keep_difficult, progress=bar.update)
            if args.json:
                print(json.dumps({"dataset": ann.summary(), "report": report.to_dict()}, indent=2))
            else:
                print(json.dumps(ann.summary()))
                print(report.text())
            return 1 if args.strict and not report.ok else 0
        to = args.to or (detect(args.source) if args.fmt == "auto" else args.fmt)
        if to not in WRITERS:
            to = "yolo"
        with _bar(None, f"{args.command} -> {to}", unit="img") as bar:
            def progress(n: int) -> None:
                bar.update(n)

            ann, report = convert(args.source, to, args.out, fmt=args.fmt, ratios=args.ratios, seed=args.seed,
                                  names=names, strict=args.strict, verify_images=not args.no_verify_images,
                                  images=not args.annotations_only, keep_crowd=args.keep_crowd,
                                  keep_difficult=args.keep_difficult, progress=progress,
                                  log=lambda s: print(s, file=sys.stderr))
        print(json.dumps({"written": str(args.out), "as": to, "source": ann.summary(),
                          "left_out": len(report.left_out), "without_labels": report.without_labels}))
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
