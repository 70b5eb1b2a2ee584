"""SageMaker's part behind a moto server: what moto leaves out of ``CreateTrainingJob``.

moto records a training job and marks it Completed at once; nothing runs. This double hooks
moto's SageMaker handler (the server runs in this process, on 127.0.0.1, spoken to over HTTP):

* a new job starts ``InProgress``; its raw request is checked against botocore's service model;
* a worker thread plays the instance: downloads the channels from moto's S3, writes the
  config files, runs the real ``train`` (``sdk._local.LocalRun``: a process, or the image in
  podman), streams its output to CloudWatch Logs as ``<job>/algo-1-<epoch>``, uploads
  ``model.tar.gz`` where ``ModelArtifacts`` points, and sets the final status, failure reason
  and ``FinalMetricDataList`` (read with the job's own ``MetricDefinitions``);
* ``StopTrainingJob`` (missing from moto) sends SIGTERM, as SageMaker does.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.session import get_session
from botocore.validate import ParamValidator
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.responses import SageMakerResponse

from sdk._local import LocalRun
from sdk._request import resolve_image, split_s3

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def check_against_service_model(operation: str, params: dict[str, Any], service: str = "sagemaker") -> None:
    """Raise if ``params`` would not pass botocore's own validation for ``operation``."""
    model = get_session().get_service_model(service)
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    if report.has_errors():
        raise AssertionError(f"{operation} request does not match the service model:\n{report.generate_report()}")


class SageMakerDouble:
    def __init__(self, endpoint: str, *, image_runner: str | None = None, engine: str | None = None) -> None:
        self.endpoint = endpoint
        self.image_runner = image_runner  # run this local image instead of the request's URI (image tests)
        self.engine = engine
        self.requests: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, LocalRun] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.errors: list[BaseException] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="sm-double-")
        self.session = boto3.Session(region_name="us-east-1")

    # -- moto hooks -------------------------------------------------------------------------------
    def install(self, monkeypatch: Any) -> None:
        original = SageMakerResponse.create_training_job
        double = self

        def create_training_job(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("CreateTrainingJob", request)
            result = original(response)
            job = response.sagemaker_backend.training_jobs[request["TrainingJobName"]]
            double._started(request, job)
            return result

        def stop_training_job(response: SageMakerResponse) -> EmptyResult:
            name = response._get_param("TrainingJobName")
            job = response.sagemaker_backend.training_jobs[name]
            if job.training_job_status == "InProgress":
                job.training_job_status, job.secondary_status = "Stopping", "Stopping"
                double.runs[name].stop()
            return EmptyResult()

        monkeypatch.setattr(SageMakerResponse, "create_training_job", create_training_job)
        monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)

    def _started(self, request: dict[str, Any], job: Any) -> None:
        self.requests[request["TrainingJobName"]] = request
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_end_time = None
        job.final_metric_data_list = []
        # moto swaps in a made-up metric list; SageMaker keeps the request's
        job.algorithm_specification["MetricDefinitions"] = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        thread = threading.Thread(target=self._run, args=(request, job), daemon=True)
        self.threads[request["TrainingJobName"]] = thread
        thread.start()

    # -- the instance -----------------------------------------------------------------------------
    def _run(self, request: dict[str, Any], job: Any) -> None:
        name = request["TrainingJobName"]
        try:
            logs = self.session.client("logs", endpoint_url=self.endpoint)
            s3 = self.session.client("s3", endpoint_url=self.endpoint)
            stream = f"{name}/algo-1-{int(time.time())}"
            try:
                logs.create_log_group(logGroupName=LOG_GROUP)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            buffer: list[str] = []
            lock = threading.Lock()

            def flush() -> None:
                with lock:
                    lines, buffer[:] = list(buffer), []
                if lines:
                    now = int(time.time() * 1000)
                    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                        logEvents=[{"timestamp": now, "message": line} for line in lines])

            def on_line(line: str) -> None:
                if not line:
                    return  # CloudWatch refuses empty events
                with lock:
                    buffer.append(line)

            image = request["AlgorithmSpecification"]["TrainingImage"]
            kind = resolve_image(image).kind
            run = LocalRun(request, Path(self._tmp.name) / name, kind=kind, image=self.image_runner,
                           engine=self.engine, s3=s3, on_line=on_line)
            self.runs[name] = run
            job.secondary_status = "Downloading"
            run.prepare()
            job.secondary_status = "Training"
            run.start()
            while run.process.poll() is None:
                time.sleep(0.3)
                flush()
            result = run.finish()
            flush()
            job.secondary_status = "Uploading"
            bucket, key = split_s3(job.model_artifacts["S3ModelArtifacts"])
            s3.upload_file(str(run.job_dir / "output" / "model.tar.gz"), bucket, key)
            s3.upload_file(str(run.job_dir / "output" / "output.tar.gz"), bucket, key.replace("model.tar.gz", "output.tar.gz"))
            checkpoints = request.get("CheckpointConfig", {}).get("S3Uri")
            if checkpoints:  # SageMaker syncs /opt/ml/checkpoints up while the job runs; here, once at the end
                ck_bucket, ck_prefix = split_s3(checkpoints)
                for path in (run.base / "checkpoints").rglob("*"):
                    if path.is_file():
                        rel = path.relative_to(run.base / "checkpoints").as_posix()
                        s3.upload_file(str(path), ck_bucket, ck_prefix + rel)
            job.final_metric_data_list = [{**m, "Timestamp": job.creation_time} for m in result["FinalMetricDataList"]]
            if result.get("FailureReason"):
                job.failure_reason = result["FailureReason"]
            job.training_end_time = utcnow()
            job.secondary_status = result["TrainingJobStatus"]
            job.training_job_status = result["TrainingJobStatus"]
        except BaseException as err:  # noqa: BLE001 - the test sees it in .errors and as a Failed job
            self.errors.append(err)
            job.failure_reason = f"ClientError: the SageMaker double failed: {err!r}"[:1024]
            job.training_job_status = job.secondary_status = "Failed"

    def join(self, timeout: float = 300) -> None:
        for thread in list(self.threads.values()):
            thread.join(timeout)

    def close(self) -> None:
        for run in self.runs.values():
            run.stop()
        self.join(60)
        self._tmp.cleanup()
