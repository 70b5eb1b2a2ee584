"""Entry points: ``train`` and ``serve`` (what SageMaker runs) and ``describe`` (what a person runs).

Which image this is comes from ``TRAINER_IMAGE`` (set in each Dockerfile), default ``yolo``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from container import tracking
from container.contract import Environment, Layout
from container.failure import (
    EXIT_ERROR,
    EXIT_STOPPED,
    EXIT_USER_ERROR,
    TrainingStopped,
    UserError,
    shorten,
    write_failure,
)
from container.schema import Schema
from container.serving import variant
from container.signals import GracefulStop
from container.toolkit_env import sm_env_vars

IMAGE_ENV = "TRAINER_IMAGE"


def image_name() -> str:
    return os.environ.get(IMAGE_ENV, "yolo")


def train(argv: list[str] | None = None) -> int:
    """Run the image's trainer against the SageMaker layout; exit non-zero with a failure file on error."""
    stop = GracefulStop().install()
    env = None
    try:
        env = Environment.from_base_dir()
        if variant.serve_only():
            raise variant.refuse("training")
        _refuse_nul_bytes(env)
        os.environ.update(sm_env_vars(env))  # scripts written for AWS's framework images read these
        schema = Schema.load(image_name())
        module_name, _, func = schema.trainer.partition(":")
        trainer = getattr(importlib.import_module(module_name), func)
        print(f"{schema.title}: job {env.job_name or '(local)'}, host {env.current_host}, base {env.base_dir}, "
              f"channels {', '.join(env.channels) or 'none'}", flush=True)
        tracking.start(env, image_name())  # MLflow, when MLFLOW_TRACKING_URI is set (docs/mlflow.md)
        trainer(env, schema, stop)
        tracking.log_model_folder(env.model_dir, env.hyperparameters)
    except TrainingStopped as err:
        tracking.stop("KILLED")  # a restart with the same checkpoint location sets it running again
        print(f"\n{err}. A new job with the same checkpoint location resumes from it.", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except UserError as err:
        tracking.stop("FAILED")
        write_failure(_failure_path(env), err)
        return EXIT_USER_ERROR
    except Exception as err:
        tracking.stop("FAILED")
        write_failure(_failure_path(env), err)
        return EXIT_ERROR
    finally:
        stop.uninstall()
    tracking.stop("FINISHED")
    print("training finished", flush=True)
    return 0


def _refuse_nul_bytes(env: Environment) -> None:
    """A NUL byte cannot pass through an environment variable (SM_HP_*) or a C library: a user error."""
    for key, value in env.hyperparameters_raw.items():
        if "\x00" in f"{key}{value}":
            shown = shorten(str(value).replace("\x00", "\\0"), 60)
            raise UserError(f"hyperparameter {shorten(key.replace(chr(0), '?'), 60)!r} holds a NUL byte ({shown}): "
                            "remove it")


def _failure_path(env: Environment | None) -> Path:
    """The job's failure file; before the layout could be read, where ``$SAGEMAKER_BASE_DIR`` (or /opt/ml) puts it."""
    return env.failure_file if env is not None else Layout.from_environ().failure


def describe(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="describe", description="Print this image's hyperparameters, "
                                     "channels and the metric definitions to paste into the SageMaker console.")
    parser.add_argument("--json", action="store_true", help="machine-readable schema")
    parser.add_argument("--markdown", action="store_true", help="the reference tables of docs/reference/")
    parser.add_argument("--image", default=image_name(), help="image schema to show (default: %(default)s)")
    args = parser.parse_args(argv)
    if variant.serve_only() and not (args.json or args.markdown):
        print(f"SERVING VARIANT: this image serves a model folder's ONNX export (exports/best.onnx, from training "
              f"with export=onnx) without torch; training, conversion and best.pt need {variant.FULL_IMAGE}. "
              "The schema below is the full image's.\n")
    try:
        schema = Schema.load(args.image)
    except UserError as err:
        print(f"describe: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.markdown:
        from container.schema_docs import markdown

        print(markdown(schema), end="")
    else:
        print(json.dumps(schema.to_dict(), indent=2, default=str) if args.json else schema.describe())
    return 0


def serve(argv: list[str] | None = None) -> int:
    """Serve /opt/ml/model over HTTP (SageMaker hosting, batch transform, serverless); see container.serving."""
    from container.serving.server import serve as run_server

    try:
        return run_server(argv, image=os.environ.get(IMAGE_ENV))
    except UserError as err:
        print(f"serve: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR


def serve_main() -> None:
    sys.exit(serve(sys.argv[1:]))


def train_main() -> None:
    sys.exit(train(sys.argv[1:]))


def describe_main() -> None:
    sys.exit(describe(sys.argv[1:]))


def convert_main() -> None:
    if variant.serve_only():
        print(f"convert: {variant.refuse('conversion')}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    from container.processing import main as convert

    sys.exit(convert(sys.argv[1:]))


def main() -> None:
    """``python -m container train|serve|describe|convert`` - the same as the commands (``serve``: SageMaker
    hosting, see container/serving; ``convert``: a dataset conversion as a SageMaker Processing job, see
    container/processing.py)."""
    try:
        _dispatch()
    except BrokenPipeError:  # `describe | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def _dispatch() -> None:
    commands = {"train": train_main, "serve": serve_main, "describe": describe_main, "convert": convert_main}
    called_as = os.path.basename(sys.argv[0])
    if called_as in commands:  # the images link `train`, `serve`, ... to this entry: SageMaker runs `IMAGE train`
        commands[called_as]()
        return
    if len(sys.argv) < 2:  # the images' CMD: SageMaker SDK v3's local mode starts them with no command (docs/sdk-v3.md)
        holds_job = Environment.from_base_dir(num_gpus=0, num_cpus=1).holds_training_job
        # a job: train (which the serving variant refuses, naming the full image); else the variant serves
        (train_main if holds_job else serve_main if variant.serve_only() else describe_main)()
        return
    if sys.argv[1] not in commands:
        print("usage: sm-detectors train|serve|describe|convert [options]  (or python -m container ...)",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    commands[sys.argv.pop(1)]()
