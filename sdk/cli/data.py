"""``python -m sdk data ...`` (and ``python -m sdk.data ...``): check, convert and split datasets from a shell,
over :mod:`sdk.data`'s functions; one of the subcommands of the one parser, :func:`sdk.cli.parser`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from container.annotations import FORMATS, WRITERS
from sdk._errors import ConfigurationError
from sdk.data import CASE_CLASH, case_clashes, check, convert, convert_on_sagemaker, detect, read
from sdk.jobs.s3 import _bar


def _ratios(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"ratios {text!r}: expected numbers like 0.8,0.2") from None


def add_commands(sub: Any) -> None:
    """``python -m sdk data check|convert|split`` (``python -m sdk.data ...`` is the same)."""
    import sdk.data

    data = sub.add_parser("data", help="check, convert or split a dataset (any annotation format; s3:// too)",
                          description=sdk.data.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = data.add_subparsers(dest="data_command", required=True)
    for name in ("check", "convert", "split"):
        cmd = commands.add_parser(name)
        cmd.set_defaults(func=run)
        cmd.add_argument("source", help="dataset folder or annotation file (convert: or an s3:// prefix)")
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
            cmd.add_argument("--out", required=True, help="a folder (or, from s3://, an s3:// prefix)")
            cmd.add_argument("--to", choices=sorted(WRITERS), default="yolo" if name == "convert" else None)
            cmd.add_argument("--seed", type=int, default=0)
            if name == "convert":
                cmd.add_argument("--split", dest="ratios", type=_ratios, help="re-split: train,val[,test] ratios")
                cmd.add_argument("--instance-count", type=int, default=1, help="s3:// source: machines of the "
                                 "Processing job (above 1: the source is listed, the images sharded between them)")
                cmd.add_argument("--instance-type", default="ml.m5.xlarge")
                cmd.add_argument("--image", help="s3:// source: the image URI to run convert in (TFRecords: tfod)")
                cmd.add_argument("--role", help="s3:// source: the SageMaker execution role (else $SM_DETECTORS_ROLE)")
            else:
                cmd.add_argument("--ratios", type=_ratios, default=[0.8, 0.2], help="default 0.8,0.2")


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if args.data_command == "convert" and str(args.source).startswith("s3://"):
        return _convert_on_sagemaker(args, names)
    args.source, args.out = Path(args.source), Path(args.out) if hasattr(args, "out") else None
    try:
        if args.data_command == "check":
            ann = read(args.source, args.fmt, names=names)
            with _bar(len(ann.items), "checking", unit="img") as bar:
                report = check(ann, names=names, verify_images=not args.no_verify_images,
                               images=not args.annotations_only, keep_crowd=args.keep_crowd,
                               keep_difficult=args.keep_difficult, progress=bar.update)
            for group in case_clashes(names or ann.names):
                report.add(CASE_CLASH, " / ".join(map(repr, group)), warning=True)
            if args.json:
                print(json.dumps({"dataset": ann.summary(), "report": report.to_dict()}, indent=2))
            else:
                print(json.dumps(ann.summary()))
                print(report.text())
            return 1 if args.strict and not report.ok else 0
        to = args.to or (detect(args.source) if args.fmt == "auto" else args.fmt)
        if to not in WRITERS:
            to = "yolo"
        with _bar(None, f"{args.data_command} -> {to}", unit="img") as bar:
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
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the paths given: a name too long, no permission, a file where a folder goes
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {err.strerror}: give a path this machine can read and write", file=sys.stderr)
        return 2


def _convert_on_sagemaker(args: argparse.Namespace, names: list[str] | None) -> int:
    from sdk._errors import SDKError

    if not args.image:
        print("error: converting s3:// data runs a SageMaker Processing job: pass --image <image URI>",
              file=sys.stderr)
        return 2
    try:
        info = convert_on_sagemaker(source=args.source, to=args.to or "yolo", out=args.out, image=args.image,
                                    role=args.role, instance_count=args.instance_count,
                                    instance_type=args.instance_type, fmt=args.fmt, ratios=args.ratios,
                                    seed=args.seed, names=names, keep_crowd=args.keep_crowd,
                                    keep_difficult=args.keep_difficult, annotations_only=args.annotations_only)
    except SDKError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigurationError) else 1
    print(json.dumps({"written": args.out, "as": args.to or "yolo", "job": info["ProcessingJobName"],
                      "status": info["ProcessingJobStatus"]}))
    return 0

