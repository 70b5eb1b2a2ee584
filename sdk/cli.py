"""``python -m sdk``: the SDK's functions from a shell (each command wraps one library call).

    python -m sdk launch --image ecr_image_fullname.txt --train data/ --hp epochs=50 [--dry-run]
    python -m sdk status JOB        python -m sdk logs JOB [--follow]     python -m sdk stop JOB
    python -m sdk fetch [JOB|latest] [--name-prefix yolo] [--tag team=cv] [--dest models/]
    python -m sdk describe [--image yolo] [--json]
    python -m sdk pipeline create NAME --data s3://bucket/incoming/ --image URI [--marker _READY] [--hp ...]
    python -m sdk pipeline start NAME [--param hp_epochs=10]
    python -m sdk tune --image URI --train s3://... --range lr0=0.0001:0.1:log --range optimizer=SGD,AdamW
    python -m sdk tune-best TUNING_JOB [--fetch] [--dest models/]
    python -m sdk leaderboard JOB|FOLDER ... [--local] [--images DIR] [--out leaderboard/]
    python -m sdk predict MODEL IMAGE|FOLDER|VIDEO [--track] [--out predictions/]

Add ``--local`` to status/logs/fetch/leaderboard for jobs run with ``--instance-type local``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from container.failure import UserError
from sdk._errors import ConfigurationError, JobFailedError, SDKError
from sdk._redact import redact


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
        print(json.dumps(redact({"CreateTrainingJob": plan.request, "uploads": uploads}), indent=2))
        return 0
    job = launch_job(wait=not args.no_wait, logs=not args.no_logs, engine=args.engine, **kwargs)
    print(json.dumps({"job": job.name, "status": job.status, "metrics": job.metrics()}, indent=2))
    return 0


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"--range bound {text!r} is not a number") from None


def _ranges(items: list[str]) -> dict[str, Any]:
    """``lr0=0.0001:0.1:log`` (a numeric range, scaling optional) or ``optimizer=SGD,AdamW`` (categorical)."""
    ranges: dict[str, Any] = {}
    for name, text in _pairs(items, "--range").items():
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise ConfigurationError(f"--range {name}={text}: expected LOW:HIGH or LOW:HIGH:SCALING")
            ranges[name] = (_number(parts[0]), _number(parts[1]), *parts[2:])
        elif "," in text:
            ranges[name] = [v.strip() for v in text.split(",") if v.strip()]
        else:
            raise ConfigurationError(f"--range {name}={text}: expected LOW:HIGH[:SCALING] or VALUE,VALUE,...")
    return ranges


def cmd_tune(args: argparse.Namespace) -> int:
    from sdk.tuning import plan_tuning, tune_job

    kwargs = {**_launch_kwargs(args), "ranges": _ranges(args.range), "objective": args.objective,
              "minimize": args.minimize, "max_jobs": args.max_jobs, "max_parallel": args.max_parallel,
              "strategy": args.strategy, "early_stopping": not args.no_early_stopping,
              "tuning_job_name": args.tuning_job_name}
    for key in ("job_name", "base_job_name", "checkpoints", "checkpoint_s3_uri"):
        kwargs.pop(key)
    if args.dry_run:
        print(json.dumps(redact({"CreateHyperParameterTuningJob": plan_tuning(**kwargs).request}), indent=2))
        return 0
    tuning = tune_job(wait=args.wait, **kwargs)
    print(json.dumps({"tuning_job": tuning.name, "status": tuning.status}, indent=2))
    return 0


def cmd_tune_best(args: argparse.Namespace) -> int:
    from sdk.tuning import TuningJob

    tuning = TuningJob(args.tuning_job)
    best = tuning.best()
    if args.fetch:
        best["model"] = str(tuning.fetch_model(dest=args.dest).directory)
    print(json.dumps(best, indent=2, default=str))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from sdk.pipeline import retrain_on_upload, start_pipeline

    if args.action == "start":
        arn = start_pipeline(args.name, **_pairs(args.param, "--param"))
        print(json.dumps({"pipeline": args.name, "execution": arn}, indent=2))
        return 0
    if not args.data:
        raise ConfigurationError("pipeline create needs --data s3://bucket/prefix/ (where uploads land)")
    kwargs = _launch_kwargs(args)
    for key in ("train", "job_name", "base_job_name", "checkpoints", "checkpoint_s3_uri"):
        kwargs.pop(key)
    trigger = retrain_on_upload(name=args.name, data=args.data, marker=args.marker, events_role=args.events_role,
                                **kwargs)
    print(json.dumps({"pipeline": trigger.pipeline_arn, "rule": trigger.rule_arn, "role": trigger.role_arn,
                      "event_pattern": trigger.event_pattern,
                      "parameters": {p["Name"]: p["DefaultValue"] for p in trigger.definition["Parameters"]}},
                     indent=2))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from sdk.leaderboard import leaderboard

    board = leaderboard(args.sources, local=args.local, images=args.images, count=args.count, out=args.out,
                        timed=not args.no_timing)
    print(board.text())
    print(f"\n{board.csv}" + (f"\n{board.png}" if board.png else ""))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from sdk.predict import predict

    result = predict(args.model, args.source, out=args.out, track=args.track, tracker=args.tracker, conf=args.conf,
                     imgsz=args.imgsz)
    boxes = sum(len(f["detections"]) for f in result.frames)
    print(json.dumps({"frames": len(result.frames), "detections": boxes, "tracks": len(result.tracks),
                      "outputs": [str(p) for p in result.outputs], "json": str(result.json_path)}, indent=2))
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


def _job_options(cmd: argparse.ArgumentParser) -> None:
    """The options of plan_job, shared by launch, tune and pipeline create."""
    cmd.add_argument("--image", help="ECR image URI, the ecr_image_fullname.txt build-and-push.sh wrote, "
                                        "or yolo/tfod with --instance-type local (default: ./ecr_image_fullname.txt)")
    cmd.add_argument("--kind", choices=["yolo", "tfod"], help="which image, when its name does not say")
    cmd.add_argument("--train", help="train channel: local folder or s3:// URI")
    cmd.add_argument("--val", help="val channel: local folder or s3:// URI")
    cmd.add_argument("--channel", action="append", default=[], metavar="NAME=SOURCE", help="any other channel")
    cmd.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="one hyperparameter")
    cmd.add_argument("--hyperparameters", metavar="FILE", help="YAML or JSON file of hyperparameters")
    cmd.add_argument("--role", help="SageMaker execution role ARN (default: $SM_DETECTORS_ROLE)")
    cmd.add_argument("--instance-type", default="ml.g5.xlarge", help="default %(default)s; 'local' runs here")
    cmd.add_argument("--instance-count", type=int, default=1)
    cmd.add_argument("--volume-size", type=int, default=50, help="GB (default %(default)s)")
    cmd.add_argument("--spot", action="store_true", help="managed spot training (resumes from checkpoints)")
    cmd.add_argument("--max-run", type=int, default=24 * 3600, help="seconds (default %(default)s)")
    cmd.add_argument("--max-wait", type=int, help="seconds, spot only (default 2 x max-run)")
    cmd.add_argument("--output-path", help="s3:// prefix for model.tar.gz (default: the SageMaker default bucket)")
    cmd.add_argument("--checkpoint-s3-uri", help="default: <output-path>/<job>/checkpoints/")
    cmd.add_argument("--no-checkpoints", action="store_true", help="do not sync checkpoints to S3")
    cmd.add_argument("--tensorboard", nargs="?", const=True, help="sync TensorBoard logs (optionally to this URI)")
    cmd.add_argument("--input-mode", action="append", default=[], metavar="CHANNEL=MODE", help="File or FastFile")
    cmd.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--job-name")
    cmd.add_argument("--base-job-name")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdk", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    launch = sub.add_parser("launch", help="validate, upload local channels, create a training job, follow it")
    _job_options(launch)
    launch.add_argument("--engine", help="docker or podman, for --instance-type local with an image URI")
    launch.add_argument("--no-wait", action="store_true", help="return once the job is created")
    launch.add_argument("--no-logs", action="store_true", help="while waiting, print status changes only")
    launch.add_argument("--dry-run", action="store_true", help="print the CreateTrainingJob request (environment values and secrets masked); create nothing")
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
    fetch.add_argument("--dest", help="folder for the model: new, empty, or an earlier fetch of the same model; "
                       "never one holding other files (default ./models/<job>)")
    fetch.add_argument("--local", action="store_true", help="a local-mode job")
    fetch.set_defaults(func=cmd_fetch)

    describe = sub.add_parser("describe", help="an image's channels, hyperparameters and metrics")
    describe.add_argument("--image", default="yolo", choices=["yolo", "tfod"])
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(func=cmd_describe)

    pipeline = sub.add_parser("pipeline", help="retrain on upload: a SageMaker Pipeline started by an EventBridge rule")
    pipeline.add_argument("action", choices=["create", "start"])
    pipeline.add_argument("name", help="pipeline name")
    pipeline.add_argument("--data", help="create: the s3:// prefix uploads land under (the train channel)")
    pipeline.add_argument("--marker", help="create: start only when this file lands under --data (e.g. _READY)")
    pipeline.add_argument("--events-role", help="create: the role EventBridge assumes (default: one is created)")
    pipeline.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="start: a pipeline parameter (DataPrefix, InstanceType, hp_<name>)")
    _job_options(pipeline)
    pipeline.set_defaults(func=cmd_pipeline)

    tune = sub.add_parser("tune", help="a hyperparameter tuning job over the image's hyperparameters")
    _job_options(tune)
    tune.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH[:SCALING] | NAME=A,B,...",
                      help="a range to search (scaling: auto, linear, log, reverse-log)")
    tune.add_argument("--objective", help="metric to optimize (default: the image's, mAP)")
    tune.add_argument("--minimize", action="store_true")
    tune.add_argument("--max-jobs", type=int, default=10)
    tune.add_argument("--max-parallel", type=int, default=2)
    tune.add_argument("--strategy", default="Bayesian", choices=["Bayesian", "Random", "Hyperband", "Grid"])
    tune.add_argument("--no-early-stopping", action="store_true")
    tune.add_argument("--tuning-job-name")
    tune.add_argument("--wait", action="store_true", help="wait for the tuning job to end")
    tune.add_argument("--dry-run", action="store_true", help="print the request (secrets masked); create nothing")
    tune.set_defaults(func=cmd_tune)

    best = sub.add_parser("tune-best", help="the best training job of a tuning job (and its model)")
    best.add_argument("tuning_job")
    best.add_argument("--fetch", action="store_true", help="download and unpack its model")
    best.add_argument("--dest", help="folder (default ./models/<job>)")
    best.set_defaults(func=cmd_tune_best)

    board = sub.add_parser("leaderboard", help="compare models: configuration, mAP, speed; a table and a PNG")
    board.add_argument("sources", nargs="+", help="job names or model folders")
    board.add_argument("--local", action="store_true", help="job names are local-mode jobs")
    board.add_argument("--images", help="images to time the models on (default: generated ones)")
    board.add_argument("--count", type=int, default=10, help="images to time on (default %(default)s)")
    board.add_argument("--out", default="leaderboard", help="folder for leaderboard.csv/.json/.png")
    board.add_argument("--no-timing", action="store_true", help="read metrics only; no speed, no plot")
    board.set_defaults(func=cmd_leaderboard)

    pred = sub.add_parser("predict", help="run a model on images, a folder or a video; --track follows objects")
    pred.add_argument("model", help="a model folder (fetch's --dest), best.pt or .tflite")
    pred.add_argument("source", help="an image, a video or a folder of them")
    pred.add_argument("--out", default="predictions", help="folder for annotated files and detections.json")
    pred.add_argument("--track", action="store_true", help="follow objects across frames (YOLO models)")
    pred.add_argument("--tracker", default="bytetrack", help="bytetrack, botsort or a tracker YAML")
    pred.add_argument("--conf", type=float, default=0.25, help="lowest score kept (default %(default)s)")
    pred.add_argument("--imgsz", type=int, help="inference size (default: the model's)")
    pred.set_defaults(func=cmd_predict)
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
