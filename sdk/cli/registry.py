"""``python -m sdk register|models|approve|reject`` (registered by ``sdk.cli.parser``); ``deploy --group`` is in
:mod:`sdk.cli.deploy`.

    python -m sdk register JOB|latest --group pcb-detectors [--weights onnx] [--approval Approved]
    python -m sdk models pcb-detectors [--status Approved] [--json]
    python -m sdk approve ARN|GROUP/VERSION [--note "beats v3 on the night set"]
    python -m sdk reject ARN|GROUP/VERSION --note "misses small defects"
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdk._errors import ConfigurationError


def _summary(model: Any) -> dict[str, Any]:
    return {"arn": model.arn, "group": model.group, "version": model.version, "status": model.status,
            "metrics": model.metrics, "job": model.job_name, "created": model.created, "note": model.note or None,
            "model_data": model.model_data}


def _tags(items: list[str]) -> dict[str, str] | None:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--tag {item!r}: expected KEY=VALUE")
        tags[key] = value
    return tags or None


def cmd_register(args: argparse.Namespace) -> int:
    from sdk.registry import register

    model = register(args.job, group=args.group, approval=args.approval, description=args.description,
                     weights=args.weights, tags=_tags(args.tag))
    print(json.dumps(_summary(model), indent=2, default=str))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from sdk.registry import registered_models

    models = registered_models(args.group, status=args.status)
    if args.json:
        print(json.dumps([_summary(m) for m in models], indent=2, default=str))
    elif models:
        print(models.text())
    else:
        print(f"{args.group} has no versions" + (f" {args.status}" if args.status else ""))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from sdk.registry import approve, reject

    model = approve(args.model, args.note) if args.command == "approve" else reject(args.model, args.note)
    print(json.dumps(_summary(model), indent=2, default=str))
    return 0


def add_commands(sub: Any) -> None:
    reg = sub.add_parser("register", help="register a Completed job's model as a new version of a Model Registry "
                         "group (created if new)")
    reg.add_argument("job", nargs="?", default="latest", help="training job name, or 'latest' (default)")
    reg.add_argument("--group", required=True, help="model package group, e.g. pcb-detectors")
    reg.add_argument("--approval", default="PendingManualApproval",
                     choices=["PendingManualApproval", "Approved", "Rejected"], help="default %(default)s")
    reg.add_argument("--description", help="shown in the console's registry page")
    reg.add_argument("--weights", help="YOLO: what the version serves, best.pt (default) or onnx")
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag on the version")
    reg.set_defaults(func=cmd_register)

    models = sub.add_parser("models", help="a group's registered versions, newest first")
    models.add_argument("group")
    models.add_argument("--status", choices=["PendingManualApproval", "Approved", "Rejected"])
    models.add_argument("--json", action="store_true", help="JSON instead of a table")
    models.set_defaults(func=cmd_models)

    for name, helptext in (("approve", "approve a registered version (deploy --group serves the latest Approved)"),
                           ("reject", "reject a registered version, saying why")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("model", help="the version's model package ARN, or GROUP/VERSION like pcb-detectors/3")
        cmd.add_argument("--note", required=name == "reject", help="why (kept as the version's ApprovalDescription)")
        cmd.set_defaults(func=cmd_approve)
