"""MLflow experiment tracking, when the job's environment names a tracking server (docs/mlflow.md).

``MLFLOW_TRACKING_URI`` (``http(s)://...``, or a SageMaker MLflow tracking-server / MLflow App ARN through AWS's
``sagemaker-mlflow`` plugin) turns it on; ``MLFLOW_EXPERIMENT_NAME`` picks the experiment (default
``sm-detectors``). One run per training job, named after the job:

* params: the resolved hyperparameters; tags: job name and ARN, image, instance type and count, channel sources,
  the tuning job for a tuning job's training jobs;
* metrics: the names of the image's metric definitions (``val:mAP50-95``...), one point per epoch (YOLO) or per
  logged step (TF), the final evaluation, the per-class lines when they are printed;
* artifacts: ``metrics.json``, ``results.csv``, the plots; the weights only with ``mlflow_log_model=true``.

The run id is kept in this host's checkpoint folder (:attr:`container.contract.Environment.tracking_run_file`),
so a restarted job (spot, stop and resume) continues its run. Only the leader host logs. A server that is slow,
down or refuses never fails or stalls training: each call runs under a time limit (MLflow's own HTTP timeout and
retries, set short unless the job sets them, and a thread that is given up on), the first failure prints one
warning naming the server, and the job goes on without tracking.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from container.contract import TUNING_OBJECTIVE_KEY, Environment

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "sm-detectors"
CHANNEL_SOURCES_ENV = "SM_DETECTORS_CHANNEL_SOURCES"  # set by the SDK with mlflow=: {channel: URI} as JSON
IMAGE_URI_ENV = "SM_DETECTORS_IMAGE_URI"  # set by the SDK with mlflow=: a job cannot see its own image's URI
RUN_ID_ENV = "SM_DETECTORS_MLFLOW_RUN_ID"  # the leader's run, handed to the processes it starts (torchrun's rank 0)
LOG_MODEL_PARAM = "mlflow_log_model"
TUNING_TAG = "sm-detectors.tuning_job"

# MLflow's HTTP client waits 120 s and retries 7 times with backoff by default: minutes per call on a dead server.
# These defaults bound one call to about 2 x 10 s; a job that sets the variables itself keeps its own.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}
CALL_LIMIT_S = 30.0  # what one call may take, whatever MLflow does inside it (DNS, a plugin's credentials)
ARTIFACT_LIMIT_S = 600.0  # an upload of the weights
PARAM_BATCH = 100  # MLflow's log_batch limits
METRIC_BATCH = 1000
PARAM_VALUE_LIMIT = 6000
# The line a job prints when its run is open; the SDK reads the run back from it (sdk/_mlflow.py: Job.mlflow_run)
RUN_LINE_RE = re.compile(r"mlflow: (?:started|continuing) run (?P<run_id>[0-9a-zA-Z]+) \(experiment "
                         r"(?P<experiment_id>[^)\s]+)\) on \S+(?: (?P<link>https?://\S+))?;")
_NAME_BAD = re.compile(r"[^\w\-. :/]")  # MLflow's metric/param names: alphanumerics, _ - . space : /


def log(msg: str) -> None:
    print(msg, flush=True)


def shown_uri(uri: str) -> str:
    """The server as a warning names it: credentials in the URL left out."""
    return re.sub(r"//[^/@]*@", "//", uri)


def metric_name(name: str) -> str:
    return _NAME_BAD.sub("_", name)


class Tracker:
    """One job's MLflow run. Every method is a no-op once tracking is off (never on, or given up)."""

    def __init__(self, uri: str, *, call_limit: float = CALL_LIMIT_S, warn: Callable[[str], None] = log) -> None:
        self.uri = uri
        self.call_limit = call_limit
        self.warn = warn
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.failed: str | None = None
        self._client: Any = None

    @property
    def active(self) -> bool:
        return self.run_id is not None and self.failed is None

    # -- bounded calls ---------------------------------------------------------------------------
    def _call(self, what: str, func: Callable[[], Any], limit: float | None = None) -> Any:
        """``func()`` in a thread given ``limit`` seconds; on an error or the limit: one warning, tracking off."""
        if self.failed is not None:
            return None
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = func()
            except BaseException as err:  # reported below, never raised into training
                box["error"] = err

        thread = threading.Thread(target=run, name=f"mlflow-{what}", daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(self.call_limit if limit is None else limit)
        if thread.is_alive():
            self._give_up(what, f"no answer in {time.monotonic() - started:.0f}s")
            return None
        if "error" in box:
            err = box["error"]
            self._give_up(what, f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
            return None
        return box.get("value")

    def _give_up(self, what: str, why: str) -> None:
        self.failed = why
        self.warn(f"WARNING mlflow: the tracking server {shown_uri(self.uri)} failed ({what}: {why}); "
                  "training goes on without MLflow tracking")

    def client(self) -> Any:
        if self._client is None:
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            if not self.uri.startswith("arn:"):
                # sagemaker-mlflow's header provider reads every tracking URI as an ARN: for an http(s) server it
                # fails on each request and MLflow warns each time ("list index out of range"), a line per call
                logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # -- the run ---------------------------------------------------------------------------------
    def open(self, *, experiment: str, run_file: Path, run_name: str, tags: Mapping[str, str]) -> bool:
        """Continue the run named in ``run_file`` (a restarted job), else create one and note it there."""
        kept = read_run_file(run_file)
        result = self._call("start run", lambda: self._open(experiment, kept.get("run_id"), run_name, tags))
        if result is None:
            return False
        self.run_id, self.experiment_id, resumed = result
        write_run_file(run_file, {**kept, "run_id": self.run_id, "experiment_id": self.experiment_id,
                                  "tracking_uri": shown_uri(self.uri)})
        link = self.link()
        log(f"mlflow: {'continuing' if resumed else 'started'} run {self.run_id} (experiment {self.experiment_id}) "
            f"on {shown_uri(self.uri)}{f' {link}' if link else ''}; experiment name {experiment!r}")
        return True

    def _open(self, experiment: str, run_id: str | None, run_name: str,
              tags: Mapping[str, str]) -> tuple[str, str, bool]:
        client = self.client()
        if run_id:
            try:
                run = client.get_run(run_id)
            except Exception as err:  # a run deleted since, or another server: a new run
                if "RESOURCE_DOES_NOT_EXIST" not in str(err) and "not found" not in str(err).lower():
                    raise
            else:
                client.update_run(run_id, status="RUNNING")
                return run_id, run.info.experiment_id, True
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(experiment)
            except Exception:  # two jobs creating it at once: the other one won
                again = client.get_experiment_by_name(experiment)
                if again is None:
                    raise
                experiment_id = again.experiment_id
        run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        return run.info.run_id, experiment_id, False

    def link(self) -> str | None:
        """The run's page, where the URI is the server's own web address (an ARN's UI needs a presigned URL)."""
        if not self.run_id or not self.uri.startswith(("http://", "https://")):
            return None
        return f"{shown_uri(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def log_params(self, params: Mapping[str, Any], *, run_file: Path | None = None) -> None:
        """The resolved hyperparameters, once per run (a restarted job's are logged already)."""
        if not self.active or (run_file is not None and read_run_file(run_file).get("params_logged")):
            return
        from mlflow.entities import Param

        items = [Param(metric_name(str(k))[:250], _param_text(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), PARAM_BATCH):
            chunk = items[i:i + PARAM_BATCH]
            self._call("log params", functools.partial(lambda c: self.client().log_batch(self.run_id, params=c), chunk))
        if self.active and run_file is not None:
            write_run_file(run_file, {**read_run_file(run_file), "params_logged": True})

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        if not self.active or not values:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_name(k), float(v), now, int(step)) for k, v in values.items()]
        for i in range(0, len(items), METRIC_BATCH):
            chunk = items[i:i + METRIC_BATCH]
            self._call("log metrics", functools.partial(lambda c: self.client().log_batch(self.run_id, metrics=c),
                                                        chunk))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if not self.active or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        self._call("set tags", lambda: self.client().log_batch(self.run_id, tags=items))

    def log_artifacts(self, files: list[tuple[Path, str | None]]) -> None:
        """(local file or folder, artifact folder or None) each; one bounded call for all."""
        if not self.active or not files:
            return

        def upload() -> None:
            client = self.client()
            for path, folder in files:
                if path.is_dir():
                    client.log_artifacts(self.run_id, str(path), folder)
                else:
                    client.log_artifact(self.run_id, str(path), folder)

        self._call("log artifacts", upload, limit=ARTIFACT_LIMIT_S)

    def finish(self, status: str) -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED`` (a stopped job, which a restart sets running again)."""
        if self.active:
            self._call("end run", lambda: self.client().set_terminated(self.run_id, status=status))


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:PARAM_VALUE_LIMIT]


def read_run_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_run_file(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(data)), encoding="utf-8")
    os.replace(tmp, path)


# -- the job's tracker -----------------------------------------------------------------------------
_current: Tracker | None = None
_lock = threading.Lock()


def _never_fails(func: Callable[..., Any]) -> Callable[..., Any]:
    """What the trainers call: an error of ours (a malformed config file, a value MLflow refuses) turns tracking
    off with one warning, as a server's failure does; it never reaches training."""
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as err:
            global _current
            tracker, _current = _current, None
            if tracker is None or tracker.failed is None:
                log(f"WARNING mlflow: {func.__name__} failed ({type(err).__name__}: {err}); training goes on without "
                    "MLflow tracking")
            if tracker is not None:
                tracker.failed = tracker.failed or f"{type(err).__name__}: {err}"
            os.environ.pop(RUN_ID_ENV, None)
            return None

    return guarded


def current() -> Tracker | None:
    """This process's tracker: the one :func:`start` opened, or, in a process the leader started (torchrun's
    rank 0), the leader's run named in the environment. None when tracking is off."""
    global _current
    with _lock:
        if _current is None and (uri := os.environ.get(TRACKING_URI_ENV)) and (run_id := os.environ.get(RUN_ID_ENV)):
            _current = Tracker(uri)
            _current.run_id = run_id
        return _current if _current is not None and _current.active else None


def job_tags(env: Environment, image: str) -> dict[str, str]:
    tags = {"sagemaker.job_name": env.job_name or "(local)", "sagemaker.image": image,
            "sagemaker.instance_type": env.current_instance_type, "sagemaker.instance_count": str(len(env.hosts))}
    for key, tag in (("TRAINING_JOB_ARN", "sagemaker.job_arn"), (IMAGE_URI_ENV, "sagemaker.image_uri")):
        if env.environ.get(key):
            tags[tag] = env.environ[key]
    try:
        sources = json.loads(env.environ.get(CHANNEL_SOURCES_ENV) or "{}")
    except ValueError:
        sources = {}
    for name in sorted({*env.input_data_config, *(sources if isinstance(sources, dict) else {})}):
        source = sources.get(name) if isinstance(sources, dict) else None
        tags[f"sagemaker.channel.{name}"] = str(source or env.input_mode(name))
    if TUNING_OBJECTIVE_KEY in env.hyperparameters_raw and env.job_name:  # one of a tuning job's training jobs
        tags[TUNING_TAG] = _tuning_job_of(env.job_name)
    return tags


def _tuning_job_of(job_name: str) -> str:
    """SageMaker names a tuning job's training jobs ``<tuning job>-<3 digits>-<8 hex>``."""
    match = re.fullmatch(r"(.+)-\d{3}-[0-9a-f]{8}", job_name)
    return match.group(1) if match else job_name


def run_name(env: Environment) -> str:
    return env.job_name or f"local-{env.current_host}"


@_never_fails
def start(env: Environment, image: str) -> Tracker | None:
    """Open (or continue) the job's run on the leader when ``MLFLOW_TRACKING_URI`` is set; None otherwise."""
    global _current
    uri = env.environ.get(TRACKING_URI_ENV)
    if not uri or not env.is_master:
        return None
    try:
        import mlflow  # noqa: F401 - present in both images
    except ImportError:
        log(f"WARNING mlflow: {TRACKING_URI_ENV} is set but mlflow is not installed here; training goes on "
            "without MLflow tracking")
        return None
    tracker = Tracker(uri)
    experiment = env.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    if not tracker.open(experiment=experiment, run_file=env.tracking_run_file, run_name=run_name(env),
                        tags=job_tags(env, image)):
        return None
    os.environ[RUN_ID_ENV] = str(tracker.run_id)
    with _lock:
        _current = tracker
    return tracker


@_never_fails
def stop(status: str) -> None:
    """End the job's run (leader only; a process that continued the leader's run leaves it open)."""
    global _current
    with _lock:
        tracker, _current = _current, None
    os.environ.pop(RUN_ID_ENV, None)
    if tracker is not None:
        tracker.finish(status)


# -- what the trainers call (each a no-op without a run) ---------------------------------------------
@_never_fails
def log_params(params: Mapping[str, Any], env: Environment | None = None) -> None:
    if (tracker := current()) is not None:
        tracker.log_params(params, run_file=env.tracking_run_file if env is not None else None)


@_never_fails
def log_metric_line(schema: Any, line: str, values: Mapping[str, Any], step: int, *, class_name: str | None = None
                    ) -> None:
    """The numbers of one metric line, under the names of the image's metric definitions."""
    if (tracker := current()) is None:
        return
    tracker.log_metrics(schema.metric_values(line, values, class_name=class_name), step)


@_never_fails
def log_model_folder(model_dir: Path, hps: Mapping[str, Any]) -> None:
    """metrics.json, results.csv, the plots; the weights and exports too with ``mlflow_log_model=true``."""
    if (tracker := current()) is None or not model_dir.is_dir():
        return
    files: list[tuple[Path, str | None]] = []
    for item in sorted(model_dir.iterdir()):
        if item.name in ("metrics.json", "results.csv", "args.yaml", "data.yaml", "label_map.csv",
                         "label_map.pbtxt"):
            files.append((item, None))
        elif item.name == "plots" and item.is_dir():
            files.append((item, "plots"))
        elif hps.get(LOG_MODEL_PARAM):
            files.append((item, "model/" + item.name if item.is_dir() else "model"))
    tracker.log_artifacts(files)
