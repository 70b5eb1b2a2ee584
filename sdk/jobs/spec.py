"""The launch arguments, declared once: :class:`JobSpec`, a frozen keyword-only dataclass whose fields carry
each argument's type, default, help text and CLI flag.

``plan_job``, ``launch_job`` (:class:`LaunchSpec`: and how to follow the job), the SageMaker SDK adapters
(:class:`AdapterSpec`), ``tune_job`` (``sdk.tuning.TuneJobSpec``) and ``retrain_on_upload``
(``sdk.pipeline.RetrainSpec``) are built from it or an extension of it with :func:`takes`: a type checker sees
the fields as their typed keyword arguments, ``help()`` and an IDE show each one. The CLI's options (``launch``,
``tune``, ``pipeline create``) are generated from the same fields (:data:`JOB_ARGS`, :func:`add_spec_options`),
and a misspelt argument gets "did you mean" everywhere (:meth:`JobSpec.of`, :func:`check_kwargs`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sdk._errors import ConfigurationError

DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
DEFAULT_MAX_RUN = 24 * 3600


@dataclass(frozen=True)
class Arg:
    """One argument as the CLI and the checks read it: a field of :class:`JobSpec` or :class:`LaunchSpec`."""

    name: str
    default: Any
    help: str
    cli: str = "str"  # how the CLI reads it: str, int, float, flag, negflag, pairs, optional-const, none (not on it)
    flag: str = ""  # the CLI flag when it is not --<name with dashes>
    metavar: str | None = None
    flag_help: str = ""  # a negflag's own help: what --no-<name> does (help says what the argument does)
    type: str = "Any"  # the field's annotation, as written
    choices: tuple[str, ...] | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def argument(default: Any, help: str, *, cli: str = "str", flag: str = "", metavar: str | None = None,
             flag_help: str = "", choices: tuple[str, ...] | None = None) -> Any:
    """A spec field: its default (``dataclasses.MISSING``: required), and what the CLI and the help text say of it.
    ``cli``: how the CLI reads it (str, int, float, flag, negflag, pairs, optional-const; none: not on the CLI)."""
    return field(default=default, metadata={"help": help, "cli": cli, "flag": flag, "metavar": metavar,
                                            "flag_help": flag_help, "choices": choices})


S = TypeVar("S", bound="JobSpec")


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """``plan_job``'s arguments, declared once: each field's type, default, help text and CLI flag.
    ``plan_job``, ``launch_job`` and the adapters take them as keyword arguments (typed from these fields,
    :func:`takes`); the CLI's flags are generated from them (:func:`add_cli_options`)."""

    image: str | Path | None = argument(
        None, "ECR image URI, the ecr_image_fullname.txt build-and-push.sh wrote, or yolo/tfod with "
        "instance_type='local' (default: ./ecr_image_fullname.txt)")
    kind: str | None = argument(None, "which image (yolo or tfod), when its name does not say")
    train: str | Path | None = argument(None, "train channel: a local folder (uploaded) or an s3:// URI")
    val: str | Path | None = argument(None, "val channel: a local folder or an s3:// URI")
    channels: Mapping[str, str | Path] | None = argument(None, "any other channel, NAME=SOURCE", cli="pairs",
                                                         flag="--channel", metavar="NAME=SOURCE")
    hyperparameters: Mapping[str, Any] | None = argument(None, "hyperparameters, checked against the image's schema",
                                                         cli="none")
    role: str | None = argument(None, "SageMaker execution role ARN (default: $SM_DETECTORS_ROLE)")
    instance_type: str = argument(DEFAULT_INSTANCE_TYPE, "instance type; 'local' runs the job on this machine")
    instance_count: int = argument(1, "instances (YOLO trains one model across them: docs/multinode.md)", cli="int")
    volume_size_gb: int = argument(50, "EBS volume per instance, GB", cli="int", flag="--volume-size")
    spot: bool = argument(False, "managed spot training (resumes from checkpoints)", cli="flag")
    max_run: int = argument(DEFAULT_MAX_RUN, "seconds the job may run (SageMaker allows at most 28 days)", cli="int")
    max_wait: int | None = argument(None, "seconds, spot only: run plus spot waits (default 2 x max_run)", cli="int")
    output_path: str | None = argument(None, "s3:// prefix for model.tar.gz (default: the SageMaker default bucket)")
    checkpoint_s3_uri: str | None = argument(None, "where checkpoints sync (default: <output_path>/<job>/checkpoints/)")
    checkpoints: bool = argument(True, "sync checkpoints to S3 (needed to resume)", cli="negflag",
                                 flag="--no-checkpoints",
                                 flag_help="do not sync checkpoints to S3 (a stopped job then cannot resume)")
    tensorboard: bool | str = argument(False, "sync TensorBoard logs (optionally to this URI)", cli="optional-const")
    input_modes: Mapping[str, str] | None = argument(None, "CHANNEL=MODE: File or FastFile", cli="pairs",
                                                     flag="--input-mode", metavar="CHANNEL=MODE")
    environment: Mapping[str, str] | None = argument(None, "environment variables KEY=VALUE", cli="pairs", flag="--env",
                                                     metavar="KEY=VALUE")
    tags: Mapping[str, str] | None = argument(None, "tags KEY=VALUE", cli="pairs", flag="--tag", metavar="KEY=VALUE")
    mlflow: str | None = argument(None, "MLflow tracking server the job logs to: an http(s):// URL or a SageMaker "
                                  "MLflow tracking-server / App ARN (docs/mlflow.md)", metavar="URI|ARN")
    experiment: str | None = argument(None, "MLflow experiment of the job's run (default sm-detectors; needs mlflow)")
    job_name: str | None = argument(None, "the job's name (default: <base_job_name>-<time>-<random>)")
    base_job_name: str | None = argument(None, "prefix of the generated job name (default: the image kind)")
    class_names: Iterable[str] | None = argument(
        None, "class names, for per-class metric definitions (default: read from the train data)", cli="none")
    resume: Any = argument(None, "a stopped job (Job or name) to resume: its image, channels, hyperparameters and "
                           "checkpoints are reused; arguments given here override", cli="none")
    session: Any = argument(None, "a boto3.Session (default: one from the environment)", cli="none")

    @classmethod
    def of(cls: type[S], kwargs: Mapping[str, Any], *, what: str) -> S:
        """The spec of ``what``'s keyword arguments: TypeError naming ``what`` for one it does not take."""
        names = [f.name for f in fields(cls)]
        for key in kwargs:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise TypeError(f"{what}() got an unexpected keyword argument {key!r}"
                                    + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return cls(**kwargs)

    def job_arguments(self, *, omit: Iterable[str] = (), **changes: Any) -> dict[str, Any]:
        """This spec's :class:`JobSpec` fields (what ``plan_job`` takes) but ``omit``, with ``changes``."""
        return {**{f.name: getattr(self, f.name) for f in fields(JobSpec) if f.name not in omit}, **changes}


@dataclass(frozen=True, kw_only=True)
class LaunchSpec(JobSpec):
    """``launch_job``'s arguments: ``plan_job``'s, and how to follow the job."""

    wait: bool = argument(True, "follow the job until it ends", cli="negflag", flag="--no-wait",
                          flag_help="return once the job is created; do not follow it")
    logs: bool = argument(False, "while waiting, print the job's log lines", cli="flag")
    progress: bool = argument(True, "while waiting, one updating line: epoch k/N, elapsed, ETA, latest mAP",
                              cli="negflag", flag="--no-progress", flag_help="while waiting, no updating progress line")
    engine: str | None = argument(None, "docker or podman, for instance_type='local' with an image URI")


@dataclass(frozen=True, kw_only=True)
class AdapterSpec(JobSpec):
    """``sdk.estimator.make_estimator``'s and ``sdk.model_trainer``'s arguments: ``plan_job``'s, and the SageMaker
    SDK's session."""

    sagemaker_session: Any = argument(None, "a sagemaker Session (default: a new one)", cli="none")


def args_of(spec: type, *, skip: Iterable[str] = ()) -> tuple[Arg, ...]:
    """The fields of ``spec`` (a :class:`JobSpec` or an extension of it) but ``skip``, as :class:`Arg` s."""
    skipped = set(skip)
    return tuple(Arg(f.name, f.default, type=str(f.type), **f.metadata) for f in fields(spec)
                 if f.name not in skipped)


JOB_ARGS: tuple[Arg, ...] = args_of(JobSpec)
"""``plan_job``'s arguments, in order. ``launch_job`` adds :data:`FOLLOW_ARGS`."""
JOB_ARG_NAMES = tuple(a.name for a in JOB_ARGS)
FOLLOW_ARGS: tuple[Arg, ...] = args_of(LaunchSpec, skip=JOB_ARG_NAMES)

P = ParamSpec("P")
R = TypeVar("R")


def takes(spec: Callable[P, Any]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """``@takes(JobSpec)``: the function's keyword arguments are the spec's fields, typed for a type checker
    (the spec's ``__init__``) and shown by ``help()`` and ``inspect.signature`` (its signature is set to the
    spec's). The function reads them with ``Spec.of(kwargs, what=...)``."""
    def wrap(function: Callable[..., R]) -> Callable[P, R]:
        returns = inspect.signature(function).return_annotation
        function.__signature__ = inspect.signature(spec).replace(  # type: ignore[attr-defined]
            return_annotation=returns)
        return function

    return wrap


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


def add_spec_options(parser: Any, spec: type, *, help_prefix: str = "") -> None:
    """The CLI flags of the fields an extension of :class:`JobSpec` adds (``tune``: :class:`sdk.tuning.TuneSpec`)."""
    for arg in args_of(spec, skip=JOB_ARG_NAMES):
        if arg.cli != "none":
            _add(parser, arg, help_prefix=help_prefix)


def _add(parser: Any, arg: Arg, *, help_prefix: str = "") -> None:
    dest: dict[str, Any] = {"dest": arg.name, **({"choices": arg.choices} if arg.choices else {})}
    shown = help_prefix + arg.help + ("" if arg.default in (None, False, True, MISSING, "")
                                      else f" (default {arg.default})")
    if arg.cli == "flag":
        parser.add_argument(arg.option, action="store_true", help=shown, **dest)
    elif arg.cli == "negflag":  # the flag turns the argument off: its help says so, not what the argument does
        parser.add_argument(arg.option, action="store_false", help=help_prefix + arg.flag_help, **dest)
    elif arg.cli in ("int", "float"):
        parser.add_argument(arg.option, type=int if arg.cli == "int" else float,
                            default=None if arg.default is MISSING else arg.default, help=shown, **dest)
    elif arg.cli == "pairs":
        parser.add_argument(arg.option, action="append", default=[], metavar=arg.metavar, help=shown, **dest)
    elif arg.cli == "optional-const":
        parser.add_argument(arg.option, nargs="?", const=True, default=arg.default, help=shown, **dest)
    else:
        parser.add_argument(arg.option, default=None if arg.default is MISSING else arg.default, help=shown,
                            metavar=arg.metavar, **dest)
