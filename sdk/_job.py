"""Job handles: :class:`Job` for SageMaker, :class:`LocalJob` for ``instance_type="local"``. Same methods.

    job.status            'InProgress', 'Completed', 'Failed', 'Stopping', 'Stopped'
    job.wait(logs=True)   follow until the end; JobFailedError (job name + reason) if it failed or stopped
    job.logs()            the log so far (CloudWatch, or the local log file)
    job.metrics()         final metrics, {name: value}
    job.stop()            SIGTERM now: the trainer saves a checkpoint and exits
    job.fetch_model()     download and unpack model.tar.gz (see sdk.fetch_model)
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from sdk._errors import JobFailedError, NotFoundError, aws_errors
from sdk._unpack import FetchedModel, fetch_job_model

TERMINAL = ("Completed", "Failed", "Stopped")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class _Handle:
    name: str

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
            raise JobFailedError(self.name, info["TrainingJobStatus"], info.get("FailureReason", ""))
        return info

    def fetch_model(self, dest: str | Path | None = None) -> FetchedModel:
        """Download and unpack this job's ``model.tar.gz`` (see :func:`sdk.fetch_model` for ``dest``)."""
        return fetch_job_model(self.name, self.describe(), dest=dest, session=getattr(self, "session", None))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Job(_Handle):
    """A SageMaker training job. ``Job.attach(name)`` picks one up from another session."""

    def __init__(self, name: str, *, session: Any = None, request: dict[str, Any] | None = None) -> None:
        import boto3

        self.name = name
        self.session = session or boto3.Session()
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

    def wait(self, *, logs: bool = True, poll: float = 10.0, timeout: float | None = None,
             out: IO[str] | None = None) -> dict[str, Any]:
        """Follow the job to its end (printing its log, or its status changes, to ``out``)."""
        out = out or sys.stdout
        reader = self._log_reader() if logs else None
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status = None
        while True:
            info = self.describe()
            if reader:
                for line in reader.read():
                    print(line, file=out, flush=True)
            status = f"{info['TrainingJobStatus']} - {info.get('SecondaryStatus', '')}"
            if not logs and status != last_status:
                print(f"{self.name}: {status}", file=out, flush=True)
                last_status = status
            if info["TrainingJobStatus"] in TERMINAL:
                if reader:  # the last lines land after the status changes
                    for line in reader.read():
                        print(line, file=out, flush=True)
                return self._raise_unless_completed(info)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"training job {self.name} still {info['TrainingJobStatus']} after {timeout} s")
            time.sleep(poll)


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

    def __init__(self, name: str, job_dir: Path, run: Any = None) -> None:
        self.name = name
        self.job_dir = Path(job_dir)
        self._run = run
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    @classmethod
    def attach(cls, name: str) -> LocalJob:
        from sdk._local import jobs_home

        job_dir = jobs_home() / name
        if not (job_dir / "job.json").is_file():
            raise NotFoundError(f"no local job {name!r} in {jobs_home()}", code="NotFound")
        return cls(name, job_dir)

    def _start(self, timeout: float | None) -> None:
        from sdk._local import write_record

        def finish() -> None:
            try:
                record = {**self.describe(), **self._run.finish(timeout=timeout)}
                write_record(self.job_dir, record)
            finally:
                self._done.set()

        self._thread = threading.Thread(target=finish, name=f"local-job-{self.name}", daemon=True)
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        from sdk._local import read_record

        return read_record(self.job_dir)

    def stop(self) -> None:
        if self._run is None:
            raise NotFoundError(f"local job {self.name} is not running in this Python session", code="NotRunning")
        record = self.describe()
        if record["TrainingJobStatus"] == "InProgress":
            from sdk._local import write_record

            write_record(self.job_dir, {**record, "TrainingJobStatus": "Stopping", "SecondaryStatus": "Stopping"})
        self._run.stop()

    def logs(self, *, out: IO[str] | None = None) -> str:
        log = self.job_dir / "log.txt"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if out is not None and text:
            print(text, file=out, end="")
        return text

    def wait(self, *, logs: bool = True, poll: float = 0.5, timeout: float | None = None,
             out: IO[str] | None = None) -> dict[str, Any]:
        out = out or sys.stdout
        log = self.job_dir / "log.txt"
        offset = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = self._done.wait(poll) if self._thread else True
            if logs and log.exists():
                with log.open(encoding="utf-8", errors="replace") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
                if chunk:
                    print(chunk, file=out, end="", flush=True)
            if finished:
                return self._raise_unless_completed(self.describe())
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"local job {self.name} still running after {timeout} s")
