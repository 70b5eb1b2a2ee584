"""``python -m sdk deploy|invoke|undeploy|transform`` (registered by ``sdk.cli.parser``).

    python -m sdk deploy JOB|latest|s3://.../model.tar.gz [--instance-type TYPE] [--serverless 4096:5]
    python -m sdk deploy --group pcb-detectors [...]                      # its latest Approved version
    python -m sdk deploy FOLDER --instance-type local [--port 8080]      # serves until Ctrl-C
    python -m sdk invoke ENDPOINT IMAGE|FOLDER ... [--conf 0.4] [--iou 0.5] [--max-det 50] [--url http://...]
    python -m sdk deploy JOB --async-output s3://bucket/answers/ [--autoscaling 0:4]   # asynchronous, scales to 0
    python -m sdk invoke ENDPOINT VIDEO|IMAGE|s3://... --async [--track] [--timeout 3600] [--no-wait]
    python -m sdk undeploy ENDPOINT
    python -m sdk transform JOB s3://bucket/in/ s3://bucket/out/ [--content-type application/jsonlines]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sdk._errors import ConfigurationError
from sdk.jobs.model_registry import DEFAULT_INSTANCE_TYPE


def _serverless(text: str | None) -> Any:
    if not text:
        return None
    from sdk.serving import ServerlessConfig

    memory, _, concurrency = text.partition(":")
    try:
        return ServerlessConfig(memory=int(memory), concurrency=int(concurrency or 5))
    except ValueError:
        raise ConfigurationError(f"--serverless takes MEMORY_MB[:CONCURRENCY], like 4096:5; got {text!r}") from None


def _model_or_group(args: argparse.Namespace) -> Any:
    if args.model is None and args.group is None:
        raise ConfigurationError("deploy what? Give a training job name, 'latest', s3://.../model.tar.gz, or "
                                 "--group G (its latest Approved version)")
    return args.model if args.model is not None else "latest"


def cmd_deploy(args: argparse.Namespace) -> int:
    from sdk.serving import LocalEndpoint, deploy

    local = args.instance_type == "local"
    try:
        endpoint = deploy(_model_or_group(args), instance_type=args.instance_type, instance_count=args.instance_count,
                          serverless=_serverless(args.serverless), image=args.image, role=args.role, name=args.name,
                          weights=args.weights, engine=args.engine, port=args.port, **_production(args),
                          group=args.group)
    except KeyboardInterrupt:  # the local server is stopped by LocalServer.start on its way out
        raise KeyboardInterrupt(
            "the local endpoint was starting; its server is stopped, nothing is left serving" if local else
            "the endpoint may still be being created; `python -m sdk undeploy NAME` deletes it") from None
    if isinstance(endpoint, LocalEndpoint):
        print(json.dumps({"endpoint": endpoint.name, "url": endpoint.url}), flush=True)
        print(f"Ctrl-C stops the local endpoint {endpoint.name}", file=sys.stderr, flush=True)
        try:
            if endpoint.server.process is not None:
                endpoint.server.process.wait()
        except KeyboardInterrupt:
            endpoint.delete()
            raise KeyboardInterrupt(f"local endpoint {endpoint.name} stopped; {endpoint.url} no longer serves") \
                from None
        finally:
            endpoint.delete()  # the server ended, or this process does: nothing of it stays
        code = endpoint.server.process.returncode if endpoint.server.process is not None else 0
        print(f"the local endpoint's server exited (code {code}); its log: {endpoint.server.log_path}",
              file=sys.stderr)
        return 1
    print(json.dumps({"endpoint": endpoint.name, "status": endpoint.status}))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from sdk.serving.hosting import CUSTOM_ATTRIBUTES, custom_attributes, decode_answer, encode_inputs, http

    if args.asynchronous:
        return _invoke_async(args)
    images = args.images[0] if len(args.images) == 1 else args.images
    if args.url:  # a local endpoint (deploy --instance-type local) or any server of this contract
        body, content_type, _ = encode_inputs(images)
        headers = {"Content-Type": content_type}
        attributes = custom_attributes(args.conf, args.iou, args.max_det)
        if attributes:
            headers[CUSTOM_ATTRIBUTES] = attributes
        result = decode_answer(*http(args.url.rstrip("/") + "/invocations", body=body, headers=headers))
    else:
        from sdk.serving import Endpoint

        result = Endpoint(args.endpoint).predict(images, conf=args.conf, iou=args.iou, max_det=args.max_det)
    print(json.dumps(result, indent=2))
    return 0


def _invoke_async(args: argparse.Namespace) -> int:
    from sdk.serving import Endpoint

    if len(args.images) != 1 or args.url:
        raise ConfigurationError("--async takes one image or video (a file or an s3:// URI) and a SageMaker "
                                 "endpoint, not --url")
    pending = Endpoint(args.endpoint).predict_async(args.images[0], conf=args.conf, iou=args.iou,
                                                    max_det=args.max_det, track=args.track, tracker=args.tracker)
    if args.no_wait:
        print(json.dumps({"inference_id": pending.inference_id, "input": pending.input, "output": pending.output,
                          "failure": pending.failure}, indent=2))
        return 0
    print(f"waiting for {pending.output}", file=sys.stderr, flush=True)
    print(json.dumps(pending.result(timeout=args.timeout), indent=2))
    return 0


def _production(args: argparse.Namespace) -> dict[str, Any]:
    """deploy's asynchronous= and autoscaling= from --async-output, --async-failures and --autoscaling."""
    from sdk.serving import AsyncConfig, Autoscaling

    extra: dict[str, Any] = {}
    if args.async_output:
        extra["asynchronous"] = AsyncConfig(output=args.async_output, failures=args.async_failures)
    elif args.async_failures:
        raise ConfigurationError("--async-failures goes with --async-output (the answers' S3 prefix)")
    if args.autoscaling:
        parts = args.autoscaling.split(":")
        try:
            low, high = int(parts[0]), int(parts[1])
            target = float(parts[2]) if len(parts) > 2 else None
        except (ValueError, IndexError):
            raise ConfigurationError(f"--autoscaling takes MIN:MAX[:TARGET], like 1:4:70; got {args.autoscaling!r}") \
                from None
        extra["autoscaling"] = Autoscaling(min=low, max=high, target=target)
    return extra


def cmd_undeploy(args: argparse.Namespace) -> int:
    from sdk.serving import Endpoint

    print(json.dumps({"deleted": Endpoint.attach(args.endpoint).delete()}, indent=2))
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    from sdk.serving import transform

    job = transform(args.model, args.input, args.output, instance_type=args.instance_type,
                    instance_count=args.instance_count, content_type=args.content_type, image=args.image,
                    role=args.role, name=args.name, weights=args.weights, wait=not args.no_wait)
    print(json.dumps({"transform_job": job.name, "status": job.status, "output": args.output}))
    return 0


def _model_options(cmd: argparse.ArgumentParser, *, optional: bool = False) -> None:
    cmd.add_argument("model", nargs="?" if optional else None,
                     help="a training job name, 'latest', or s3://.../model.tar.gz (with --image)")
    cmd.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE, help="default %(default)s")
    cmd.add_argument("--instance-count", type=int, default=1)
    cmd.add_argument("--image", help="the image URI (default: the training job's)")
    cmd.add_argument("--role", help="execution role ARN (default: the training job's, else $SM_DETECTORS_ROLE)")
    cmd.add_argument("--name", help="endpoint / transform job name (default: from the job's)")
    cmd.add_argument("--weights", help="YOLO: best.pt (default) or onnx")


def add_commands(sub: Any) -> None:
    dep = sub.add_parser("deploy", help="create an endpoint (or serverless, or --instance-type local) for a job")
    _model_options(dep, optional=True)
    dep.add_argument("--group", help="instead of a model: the latest Approved version of this Model Registry group")
    dep.add_argument("--serverless", metavar="MEMORY_MB[:CONCURRENCY]", help="a serverless endpoint, e.g. 4096:5")
    dep.add_argument("--engine", help="docker or podman, for --instance-type local with --image")
    dep.add_argument("--port", type=int, help="--instance-type local: the port (default: a free one)")
    dep.add_argument("--async-output", metavar="S3_PREFIX",
                     help="an asynchronous endpoint (requests and answers in S3, an hour each): where answers go")
    dep.add_argument("--async-failures", metavar="S3_PREFIX", help="where failures go (default: <output>/failures/)")
    dep.add_argument("--autoscaling", metavar="MIN:MAX[:TARGET]",
                     help="Application Auto Scaling: instances, and invocations per instance a minute (70), or "
                          "with --async-output queued requests per instance (5); MIN 0 only with --async-output")
    dep.set_defaults(func=cmd_deploy)

    inv = sub.add_parser("invoke", help="detections from an endpoint for images (JSON)")
    inv.add_argument("endpoint", help="endpoint name (ignored with --url)")
    inv.add_argument("images", nargs="+", help="image files or a folder")
    inv.add_argument("--url", help="a server's URL instead of a SageMaker endpoint (deploy --instance-type local)")
    inv.add_argument("--conf", type=float)
    inv.add_argument("--iou", type=float)
    inv.add_argument("--max-det", type=int)
    inv.add_argument("--async", dest="asynchronous", action="store_true",
                     help="an asynchronous endpoint: the input goes through S3 and the answer is waited for")
    inv.add_argument("--track", action="store_true", help="--async with a video: track ids (ultralytics' trackers)")
    inv.add_argument("--tracker", help="with --track: bytetrack (default), botsort, or a NAME.yaml in the model")
    inv.add_argument("--timeout", type=float, default=3600, help="--async: seconds to wait (default %(default)s)")
    inv.add_argument("--no-wait", action="store_true", help="--async: print where the answer will be, and return")
    inv.set_defaults(func=cmd_invoke)

    und = sub.add_parser("undeploy", help="delete an endpoint, and its config and model if deploy made them")
    und.add_argument("endpoint")
    und.set_defaults(func=cmd_undeploy)

    tra = sub.add_parser("transform", help="batch transform: every object under an S3 prefix through the model")
    _model_options(tra)
    tra.add_argument("input", help="s3:// prefix of the images (or of JSON lines)")
    tra.add_argument("output", help="s3:// prefix for <key>.out")
    tra.add_argument("--content-type", default="application/x-image",
                     help="application/x-image (default), image/jpeg, image/png, application/jsonlines")
    tra.add_argument("--no-wait", action="store_true", help="return once the transform job is created")
    tra.set_defaults(func=cmd_transform)


if __name__ == "__main__":  # pragma: no cover - use python -m sdk
    sys.exit("use: python -m sdk deploy|invoke|undeploy|transform")
