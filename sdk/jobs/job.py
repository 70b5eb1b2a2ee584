"""Job handles: :class:`Job` for SageMaker, :class:`LocalJob` for ``instance_type="local"``. Same methods.

    job.status            'InProgress', 'Completed', 'Failed', 'Stopping', 'Stopped'
    job.wait(logs=True)   follow until the end; JobFailedError (job name + reason) if it failed or stopped
    job.logs()            the log so far (CloudWatch, or the local log file)
    job.metrics()         final metrics, {name: value}
    job.stop()            SIGTERM now: the trainer saves a checkpoint and exits
    job.fetch_model()     download and unpack model.tar.gz (see sdk.fetch_model)
    job.metrics_history() per-epoch series read from the log, {name: [(epoch, value), ...]}
    job.plot("run.png")   losses and mAP per epoch as a PNG (matplotlib, the [plot] extra)
    job.restart()         resume a stopped job from its checkpoints (same image, channels, hyperparameters)

:func:`launch_job` lives here too, beside the handles it returns and ``restart`` calls: imports run one way,
this module imports :mod:`sdk.jobs.plan` (``plan_job``) and nothing below imports it back.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from sdk._errors import JobFailedError, NotFoundError, WaitTimeoutError, aws_errors
from sdk._session import aws_session
from sdk.jobs.plan import LOCAL, Plan, plan_job, prepare_inputs, session_with_region
from sdk.jobs.progress import History, for_request, kind_of, metrics_history
from sdk.jobs.request import is_s3
from sdk.jobs.spec import LaunchSpec, takes
from sdk.jobs.unpack import FetchedModel, fetch_job_model

TERMINAL = ("Completed", "Failed", "Stopped")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class _Handle:
    name: str
    runs_here = False  # a LocalJob's run is on this machine (what resume=job reads)

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def status(self) -> str:
        return self.describe()["TrainingJobStatus"]

    @property
    def failure_reason(self) -> str:
        return self.describe().get("FailureReason", "")

    @property
    def model_uri(self) -> str:
        return self.describe().get("ModelArtifacts", {}).get("S3ModelArtifacts", "")

    def metrics(self) -> dict[str, float]:
        """Final metrics, as SageMaker read them from the log with the job's ``MetricDefinitions``."""
        return {m["MetricName"]: m["Value"] for m in self.describe().get("FinalMetricDataList", [])}

    def _raise_unless_completed(self, info: dict[str, Any]) -> dict[str, Any]:
        if info["TrainingJobStatus"] != "Completed":
            raise JobFailedError(self.name, info["TrainingJobStatus"], stop_reason(info))
        return info

    # -- the run, as a notebook shows it --------------------------------------------------------
    def _request(self) -> dict[str, Any]:
        return self.describe()

    def _log_lines(self) -> list[str]:
        raise NotImplementedError

    def metrics_history(self) -> History:
        """Per-epoch series ``{metric: [(epoch, value), ...]}`` read from the log with the job's metric regexes."""
        info = self._request()
        kind = kind_of(info)
        step = "epoch"
        if kind:
            from container.schema import Schema

            step = Schema.load(kind).progress.get("epoch", "epoch")
        return metrics_history(info.get("AlgorithmSpecification", {}).get("MetricDefinitions", []),
                               self._log_lines(), step=step)

    def plot(self, path: str | Path | None = None) -> Path:
        """Losses and scores per epoch, saved as a PNG (default ``<job>.png``); returns its path."""
        from sdk.jobs.plot import plot_history

        info = self._request()
        kind = kind_of(info)
        step = "epoch"
        if kind:
            from container.schema import Schema

            step = Schema.load(kind).progress.get("epoch", "epoch")
        return plot_history(self.metrics_history(), path or f"{self.name}.png", title=self.name, step=step)

    @property
    def mlflow_run(self) -> dict[str, str] | None:
        """The job's MLflow run, from the line the image prints when it opens it (``launch_job(mlflow=...)``):
        ``run_id``, ``experiment_id`` and, for an http(s) server, ``link`` (the run's page). None without one."""
        from sdk.jobs.mlflow import run_of

        return run_of(self._log_lines())

    def restart(self, **overrides: Any) -> Any:
        """Resume this stopped job from its checkpoints: ``launch_job(resume=self, **overrides)``."""
        return launch_job(resume=self, session=getattr(self, "session", None), **overrides)

    def fetch_model(self, dest: str | Path | None = None) -> FetchedModel:
        """Download and unpack this job's ``model.tar.gz`` (see :func:`sdk.fetch_model` for ``dest``)."""
        return fetch_job_model(self.name, self.describe(), dest=dest, session=getattr(self, "session", None))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Job(_Handle):
    """A SageMaker training job. ``Job.attach(name)`` picks one up from another session."""

    def __init__(self, name: str, *, session: Any = None, request: dict[str, Any] | None = None) -> None:
        from sdk._session import aws_session

        self.name = name
        self.session = aws_session(session)
        self.request = request
        with aws_errors("connecting to SageMaker"):
            self.sagemaker = self.session.client("sagemaker")

    @classmethod
    def attach(cls, name: str, *, session: Any = None) -> Job:
        job = cls(name, session=session)
        job.describe()  # NotFoundError now rather than later
        return job

    def describe(self) -> dict[str, Any]:
        with aws_errors(f"describing training job {self.name}"):
            return self.sagemaker.describe_training_job(TrainingJobName=self.name)

    def stop(self) -> None:
        with aws_errors(f"stopping training job {self.name}"):
            self.sagemaker.stop_training_job(TrainingJobName=self.name)

    # -- logs -----------------------------------------------------------------------------------
    def _log_reader(self) -> _CloudWatchReader:
        return _CloudWatchReader(self.session, self.name)

    def logs(self, *, out: IO[str] | None = None) -> str:
        """Everything logged so far (all hosts); also written to ``out`` when given."""
        text = "\n".join(self._log_reader().read())
        if out is not None and text:
            print(text, file=out)
        return text

    def _log_lines(self) -> list[str]:
        return self._log_reader().read()

    def wait(self, *, logs: bool = False, progress: bool = True, poll: float = 10.0, timeout: float | None = None,
             out: IO[str] | None = None) -> dict[str, Any]:
        """Follow the job to its end: one updating progress line (epoch k/N, elapsed, ETA, latest mAP),
        and with ``logs=True`` its log lines as well. WaitTimeoutError after ``timeout`` seconds."""
        out = out or sys.stdout
        reader = self._log_reader() if (logs or progress) else None
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status = None
        bar = None
        while True:
            info = self.describe()
            if progress and bar is None:
                start: Any = info.get("TrainingStartTime") or info.get("CreationTime")
                bar = for_request(self.name, info, kind_of(info),
                                  started=start.timestamp() if hasattr(start, "timestamp") else None)
            status = f"{info['TrainingJobStatus']} - {info.get('SecondaryStatus', '')}"
            done = info["TrainingJobStatus"] in TERMINAL
            self._follow(reader, bar, logs, out, status)
            if not logs and not progress and status != last_status:
                print(f"{self.name}: {status}", file=out, flush=True)
                last_status = status
            if done:
                self._follow(reader, bar, logs, out, status, final=True)  # the last lines land after the status
                return self._raise_unless_completed(info)
            if deadline is not None and time.monotonic() > deadline:
                if bar:
                    out.write("\n")
                raise WaitTimeoutError(f"training job {self.name} still {info['TrainingJobStatus']} after {timeout} s "
                                       "(it keeps running; wait again or job.stop())")
            time.sleep(poll)

    @staticmethod
    def _follow(reader: Any, bar: Any, logs: bool, out: IO[str], status: str, final: bool = False) -> None:
        lines = reader.read() if reader else []
        for line in lines:
            if bar:
                bar.feed(line)
            if logs:
                if bar:
                    out.write("\r" + " " * 100 + "\r")
                print(line, file=out, flush=True)
        if bar:
            bar.status = status.split(" - ")[-1] if " - " in status else status
            bar.show(out, final=final)


class _CloudWatchReader:
    """New log lines of a job on each ``read()``, across its streams (``<job>/algo-N-...``)."""

    def __init__(self, session: Any, job_name: str) -> None:
        with aws_errors("connecting to CloudWatch Logs"):
            self.logs = session.client("logs")
        self.job_name = job_name
        self.tokens: dict[str, str | None] = {}

    def _streams(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": self.job_name + "/"}
        try:
            with aws_errors("listing log streams"):
                while True:
                    page = self.logs.describe_log_streams(**kwargs)
                    names += [s["logStreamName"] for s in page.get("logStreams", [])]
                    if not page.get("nextToken"):
                        break
                    kwargs["nextToken"] = page["nextToken"]
        except NotFoundError:
            return []  # no log group before the first job of the account writes one
        return sorted(names)

    def read(self) -> list[str]:
        lines: list[str] = []
        streams = self._streams()
        for stream in streams:
            host = stream.split("/", 1)[-1].rsplit("-", 1)[0]
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if self.tokens.get(stream):
                    kwargs["nextToken"] = self.tokens[stream]
                with aws_errors(f"reading log stream {stream}"):
                    page = self.logs.get_log_events(**kwargs)
                events = page.get("events", [])
                prefix = f"[{host}] " if len(streams) > 1 else ""
                lines += [prefix + e["message"] for e in events]
                if page.get("nextForwardToken") == self.tokens.get(stream) or not events:
                    self.tokens[stream] = page.get("nextForwardToken")
                    break
                self.tokens[stream] = page.get("nextForwardToken")
        return lines


class LocalJob(_Handle):
    """A job run on this machine (``launch_job(instance_type="local")``), in ``jobs_home()/<name>``."""

    runs_here = True

    def __init__(self, name: str, job_dir: Path, run: Any = None) -> None:
        self.name = name
        self.job_dir = Path(job_dir)
        self._run = run
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    @classmethod
    def attach(cls, name: str) -> LocalJob:
        from sdk.jobs.local import jobs_home

        job_dir = jobs_home() / name
        if not (job_dir / "job.json").is_file():
            raise NotFoundError(f"no local job {name!r} in {jobs_home()}", code="NotFound")
        return cls(name, job_dir)

    def _start(self, timeout: float | None) -> None:
        from sdk.jobs.local import write_record

        def finish() -> None:
            try:
                record = {**self.describe(), **self._run.finish(timeout=timeout)}
                write_record(self.job_dir, record)
            finally:
                self._done.set()

        self._thread = threading.Thread(target=finish, name=f"local-job-{self.name}", daemon=True)
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        from sdk.jobs.local import read_record

        return read_record(self.job_dir)

    def stop(self) -> None:
        if self._run is None:
            raise NotFoundError(f"local job {self.name} is not running in this Python session", code="NotRunning")
        record = self.describe()
        if record["TrainingJobStatus"] == "InProgress":
            from sdk.jobs.local import write_record

            write_record(self.job_dir, {**record, "TrainingJobStatus": "Stopping", "SecondaryStatus": "Stopping",
                                        "StoppedBy": "job.stop() in this Python session"})
        self._run.stop()

    def _request(self) -> dict[str, Any]:
        return self.describe().get("Request", {})

    def _log_lines(self) -> list[str]:
        return self.logs().splitlines()

    def logs(self, *, out: IO[str] | None = None) -> str:
        log = self.job_dir / "log.txt"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if out is not None and text:
            print(text, file=out, end="")
        return text

    def wait(self, *, logs: bool = False, progress: bool = True, poll: float = 0.5, timeout: float | None = None,
             out: IO[str] | None = None) -> dict[str, Any]:
        """Like :meth:`Job.wait`: a progress line, log lines with ``logs=True``, WaitTimeoutError on timeout."""
        out = out or sys.stdout
        log = self.job_dir / "log.txt"
        offset = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        request = self._request()
        bar = for_request(self.name, request, kind_of(request)) if progress else None
        while True:
            finished = self._done.wait(poll) if self._thread else True
            if (logs or bar) and log.exists():
                with log.open(encoding="utf-8", errors="replace") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
                if chunk:
                    for line in chunk.splitlines():
                        if bar:
                            bar.feed(line)
                    if logs:
                        if bar:
                            out.write("\r" + " " * 100 + "\r")
                        print(chunk, file=out, end="", flush=True)
            if bar:
                bar.status = "" if finished else "Training"
                bar.show(out, final=finished)
            if finished:
                return self._raise_unless_completed(self.describe())
            if deadline is not None and time.monotonic() > deadline:
                if bar:
                    out.write("\n")
                raise WaitTimeoutError(f"local job {self.name} still running after {timeout} s "
                                       "(it keeps running; wait again or job.stop())")


def stop_reason(info: dict[str, Any]) -> str:
    """Why a job ended Failed or Stopped, in words: who stopped it and why, not "no reason given"."""
    if info.get("FailureReason"):
        return info["FailureReason"]
    if info.get("TrainingJobStatus") != "Stopped":
        return ""
    secondary = info.get("SecondaryStatus", "")
    stopping = (info.get("Request") or info).get("StoppingCondition", {})
    if secondary == "MaxRuntimeExceeded":
        why = f"it reached max_run ({stopping.get('MaxRuntimeInSeconds', '?')} s); raise max_run to let it finish"
    elif secondary == "MaxWaitTimeExceeded":
        why = (f"managed spot training waited longer than max_wait ({stopping.get('MaxWaitTimeInSeconds', '?')} s) "
               "for capacity; raise max_wait or use on-demand instances")
    elif info.get("StoppedBy"):
        why = f"stopped by {info['StoppedBy']}"
    else:
        why = "stopped by a StopTrainingJob request (you, someone with access in the console or CLI, or a tuning " \
              "job's early stopping)"
    transitions = info.get("SecondaryStatusTransitions") or []
    message = transitions[-1].get("StatusMessage", "") if transitions else ""
    return why + (f" - SageMaker said: {message}" if message else "")


@takes(LaunchSpec)
def launch_job(**kwargs: Any) -> Job | LocalJob:
    """Create a training job of one of this project's images and (by default) follow it to the end.

    Takes every argument of :func:`plan_job` (all checked before anything is uploaded), plus
    ``wait`` (follow the job), ``logs`` (print its log lines while waiting), ``progress`` (one
    updating line: epoch k/N, elapsed, ETA, latest mAP) and ``engine`` (docker or podman, for a
    local run of an image). ``resume=job`` resumes a stopped job from its checkpoints. Returns a
    :class:`Job`, or a :class:`LocalJob` when ``instance_type="local"``. Raises
    :class:`JobFailedError` (job name and reason) when a waited-for job fails or is stopped.
    """
    spec = LaunchSpec.of(kwargs, what="launch_job")
    arguments = spec.job_arguments(omit=("session",))
    follow = {"wait": spec.wait, "logs": spec.logs, "progress": spec.progress}
    if spec.instance_type == LOCAL or isinstance(spec.resume, LocalJob):
        plan = plan_job(**arguments)
        return _launch_local(plan, session=spec.session, engine=spec.engine, **follow)
    plan = plan_job(session=spec.session, **arguments)
    session, _ = session_with_region(spec.session)
    print(f"{plan.request['TrainingJobName']}: {plan.region}", file=sys.stderr)
    request = prepare_inputs(plan, session=session, create_bucket=spec.output_path is None and spec.resume is None)
    with aws_errors(f"creating training job {request['TrainingJobName']}"):
        session.client("sagemaker").create_training_job(**request)
    job = Job(request["TrainingJobName"], session=session, request=request)
    print(f"training job {job.name} created", file=sys.stderr)
    if spec.wait:
        job.wait(logs=spec.logs, progress=spec.progress)
    return job


def _launch_local(plan: Plan, *, wait: bool, logs: bool, progress: bool, session: Any,
                  engine: str | None) -> LocalJob:
    from sdk.jobs.local import LocalRun, jobs_home, write_record

    request = plan.request
    job_dir = jobs_home() / request["TrainingJobName"]
    job_dir.mkdir(parents=True, exist_ok=True)
    s3 = None
    if any(is_s3(c["DataSource"]["S3DataSource"]["S3Uri"]) for c in request["InputDataConfig"]):
        with aws_errors("connecting to S3"):
            s3 = aws_session(session).client("s3")
    run = LocalRun(request, job_dir, kind=plan.kind, image=plan.image_uri, engine=engine, s3=s3)
    write_record(job_dir, {"TrainingJobName": run.name, "TrainingJobStatus": "InProgress",
                           "SecondaryStatus": "Downloading", "Request": request})
    try:
        run.prepare()
        run.start()
    except Exception as err:
        write_record(job_dir, {"TrainingJobName": run.name, "TrainingJobStatus": "Failed",
                               "FailureReason": str(err), "Request": request})
        raise
    job = LocalJob(run.name, job_dir, run)
    job._start(timeout=request["StoppingCondition"]["MaxRuntimeInSeconds"])
    print(f"local job {job.name} started in {job_dir}", file=sys.stderr)
    if wait:
        try:
            job.wait(logs=logs, progress=progress)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM to the CLI: the job is this process's child, it ends too
            _stop_local(job, run)
    return job


def _stop_local(job: LocalJob, run: Any) -> None:
    print(f"\nstopping local job {job.name}: the trainer saves a checkpoint (interrupt again to kill it at once)",
          file=sys.stderr, flush=True)
    try:
        job.stop()
        job._done.wait()
    except KeyboardInterrupt:
        run.kill()
        job._done.wait()
    raise KeyboardInterrupt(f"local job {job.name} stopped ({job.describe()['TrainingJobStatus']}); "
                            f"`python -m sdk resume {job.name} --local` resumes it from its checkpoint")
