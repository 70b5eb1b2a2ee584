"""The launch arguments, declared once: names, types, defaults, help and the CLI flag of each.

``plan_job`` and ``launch_job`` spell these out as keyword-only parameters (so ``help()`` and an
IDE show every one of them); a unit test holds their signatures equal to :data:`JOB_ARGS`. The
CLI's options (``launch``, ``tune``, ``pipeline create``) are generated from it, and the
``sagemaker`` v2 adapter, ``tune_job`` and ``retrain_on_upload`` check their keyword arguments
against it (:func:`check_kwargs`), so a typo gets "did you mean" everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdk._errors import ConfigurationError

DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
DEFAULT_MAX_RUN = 24 * 3600


@dataclass(frozen=True)
class Arg:
    name: str
    default: Any
    help: str
    cli: str = "str"  # how the CLI reads it: str, int, flag, negflag, pairs, optional-const, none (not on the CLI)
    flag: str = ""  # the CLI flag when it is not --<name with dashes>
    metavar: str | None = None
    flag_help: str = ""  # a negflag's own help: what --no-<name> does (help says what the argument does)

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


JOB_ARGS: tuple[Arg, ...] = (
    Arg("image", None, "ECR image URI, the ecr_image_fullname.txt build-and-push.sh wrote, or yolo/tfod with "
        "instance_type='local' (default: ./ecr_image_fullname.txt)"),
    Arg("kind", None, "which image (yolo or tfod), when its name does not say"),
    Arg("train", None, "train channel: a local folder (uploaded) or an s3:// URI"),
    Arg("val", None, "val channel: a local folder or an s3:// URI"),
    Arg("channels", None, "any other channel, NAME=SOURCE", cli="pairs", flag="--channel", metavar="NAME=SOURCE"),
    Arg("hyperparameters", None, "hyperparameters, checked against the image's schema", cli="none"),
    Arg("role", None, "SageMaker execution role ARN (default: $SM_DETECTORS_ROLE)"),
    Arg("instance_type", DEFAULT_INSTANCE_TYPE, "instance type; 'local' runs the job on this machine"),
    Arg("instance_count", 1, "instances (YOLO trains one model across them: docs/multinode.md)", cli="int"),
    Arg("volume_size_gb", 50, "EBS volume per instance, GB", cli="int", flag="--volume-size"),
    Arg("spot", False, "managed spot training (resumes from checkpoints)", cli="flag"),
    Arg("max_run", DEFAULT_MAX_RUN, "seconds the job may run (SageMaker allows at most 28 days)", cli="int"),
    Arg("max_wait", None, "seconds, spot only: run plus spot waits (default 2 x max_run)", cli="int"),
    Arg("output_path", None, "s3:// prefix for model.tar.gz (default: the SageMaker default bucket)"),
    Arg("checkpoint_s3_uri", None, "where checkpoints sync (default: <output_path>/<job>/checkpoints/)"),
    Arg("checkpoints", True, "sync checkpoints to S3 (needed to resume)", cli="negflag", flag="--no-checkpoints",
        flag_help="do not sync checkpoints to S3 (a stopped job then cannot resume)"),
    Arg("tensorboard", False, "sync TensorBoard logs (optionally to this URI)", cli="optional-const"),
    Arg("input_modes", None, "CHANNEL=MODE: File or FastFile", cli="pairs", flag="--input-mode",
        metavar="CHANNEL=MODE"),
    Arg("environment", None, "environment variables KEY=VALUE", cli="pairs", flag="--env", metavar="KEY=VALUE"),
    Arg("tags", None, "tags KEY=VALUE", cli="pairs", flag="--tag", metavar="KEY=VALUE"),
    Arg("mlflow", None, "MLflow tracking server the job logs to: an http(s):// URL or a SageMaker MLflow "
        "tracking-server / App ARN (docs/mlflow.md)", metavar="URI|ARN"),
    Arg("experiment", None, "MLflow experiment of the job's run (default sm-detectors; needs mlflow)"),
    Arg("job_name", None, "the job's name (default: <base_job_name>-<time>-<random>)"),
    Arg("base_job_name", None, "prefix of the generated job name (default: the image kind)"),
    Arg("class_names", None, "class names, for per-class metric definitions (default: read from the train data)",
        cli="none"),
    Arg("resume", None, "a stopped job (Job or name) to resume: its image, channels, hyperparameters and "
        "checkpoints are reused; arguments given here override", cli="none"),
    Arg("session", None, "a boto3.Session (default: one from the environment)", cli="none"),
)
"""``plan_job``'s arguments, in order. ``launch_job`` adds :data:`FOLLOW_ARGS`."""

FOLLOW_ARGS: tuple[Arg, ...] = (
    Arg("wait", True, "follow the job until it ends", cli="negflag", flag="--no-wait",
        flag_help="return once the job is created; do not follow it"),
    Arg("logs", False, "while waiting, print the job's log lines", cli="flag"),
    Arg("progress", True, "while waiting, one updating line: epoch k/N, elapsed, ETA, latest mAP", cli="negflag",
        flag="--no-progress", flag_help="while waiting, no updating progress line"),
    Arg("engine", None, "docker or podman, for instance_type='local' with an image URI"),
)

JOB_ARG_NAMES = tuple(a.name for a in JOB_ARGS)


def check_kwargs(kwargs: Mapping[str, Any], *, allowed: Iterable[str] = JOB_ARG_NAMES, what: str = "plan_job") -> None:
    """ConfigurationError for an argument no launch function takes (with a suggestion)."""
    allowed = list(allowed)
    wrong = [k for k in kwargs if k not in allowed]
    if wrong:
        parts = []
        for key in wrong:
            hint = difflib.get_close_matches(key, allowed, n=1)
            parts.append(repr(key) + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        raise ConfigurationError(f"{what} takes no argument {', '.join(parts)}; its arguments: {', '.join(allowed)}")


def add_cli_options(parser: Any, *, skip: Iterable[str] = ()) -> None:
    """The CLI flags of :data:`JOB_ARGS` (hyperparameters come from --hp / --hyperparameters)."""
    for arg in JOB_ARGS:
        if arg.name in skip or arg.cli == "none":
            continue
        _add(parser, arg)
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="one hyperparameter")
    parser.add_argument("--hyperparameters", metavar="FILE", help="YAML or JSON file of hyperparameters")
    parser.add_argument("--resume", metavar="JOB", help={a.name: a.help for a in JOB_ARGS}["resume"])


def add_follow_options(parser: Any) -> None:
    for arg in FOLLOW_ARGS:
        _add(parser, arg)


def _add(parser: Any, arg: Arg) -> None:
    dest = {"dest": arg.name}
    shown = arg.help + ("" if arg.default in (None, False, True) else f" (default {arg.default})")
    if arg.cli == "flag":
        parser.add_argument(arg.option, action="store_true", help=shown, **dest)
    elif arg.cli == "negflag":  # the flag turns the argument off: its help says so, not what the argument does
        parser.add_argument(arg.option, action="store_false", help=arg.flag_help, **dest)
    elif arg.cli == "int":
        parser.add_argument(arg.option, type=int, default=arg.default, help=shown, **dest)
    elif arg.cli == "pairs":
        parser.add_argument(arg.option, action="append", default=[], metavar=arg.metavar, help=shown, **dest)
    elif arg.cli == "optional-const":
        parser.add_argument(arg.option, nargs="?", const=True, default=arg.default, help=shown, **dest)
    else:
        parser.add_argument(arg.option, default=arg.default, help=shown, **dest)
