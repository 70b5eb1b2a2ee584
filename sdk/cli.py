"""``python -m sdk``: the SDK's functions from a shell (each command wraps one library call).

    python -m sdk launch --image ecr_image_fullname.txt --train data/ --hp epochs=50 [--dry-run]
    python -m sdk status JOB        python -m sdk logs JOB [--follow]     python -m sdk stop JOB
    python -m sdk fetch [JOB|latest] [--name-prefix yolo] [--tag team=cv] [--dest models/]
    python -m sdk describe [--image yolo] [--json]

Add ``--local`` to status/logs/fetch for jobs run with ``--instance-type local``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from container.failure import UserError
from sdk._errors import ConfigurationError, JobFailedError, SDKError


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    hps: dict[str, Any] = {}
    if args.hyperparameters:
        import yaml

        path = Path(args.hyperparameters)
        if not path.is_file():
            raise ConfigurationError(f"--hyperparameters {path}: no such file")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
        if not isinstance(data, dict):
            raise ConfigurationError(f"--hyperparameters {path}: expected a mapping of name: value")
        hps.update(data)
    hps.update(_pairs(args.hp, "--hp"))
    return hps


def _launch_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "image": args.image, "kind": args.kind, "train": args.train, "val": args.val,
        "channels": _pairs(args.channel, "--channel"), "hyperparameters": _hyperparameters(args), "role": args.role,
        "instance_type": args.instance_type, "instance_count": args.instance_count,
        "volume_size_gb": args.volume_size, "spot": args.spot, "max_run": args.max_run, "max_wait": args.max_wait,
        "output_path": args.output_path, "checkpoint_s3_uri": args.checkpoint_s3_uri,
        "checkpoints": not args.no_checkpoints, "tensorboard": args.tensorboard or False,
        "input_modes": _pairs(args.input_mode, "--input-mode"), "environment": _pairs(args.env, "--env"),
        "tags": _pairs(args.tag, "--tag"), "job_name": args.job_name, "base_job_name": args.base_job_name,
    }


def cmd_launch(args: argparse.Namespace) -> int:
    from sdk._launch import launch_job, plan_job

    kwargs = _launch_kwargs(args)
    if args.dry_run:
        plan = plan_job(**kwargs)
        uploads = {ch: {"from": str(src.root), "to": src.uri, "files": len(src.files), "bytes": src.size}
                   for ch, src in plan.uploads.items()}
        print(json.dumps({"CreateTrainingJob": plan.request, "uploads": uploads}, indent=2))
        return 0
    job = launch_job(wait=not args.no_wait, logs=not args.no_logs, engine=args.engine, **kwargs)
    print(json.dumps({"job": job.name, "status": job.status, "metrics": job.metrics()}, indent=2))
    return 0


def _job(args: argparse.Namespace) -> Any:
    from sdk._job import Job, LocalJob

    return LocalJob.attach(args.job) if args.local else Job.attach(args.job)


def cmd_status(args: argparse.Namespace) -> int:
    info = _job(args).describe()
    out = {"job": info["TrainingJobName"], "status": info["TrainingJobStatus"],
           "secondary_status": info.get("SecondaryStatus"),
           "metrics": {m["MetricName"]: m["Value"] for m in info.get("FinalMetricDataList", [])},
           "model": info.get("ModelArtifacts", {}).get("S3ModelArtifacts")}
    if info.get("FailureReason"):
        out["failure_reason"] = info["FailureReason"]
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    job = _job(args)
    if args.follow:
        job.wait(logs=True)
    else:
        job.logs(out=sys.stdout)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    _job(args).stop()
    print(f"stop requested for {args.job}: the trainer saves a checkpoint, then the job ends Stopped")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from sdk._fetch import fetch_model

    model = fetch_model(args.job, name_prefix=args.name_prefix, tags=_pairs(args.tag, "--tag") or None,
                        dest=args.dest, local=args.local)
    print(json.dumps({"job": model.job_name, "directory": str(model.directory), "best": model.best,
                      "last": model.last, "exports": model.exports, "metrics_file": model.metrics_file,
                      "final": model.metrics.get("final", {})}, indent=2, default=str))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from container.cli import describe  # the image's own `describe`: the same text as `docker run IMAGE`

    return describe(["--image", args.image, *(["--json"] if args.json else [])])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdk", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    launch = sub.add_parser("launch", help="validate, upload local channels, create a training job, follow it")
    launch.add_argument("--image", help="ECR image URI, the ecr_image_fullname.txt build-and-push.sh wrote, "
                                        "or yolo/tfod with --instance-type local (default: ./ecr_image_fullname.txt)")
    launch.add_argument("--kind", choices=["yolo", "tfod"], help="which image, when its name does not say")
    launch.add_argument("--train", help="train channel: local folder or s3:// URI")
    launch.add_argument("--val", help="val channel: local folder or s3:// URI")
    launch.add_argument("--channel", action="append", default=[], metavar="NAME=SOURCE", help="any other channel")
    launch.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="one hyperparameter")
    launch.add_argument("--hyperparameters", metavar="FILE", help="YAML or JSON file of hyperparameters")
    launch.add_argument("--role", help="SageMaker execution role ARN (default: $SM_DETECTORS_ROLE)")
    launch.add_argument("--instance-type", default="ml.g5.xlarge", help="default %(default)s; 'local' runs here")
    launch.add_argument("--instance-count", type=int, default=1)
    launch.add_argument("--volume-size", type=int, default=50, help="GB (default %(default)s)")
    launch.add_argument("--spot", action="store_true", help="managed spot training (resumes from checkpoints)")
    launch.add_argument("--max-run", type=int, default=24 * 3600, help="seconds (default %(default)s)")
    launch.add_argument("--max-wait", type=int, help="seconds, spot only (default 2 x max-run)")
    launch.add_argument("--output-path", help="s3:// prefix for model.tar.gz (default: the SageMaker default bucket)")
    launch.add_argument("--checkpoint-s3-uri", help="default: <output-path>/<job>/checkpoints/")
    launch.add_argument("--no-checkpoints", action="store_true", help="do not sync checkpoints to S3")
    launch.add_argument("--tensorboard", nargs="?", const=True, help="sync TensorBoard logs (optionally to this URI)")
    launch.add_argument("--input-mode", action="append", default=[], metavar="CHANNEL=MODE", help="File or FastFile")
    launch.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    launch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    launch.add_argument("--job-name")
    launch.add_argument("--base-job-name")
    launch.add_argument("--engine", help="docker or podman, for --instance-type local with an image URI")
    launch.add_argument("--no-wait", action="store_true", help="return once the job is created")
    launch.add_argument("--no-logs", action="store_true", help="while waiting, print status changes only")
    launch.add_argument("--dry-run", action="store_true", help="print the CreateTrainingJob request; create nothing")
    launch.set_defaults(func=cmd_launch)

    for name, func, helptext in (("status", cmd_status, "a job's status, final metrics, failure reason"),
                                 ("logs", cmd_logs, "a job's log"), ("stop", cmd_stop, "stop a job (SIGTERM)")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("job")
        cmd.add_argument("--local", action="store_true", help="a local-mode job")
        if name == "logs":
            cmd.add_argument("--follow", action="store_true", help="follow until the job ends")
        cmd.set_defaults(func=func)

    fetch = sub.add_parser("fetch", help="download and unpack a job's model.tar.gz")
    fetch.add_argument("job", nargs="?", default="latest", help="job name, or 'latest' (default)")
    fetch.add_argument("--name-prefix", help="with latest: newest Completed job whose name starts so")
    fetch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="with latest: must carry it")
    fetch.add_argument("--dest", help="folder (default ./models/<job>)")
    fetch.add_argument("--local", action="store_true", help="a local-mode job")
    fetch.set_defaults(func=cmd_fetch)

    describe = sub.add_parser("describe", help="an image's channels, hyperparameters and metrics")
    describe.add_argument("--image", default="yolo", choices=["yolo", "tfod"])
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(func=cmd_describe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except JobFailedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ConfigurationError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SDKError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (a created job keeps running; `python -m sdk stop JOB` stops it)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
