"""SageMaker's part, played on this machine: run a ``CreateTrainingJob`` request locally.

:class:`LocalRun` takes the same request ``launch_job`` sends and does what SageMaker does with
it: channels into ``input/data`` (local ``file://`` folders hard-linked, ``s3://`` ones
downloaded), the config files, ``train`` as a process (no container engine needed) or in
docker/podman when an image URI is given, SIGTERM on stop, ``model.tar.gz`` at the end, the
failure reason from ``output/failure`` and the final metrics from the log, read with the
request's own ``MetricDefinitions``. ``launch_job(instance_type="local")`` uses it, and so does
the test suite's SageMaker double behind moto.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from container.contract import CHANNEL_NAME_RULE, SAGEMAKER, Layout, is_channel_name
from container.failure import plain
from container.local import TRAIN_COMMAND, build_tree, pack, train_environ
from sdk._errors import ConfigurationError, user_errors

JOBS_HOME_ENV = "SM_DETECTORS_HOME"


def jobs_home() -> Path:
    """Where local jobs live: ``$SM_DETECTORS_HOME/jobs`` (default ``~/.sm-detectors/jobs``)."""
    return Path(os.environ.get(JOBS_HOME_ENV) or Path.home() / ".sm-detectors").expanduser() / "jobs"


def path_of_uri(uri: str) -> Path:
    """The path of a ``file://`` URI as ``Path.as_uri`` writes it (spaces, ``%``, ``#``, non-ASCII percent-encoded)."""
    rest = uri.removeprefix("file://")
    if rest == uri or not rest.startswith(("/", "localhost/")):
        raise ConfigurationError(f"{uri!r} is not a file:// URI of an absolute path")
    return Path(os.fsdecode(urllib.parse.unquote_to_bytes(rest.removeprefix("localhost"))))


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700): job records, logs and models are nobody else's."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)  # also when it existed before, from a version that left it 0755
    return path


def _private_open(path: str, flags: int) -> int:
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode on open; make it 0600 too
    return fd


def find_engine(preferred: str | None = None) -> str:
    """docker or podman, whichever is installed (``preferred`` first)."""
    for name in ([preferred] if preferred else []) + ["docker", "podman"]:
        if name and shutil.which(name):
            return name
    raise ConfigurationError("local mode with an image needs docker or podman on PATH "
                             "(or pass image='yolo' to run the trainer as a process)")


def final_metrics(definitions: list[dict[str, str]], lines: list[str]) -> list[dict[str, Any]]:
    """The last value each ``MetricDefinitions`` regex finds in the log, as SageMaker reports them."""
    found: dict[str, float] = {}
    compiled = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
    for line in lines:
        for name, regex in compiled:
            m = regex.search(line)
            if m:
                with contextlib.suppress(ValueError, IndexError):
                    found[name] = float(m.group(1))
    return [{"MetricName": name, "Value": value} for name, value in found.items()]


class LocalRun:
    """One job's run in ``job_dir``: ``opt_ml/`` (the tree ``train`` sees), ``output/model.tar.gz``, ``log.txt``."""

    def __init__(self, request: dict[str, Any], job_dir: Path, *, kind: str, image: str | None = None,
                 engine: str | None = None, s3: Any = None, on_line: Callable[[str], None] | None = None) -> None:
        self.request = request
        self.name = request["TrainingJobName"]
        self.job_dir = Path(job_dir)
        self.base = self.job_dir / "opt_ml"
        self.kind = kind
        self.image = image
        self.engine = find_engine(engine) if image else None
        self.s3 = s3
        self.on_line = on_line
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self.started = time.time()
        if self.job_dir.parent == jobs_home():
            private_dir(self.job_dir.parent)
        private_dir(self.job_dir)

    # -- SageMaker's steps ---------------------------------------------------------------------
    def prepare(self) -> None:
        count = self.request["ResourceConfig"].get("InstanceCount", 1)
        if count != 1:
            raise ConfigurationError(f"local mode runs one instance, not {count}")
        staging = self.job_dir / "channels"
        channels: dict[str, Path] = {}
        for channel in self.request.get("InputDataConfig", []):  # every name checked before a byte is written
            if not is_channel_name(channel["ChannelName"]):
                raise ConfigurationError(f"channel name {channel['ChannelName']!r} is not valid ({CHANNEL_NAME_RULE})")
        for channel in self.request.get("InputDataConfig", []):
            name = channel["ChannelName"]
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            if uri.startswith("file://"):
                channels[name] = path_of_uri(uri)
            else:
                from sdk.jobs.s3 import download

                channels[name] = download(self.s3, uri, staging / name, what=f"channel {name!r}")
        for sub in ("model", "output"):  # a fresh result; checkpoints stay, so a re-run resumes
            shutil.rmtree(self.base / sub, ignore_errors=True)
        with user_errors():  # a channel folder the walker refuses (container.walk)
            build_tree(self.base, channels, self.request.get("HyperParameters", {}))
        shutil.rmtree(staging, ignore_errors=True)  # build_tree hard-linked what it needs

    def start(self) -> None:
        env = {**self.request.get("Environment", {}), "TRAINING_JOB_NAME": self.name,
               "TRAINING_JOB_ARN": f"arn:aws:sagemaker:local:000000000000:training-job/{self.name}"}
        if self.image:
            # "--env NAME" takes the value from the engine's own environment: no value on a command line
            # (which any user of the machine can read with ps).
            command = [self.engine, "run", "--rm", "--name", self.name, "-v", f"{self.base}:{SAGEMAKER.base}",
                       *(a for k in env for a in ("--env", k)), self.image, "train"]
            run_env = {**os.environ, **env}
        else:
            command = list(TRAIN_COMMAND)
            run_env = train_environ(self.base, image=self.kind, env=env)
        self.log_file = open(self.job_dir / "log.txt", "a", encoding="utf-8", opener=_private_open)  # noqa: SIM115 (closed by _read)
        # a session of its own: a terminal's Ctrl-C reaches this process only, which stops the job with one
        # SIGTERM as StopTrainingJob does (a second signal would cut the trainer's checkpoint short)
        self.process = subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, errors="replace", bufsize=1, start_new_session=True)
        atexit.register(self._end_with_this_process)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            line = plain(line.rstrip("\n"))  # ultralytics colours its lines even into a pipe: log.txt is a file
            self.lines.append(line)
            self.log_file.write(line + "\n")
            self.log_file.flush()
            if self.on_line:
                self.on_line(line)

    def stop(self) -> None:
        """SIGTERM, as ``StopTrainingJob`` sends; the trainer saves a checkpoint and exits."""
        self._stopping = True
        if self.process and self.process.poll() is None:
            if self.image:
                subprocess.run([str(self.engine), "kill", "--signal", "TERM", self.name], capture_output=True,
                               check=False)
            else:
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the trainer and every process it started (its group), or to the container."""
        self._stopping = True
        if self.process and self.process.poll() is None:
            if self.image:
                subprocess.run([str(self.engine), "kill", self.name], capture_output=True, check=False)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)

    def _end_with_this_process(self, grace: float = 120) -> None:
        """At interpreter exit: a trainer still running is stopped (SIGTERM, then SIGKILL after ``grace``)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stop()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()

    def finish(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for ``train``, then pack and report as ``DescribeTrainingJob`` would."""
        assert self.process
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            code = self.process.wait(timeout=120)
        if not self.image:  # what the trainer left in its group (data loader workers) ends with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._reader:
            self._reader.join()
        self.log_file.close()
        out = self.job_dir / "output"
        out.mkdir(parents=True, exist_ok=True)
        model = pack(self.base, out)
        failure = Layout(self.base).failure
        if code == 0:
            status, reason = "Completed", ""
        elif self._stopping:
            status, reason = "Stopped", ""
        else:
            status = "Failed"
            reason = failure.read_text(encoding="utf-8", errors="replace")[:1024] if failure.exists() else \
                f"AlgorithmError: train exited with code {code} and wrote no failure reason"
        result = {
            "TrainingJobName": self.name,
            "TrainingJobStatus": status,
            "SecondaryStatus": status,
            "ExitCode": code,
            "ModelArtifacts": {"S3ModelArtifacts": model.resolve().as_uri()},
            "FinalMetricDataList": final_metrics(
                self.request["AlgorithmSpecification"].get("MetricDefinitions", []), self.lines),
            "TrainingTimeInSeconds": int(time.time() - self.started),
        }
        if reason:
            result["FailureReason"] = reason
        return result


def write_record(job_dir: Path, record: dict[str, Any]) -> None:
    """``job.json``, replaced atomically, readable by its owner only (it holds the request: environment included)."""
    tmp = job_dir / "job.json.tmp"
    with open(tmp, "w", encoding="utf-8", opener=_private_open) as fh:
        fh.write(json.dumps(record, indent=2, default=str))
    tmp.replace(job_dir / "job.json")


def read_record(job_dir: Path) -> dict[str, Any]:
    return json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
