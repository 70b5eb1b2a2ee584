"""Hyperparameter tuning (the seed's tuning notebook) as one call: ``tune_job``.

    from sdk.tuning import tune_job
    tuning = tune_job(image=URI, train="s3://bucket/data/", hyperparameters={"epochs": 50},
                      ranges={"lr0": (1e-4, 1e-1, "log"), "imgsz": (320, 640), "optimizer": ["SGD", "AdamW"]},
                      max_jobs=12, max_parallel=3)
    tuning.wait()
    print(tuning.best())                 # name, objective value, tuned hyperparameters
    model = tuning.fetch_model(dest="models/best")

Ranges are checked against the image's schema like any hyperparameter: a tuple ``(low, high)`` or
``(low, high, scaling)`` is an integer range for an integer hyperparameter and a continuous one
otherwise (``scaling``: ``auto``, ``linear``, ``log``, ``reverse-log``); a list is categorical. The
objective defaults to the schema's ``objective`` (mAP), one of the image's own metric definitions.
Every other argument is :func:`sdk.plan_job`'s, so the training jobs get the same request a single
``launch_job`` would send (channels uploaded the same way, the same metric regexes).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from sdk._errors import ConfigurationError, NoJobError, WaitTimeoutError, aws_errors
from sdk.jobs.spec import JobSpec, argument, check_kwargs, takes

TUNING_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
SCALING = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic", "logarithmic": "Logarithmic",
           "reverse-log": "ReverseLogarithmic", "reverselogarithmic": "ReverseLogarithmic"}
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
DONE = {"Completed", "Failed", "Stopped"}

__all__ = ["TuningJob", "TuningPlan", "parameter_ranges", "plan_tuning", "tune_job"]


@dataclass
class TuningPlan:
    request: dict[str, Any]  # the CreateHyperParameterTuningJob request
    job_plan: Any  # the sdk.Plan of one training job (uploads to make first)


def _check_value(schema: Any, name: str, value: Any) -> str:
    """The value as the image reads it, or ConfigurationError naming the problem (unknown names get suggestions)."""
    from sdk.jobs.request import encode_hyperparameters

    try:
        return encode_hyperparameters(schema, {name: value})[name]
    except ConfigurationError as err:
        raise ConfigurationError(f"range for {name!r}: {err}") from None


def parameter_ranges(schema: Any, ranges: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``ParameterRanges`` for the API from ``{"lr0": (1e-4, 0.1, "log"), "optimizer": ["SGD", "AdamW"]}``."""
    out: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []}
    if not ranges:
        raise ConfigurationError("ranges is empty: name at least one hyperparameter to tune")
    for name, spec in ranges.items():
        if isinstance(spec, (list, set)) or (isinstance(spec, tuple) and spec and isinstance(spec[0], str)):
            values = [_check_value(schema, name, v) for v in spec]
            if not 1 <= len(values) <= 30:
                raise ConfigurationError(f"range for {name!r}: 1 to 30 categorical values, got {len(values)}")
            out["CategoricalParameterRanges"].append({"Name": name, "Values": list(dict.fromkeys(values))})
            continue
        if isinstance(spec, Mapping):
            low, high, scaling = spec.get("min"), spec.get("max"), spec.get("scaling", "auto")
        elif isinstance(spec, tuple) and len(spec) in (2, 3):
            low, high, scaling = spec[0], spec[1], spec[2] if len(spec) == 3 else "auto"
        else:
            raise ConfigurationError(f"range for {name!r}: give (low, high), (low, high, scaling) or a list of values, "
                                     f"got {spec!r}")
        if (not isinstance(low, (int, float)) or not isinstance(high, (int, float))
                or isinstance(low, bool) or isinstance(high, bool)):
            raise ConfigurationError(f"range for {name!r}: bounds must be numbers, got {low!r} and {high!r}")
        if low >= high:
            raise ConfigurationError(f"range for {name!r}: low ({low}) must be below high ({high})")
        scale = SCALING.get(str(scaling).lower())
        if scale is None:
            raise ConfigurationError(f"range for {name!r}: scaling {scaling!r} is not one of {', '.join(SCALING)}")
        if scale != "Auto" and scale != "Linear" and low <= 0:
            raise ConfigurationError(f"range for {name!r}: {scale} scaling needs low > 0, got {low}")
        param = schema.params.get(name)
        types = param.types if param else ()
        integer = ("int" in types and "float" not in types) or (
            not (param and param.types) and isinstance(low, int) and isinstance(high, int))
        if integer and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigurationError(f"range for {name!r}: {name} is an integer, got bounds {low} and {high}")
        lo = _check_value(schema, name, int(low) if integer else float(low))
        hi = _check_value(schema, name, int(high) if integer else float(high))
        if scale == "ReverseLogarithmic" and float(hi) >= 1:
            raise ConfigurationError(f"range for {name!r}: reverse-log scaling needs high < 1, got {high}")
        kind = "IntegerParameterRanges" if integer else "ContinuousParameterRanges"
        out[kind].append({"Name": name, "MinValue": lo, "MaxValue": hi, "ScalingType": scale})
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True, kw_only=True)
class TuneSpec(JobSpec):
    """``plan_tuning``'s arguments: ``plan_job``'s (but ``resume``, ``job_name``, ``checkpoints``), and the tuner's."""

    ranges: Mapping[str, Any] = argument(MISSING, "hyperparameter ranges: {name: (low, high[, scale]) or [choices]}",
                                         cli="none")
    objective: str | None = argument(None, "metric to optimize (default: the image's, mAP)")
    minimize: bool = argument(False, "minimize the objective (default: maximize it)", cli="flag")
    max_jobs: int = argument(10, "training jobs in all", cli="int")
    max_parallel: int = argument(2, "training jobs at once (1 to max_jobs)", cli="int")
    strategy: str = argument("Bayesian", "how SageMaker picks the next values", choices=STRATEGIES)
    early_stopping: bool = argument(True, "SageMaker stops unpromising training jobs (not with Hyperband)",
                                    cli="negflag", flag="--no-early-stopping",
                                    flag_help="let every training job run to its end (default: SageMaker stops "
                                    "unpromising ones)")
    tuning_job_name: str | None = argument(None, "the tuning job's name (default: <kind>-tune-<time>)")


@dataclass(frozen=True, kw_only=True)
class TuneJobSpec(TuneSpec):
    """``tune_job``'s arguments: ``plan_tuning``'s, and whether to wait for the tuning job."""

    wait: bool = argument(False, "wait for the tuning job to end", cli="flag")


def _tuning_name(kind: str) -> str:
    return f"{kind}-tune-{time.strftime('%m%d-%H%M%S', time.gmtime())}"


@takes(TuneSpec)
def plan_tuning(**kwargs: Any) -> TuningPlan:
    """The ``CreateHyperParameterTuningJob`` request, validated, without creating or uploading anything."""
    from sdk.jobs.plan import plan_job
    from sdk.jobs.request import CHECKPOINT_LOCAL_PATH, as_prefix, s3_join

    forbidden = ("resume", "job_name", "checkpoints")  # a tuning job names, checkpoints and resumes its own jobs
    check_kwargs(kwargs, allowed=[f.name for f in fields(TuneSpec) if f.name not in forbidden], what="tune_job")
    spec = TuneSpec(**kwargs)
    if spec.instance_type == "local":
        raise ConfigurationError("tuning runs on SageMaker; instance_type='local' has no tuner (try a few "
                                 "launch_job(instance_type='local') runs and sdk.leaderboard)")
    static = dict(spec.hyperparameters or {})
    checkpoint = spec.checkpoint_s3_uri
    both = sorted(set(static) & set(spec.ranges))
    if both:
        raise ConfigurationError(f"{', '.join(both)} given both as a fixed hyperparameter and as a range")
    plan = plan_job(**spec.job_arguments(omit=("checkpoint_s3_uri",), hyperparameters=static, checkpoints=False))
    from container.schema import Schema

    schema = Schema.load(plan.kind)
    request = plan.request
    metric_names = [d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]]
    objective = spec.objective or schema.objective
    if objective not in metric_names:
        raise ConfigurationError(f"objective {objective!r} is not a metric of the {plan.kind} image; "
                                 f"its metrics: {', '.join(metric_names)}")
    if spec.strategy not in STRATEGIES:
        raise ConfigurationError(f"strategy {spec.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not 1 <= spec.max_parallel <= spec.max_jobs:
        raise ConfigurationError(f"max_parallel ({spec.max_parallel}) must be 1 to max_jobs ({spec.max_jobs})")
    name = spec.tuning_job_name or _tuning_name(plan.kind)
    if not TUNING_NAME_RE.match(name):
        raise ConfigurationError(f"tuning job name {name!r} is not valid: 1 to 32 letters, digits and hyphens")
    # one prefix for the tuning job (the API has no per-job template); the image keeps each training job's
    # checkpoints in its own <job name>/ folder under it (container.contract: host_checkpoint_dir), so a spot
    # interruption resumes that job, never another
    checkpoint = checkpoint or s3_join(request["OutputDataConfig"]["S3OutputPath"], name, "checkpoints") + "/"
    algorithm = request["AlgorithmSpecification"]
    definition: dict[str, Any] = {
        "StaticHyperParameters": request.get("HyperParameters", {}),
        "AlgorithmSpecification": {"TrainingImage": algorithm["TrainingImage"],
                                   "TrainingInputMode": algorithm["TrainingInputMode"],
                                   "MetricDefinitions": algorithm["MetricDefinitions"]},
        **{key: request[key] for key in ("RoleArn", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
                                         "StoppingCondition", "EnableManagedSpotTraining", "Environment")
           if key in request},
        "CheckpointConfig": {"S3Uri": as_prefix(checkpoint), "LocalPath": CHECKPOINT_LOCAL_PATH},
    }
    config: dict[str, Any] = {
        "Strategy": spec.strategy,
        "HyperParameterTuningJobObjective": {"Type": "Minimize" if spec.minimize else "Maximize",
                                             "MetricName": objective},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": spec.max_jobs, "MaxParallelTrainingJobs": spec.max_parallel},
        "ParameterRanges": parameter_ranges(schema, spec.ranges),
    }
    if spec.strategy != "Hyperband":  # Hyperband stops jobs itself and refuses the setting
        config["TrainingJobEarlyStoppingType"] = "Auto" if spec.early_stopping else "Off"
    tuning = {"HyperParameterTuningJobName": name, "HyperParameterTuningJobConfig": config,
              "TrainingJobDefinition": definition}
    if request.get("Tags"):
        tuning["Tags"] = request["Tags"]
    return TuningPlan(request=tuning, job_plan=plan)


class TuningJob:
    """A handle on a hyperparameter tuning job: status, the best training job, its model."""

    def __init__(self, name: str, *, session: Any = None, request: dict[str, Any] | None = None) -> None:
        from sdk._session import aws_session

        self.name = name
        self.session = aws_session(session)
        self.request = request
        self._client = self.session.client("sagemaker")

    def describe(self) -> dict[str, Any]:
        with aws_errors(f"describing tuning job {self.name}"):
            return self._client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name)

    @property
    def status(self) -> str:
        return self.describe()["HyperParameterTuningJobStatus"]

    def wait(self, poll: float = 30, timeout: float | None = None) -> str:
        """Wait for the tuning job to end, printing its training-job counters as they change."""
        start, last = time.monotonic(), None
        while True:
            info = self.describe()
            counters = info.get("TrainingJobStatusCounters", {})
            line = f"{info['HyperParameterTuningJobStatus']}: " + ", ".join(f"{v} {k}" for k, v in counters.items())
            if line != last:
                print(f"tuning job {self.name}: {line}", file=sys.stderr)
                last = line
            if info["HyperParameterTuningJobStatus"] in DONE:
                return info["HyperParameterTuningJobStatus"]
            if timeout is not None and time.monotonic() - start > timeout:
                raise WaitTimeoutError(f"tuning job {self.name} still {info['HyperParameterTuningJobStatus']} "
                                       f"after {timeout:.0f}s (it keeps running)")
            time.sleep(poll)

    def best(self) -> dict[str, Any]:
        """``{"job_name", "objective", "value", "hyperparameters"}`` of the best training job so far."""
        best = self.describe().get("BestTrainingJob")
        if not best:
            raise NoJobError(f"tuning job {self.name} has no finished training job yet")
        metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        return {"job_name": best["TrainingJobName"], "objective": metric.get("MetricName"),
                "value": metric.get("Value"), "hyperparameters": best.get("TunedHyperParameters", {})}

    def fetch_model(self, **kwargs: Any) -> Any:
        """``sdk.fetch_model`` of the best training job."""
        from sdk.jobs.fetch import fetch_model

        return fetch_model(self.best()["job_name"], session=self.session, **kwargs)

    def stop(self) -> None:
        with aws_errors(f"stopping tuning job {self.name}"):
            self._client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name)

    def __repr__(self) -> str:
        return f"TuningJob({self.name!r})"


@takes(TuneJobSpec)
def tune_job(**kwargs: Any) -> TuningJob:
    """Create a hyperparameter tuning job: uploads local channels, then ``CreateHyperParameterTuningJob``.

    Takes every argument of :func:`plan_tuning` (``ranges``, ``objective``, ``max_jobs``, ``max_parallel``,
    ``strategy``, ``early_stopping``) and of :func:`sdk.plan_job`. Returns a :class:`TuningJob`.
    """
    from sdk._session import aws_session
    from sdk.jobs.plan import prepare_inputs

    wait = kwargs.pop("wait", False)
    session = aws_session(kwargs.pop("session", None))
    plan = plan_tuning(session=session, **kwargs)
    prepare_inputs(plan.job_plan, session=session, create_bucket=kwargs.get("output_path") is None)
    request = plan.request
    request["TrainingJobDefinition"]["InputDataConfig"] = plan.job_plan.request["InputDataConfig"]
    with aws_errors(f"creating tuning job {request['HyperParameterTuningJobName']}"):
        session.client("sagemaker").create_hyper_parameter_tuning_job(**request)
    job = TuningJob(request["HyperParameterTuningJobName"], session=session, request=request)
    print(f"tuning job {job.name} created: {request['HyperParameterTuningJobConfig']['ResourceLimits']}",
          file=sys.stderr)
    if wait:
        job.wait()
    return job
