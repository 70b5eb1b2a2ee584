"""SageMaker's part behind a moto server: what moto leaves out of ``CreateTrainingJob``.

moto records a training job and marks it Completed at once; nothing runs. This double hooks
moto's SageMaker handler (the server runs in this process, on 127.0.0.1, spoken to over HTTP):

* a new job starts ``InProgress``; its raw request is checked against botocore's service model;
* a worker thread plays the instance: downloads the channels (and the checkpoint prefix, as
  SageMaker does before ``train`` starts, so a resumed job finds ``last.pt``) from moto's S3, writes the
  config files, runs the real ``train`` (``sdk.jobs.local.LocalRun``: a process, or the image in
  podman), streams its output to CloudWatch Logs as ``<job>/algo-1-<epoch>``, uploads
  ``model.tar.gz`` where ``ModelArtifacts`` points, and sets the final status, failure reason
  and ``FinalMetricDataList`` (read with the job's own ``MetricDefinitions``);
* ``StopTrainingJob`` (missing from moto) sends SIGTERM, as SageMaker does;
* ``CreateHyperParameterTuningJob`` (moto records it as Completed with a made-up best job) is
  played by a small tuner: one training job per point of a grid over the ranges (categorical
  values, numeric bounds), created over HTTP like any other job and so really trained, one at a
  time up to ``MaxNumberOfTrainingJobs``; the best by the objective's final value becomes
  ``BestTrainingJob``.

* ``CreateProcessingJob`` (moto records it as Completed at once) is played by N "machines", one thread
  each: every input (an ``S3Prefix``, or a ``ManifestFile`` naming objects under one prefix) downloaded
  from moto's S3 into the machine's own ``/opt/ml/processing``, whole (``FullyReplicated``) or the
  machine's share (``ShardedByS3Key``: each object to one machine), what each got recorded in
  ``process_downloads``; its ``resourceconfig.json`` written, the real ``python -m container convert``
  run with the request's arguments, the output uploaded; the job is Completed when every machine exits 0.

``route_pipeline_targets`` plays EventBridge's SageMaker Pipelines target, which moto lacks: a rule
whose pattern matches an event (S3's own, routed by moto) starts the target pipeline with the target's
``SageMakerPipelineParameters``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.session import get_session
from botocore.validate import ParamValidator
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.responses import SageMakerResponse

from container.signals import PAUSE_VARIABLE
from sdk.jobs.local import LocalRun
from sdk.jobs.request import resolve_image, split_s3

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def check_against_service_model(operation: str, params: dict[str, Any], service: str = "sagemaker") -> None:
    """Raise if ``params`` would not pass botocore's own validation for ``operation``."""
    model = get_session().get_service_model(service)
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    if report.has_errors():
        raise AssertionError(f"{operation} request does not match the service model:\n{report.generate_report()}")


def route_pipeline_targets(monkeypatch: Any) -> None:
    from moto.events.models import Rule
    from moto.sagemaker.models import sagemaker_backends
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(rule: Rule, event: Any, transform_input: bool = True) -> None:
        pipelines = [t for t in rule.targets if parse_arn(t["Arn"]).service == "sagemaker"]
        if pipelines and rule.event_pattern.matches_event(event):
            for target in pipelines:
                arn = parse_arn(target["Arn"])
                sagemaker_backends[arn.account][arn.region].start_pipeline_execution(
                    arn.resource_id, "from-eventbridge",
                    target.get("SageMakerPipelineParameters", {}).get("PipelineParameterList", []),
                    f"started by rule {rule.name}", {}, uuid.uuid4().hex)
        others = [t for t in rule.targets if t not in pipelines]
        if others:
            kept, rule.targets = rule.targets, others
            try:
                original(rule, event, transform_input)
            finally:
                rule.targets = kept

    monkeypatch.setattr(Rule, "send_to_targets", send_to_targets)


class InputError(Exception):
    """A processing input SageMaker would refuse (no objects, a bad manifest): the job fails with it."""


class SageMakerDouble:
    def __init__(self, endpoint: str, *, image_runner: str | None = None, engine: str | None = None) -> None:
        self.endpoint = endpoint
        self.image_runner = image_runner  # run this local image instead of the request's URI (image tests)
        self.engine = engine
        self.requests: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, LocalRun] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.errors: list[BaseException] = []
        self.process_results: dict[str, dict[str, Any]] = {}  # processing job -> host -> CompletedProcess
        self.process_downloads: dict[str, dict[str, dict[str, list[str]]]] = {}  # job -> host -> input -> keys
        # the next training job's process waits at this pause point until it is stopped (SM_DETECTORS_PAUSE_AT):
        # a test that stops a job mid-training makes the moment happen instead of racing the job; one job only,
        # so the restart (same request) trains on
        self.pause_next: str | None = None
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

        original_tuning = SageMakerResponse.create_hyper_parameter_tuning_job

        def create_tuning_job(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("CreateHyperParameterTuningJob", request)
            result = original_tuning(response)
            tuning = response.sagemaker_backend.hyper_parameter_tuning_jobs[request["HyperParameterTuningJobName"]]
            tuning.hyper_parameter_tuning_job_status = "InProgress"
            tuning.best_training_job = tuning.OverallBestTrainingJob = None
            thread = threading.Thread(target=double._tune, args=(request, tuning), daemon=True)
            double.threads[request["HyperParameterTuningJobName"]] = thread
            thread.start()
            return result

        original_processing = SageMakerResponse.create_processing_job

        def create_processing_job(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("CreateProcessingJob", request)
            result = original_processing(response)
            job = response.sagemaker_backend.processing_jobs[request["ProcessingJobName"]]
            job.processing_job_status = "InProgress"
            thread = threading.Thread(target=double._process, args=(request, job), daemon=True)
            double.threads[request["ProcessingJobName"]] = thread
            thread.start()
            return result

        monkeypatch.setattr(SageMakerResponse, "create_processing_job", create_processing_job)
        monkeypatch.setattr(SageMakerResponse, "create_hyper_parameter_tuning_job", create_tuning_job)
        monkeypatch.setattr(SageMakerResponse, "create_training_job", create_training_job)
        monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)

    def _started(self, request: dict[str, Any], job: Any) -> None:
        self.requests[request["TrainingJobName"]] = request
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_end_time = None
        job.final_metric_data_list = []
        # moto swaps in a made-up metric list; SageMaker keeps the request's
        definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        job.algorithm_specification["MetricDefinitions"] = definitions
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
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=LOG_GROUP)
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
            if self.pause_next:
                request = {**request, "Environment": {**request.get("Environment", {}),
                                                      PAUSE_VARIABLE: self.pause_next}}
                self.pause_next = None
            run = LocalRun(request, Path(self._tmp.name) / name, kind=kind, image=self.image_runner,
                           engine=self.engine, s3=s3, on_line=on_line)
            self.runs[name] = run
            job.secondary_status = "Downloading"
            checkpoints = request.get("CheckpointConfig", {}).get("S3Uri")
            if checkpoints:  # SageMaker puts what the prefix holds into /opt/ml/checkpoints before train starts
                ck_bucket, ck_prefix = split_s3(checkpoints)
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ck_bucket, Prefix=ck_prefix):
                    for obj in page.get("Contents", []):
                        dest = run.base / "checkpoints" / obj["Key"][len(ck_prefix):]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        s3.download_file(ck_bucket, obj["Key"], str(dest))
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
            s3.upload_file(str(run.job_dir / "output" / "output.tar.gz"), bucket,
                           key.replace("model.tar.gz", "output.tar.gz"))
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
        except BaseException as err:
            self.errors.append(err)
            job.failure_reason = f"ClientError: the SageMaker double failed: {err!r}"[:1024]
            job.training_job_status = job.secondary_status = "Failed"

    # -- processing machines -----------------------------------------------------------------------
    @staticmethod
    def input_objects(s3: Any, s3_input: dict[str, Any]) -> list[tuple[str, str, str]]:
        """``(bucket, key, local path relative to LocalPath)`` of every object a ``ProcessingS3Input`` names,
        in order. ``S3Prefix``: every key under the prefix, its path the rest of the key. ``ManifestFile``:
        ``S3Uri`` is one object, a JSON array ``[{"prefix": "s3://bucket/p/"}, "suffix", ...]``, naming
        prefix + suffix (API reference, ``S3DataSource.S3Uri``); the suffix is the object's local path, as the
        rest of the key is for a prefix (the layout SageMaker's guide does not spell out for manifests)."""
        bucket, key = split_s3(s3_input["S3Uri"])
        if s3_input["S3DataType"] == "S3Prefix":
            found = [(bucket, obj["Key"], obj["Key"][len(key):].lstrip("/"))
                     for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
                     for obj in page.get("Contents", [])]
            if not found:
                raise InputError(f"no S3 objects found under {s3_input['S3Uri']}")
            return found
        try:
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            raise InputError(f"manifest file {s3_input['S3Uri']} does not exist") from None
        except ValueError as err:
            raise InputError(f"manifest file {s3_input['S3Uri']} is not JSON: {err}") from None
        if not (isinstance(manifest, list) and len(manifest) > 1 and isinstance(manifest[0], dict)
                and str(manifest[0].get("prefix", "")).startswith("s3://")
                and all(isinstance(s, str) and s for s in manifest[1:])):
            raise InputError(f"manifest file {s3_input['S3Uri']}: expected [{{\"prefix\": \"s3://...\"}}, "
                             "\"suffix\", ...] with one suffix or more")
        prefix_bucket, prefix = split_s3(manifest[0]["prefix"])
        return [(prefix_bucket, prefix + suffix, suffix) for suffix in manifest[1:]]

    @staticmethod
    def deal(objects: list[Any], index: int, count: int, distribution: str) -> list[Any]:
        """The objects machine ``index`` of ``count`` downloads. ``ShardedByS3Key``: each object to one machine,
        about 1/count each; how SageMaker picks is not documented, so here contiguous runs of the listed
        order, on purpose unlike the container's own key hash: a container that assumed either would fail."""
        if distribution != "ShardedByS3Key":
            return objects
        return objects[index * len(objects) // count:(index + 1) * len(objects) // count]

    def _process(self, request: dict[str, Any], job: Any) -> None:
        import subprocess
        import sys

        name = request["ProcessingJobName"]
        count = request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        hosts = [f"algo-{i + 1}" for i in range(count)]
        s3 = self.session.client("s3", endpoint_url=self.endpoint)
        spec = request["AppSpecification"]
        root = Path(self._tmp.name) / name
        results: dict[str, subprocess.CompletedProcess] = {}
        downloads: dict[str, dict[str, list[str]]] = {host: {} for host in hosts}  # host -> input -> keys
        self.process_downloads[name] = downloads

        def machine(host: str, plan: list[tuple[str, str, str, Path]]) -> None:
            base = root / host / "processing"
            for input_name, bucket, key, local in plan:
                target = base / local
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
                downloads[host].setdefault(input_name, []).append(key)
            config = root / host / "resourceconfig.json"
            config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
            entry = spec["ContainerEntrypoint"]
            assert entry[:3] == ["python", "-m", "container"], entry  # the image's own entry, run here as a process
            results[host] = subprocess.run(
                [sys.executable, *entry[1:], *spec.get("ContainerArguments", [])], capture_output=True, text=True,
                env={**os.environ, "SM_PROCESSING_DIR": str(base), "SM_RESOURCE_CONFIG": str(config),
                     "PYTHONPATH": str(Path(__file__).resolve().parents[2])},  # this checkout's container/
                timeout=600, check=False)
            if results[host].returncode == 0:
                for out in request["ProcessingOutputConfig"]["Outputs"]:
                    bucket, prefix = split_s3(out["S3Output"]["S3Uri"])
                    local = base / Path(out["S3Output"]["LocalPath"]).relative_to("/opt/ml/processing")
                    for path in sorted(p for p in local.rglob("*") if p.is_file()):
                        key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}".lstrip("/")
                        s3.upload_file(str(path), bucket, key)

        try:
            plans: dict[str, list[tuple[str, str, str, Path]]] = {host: [] for host in hosts}
            local_paths = [item["S3Input"]["LocalPath"] for item in request.get("ProcessingInputs", [])]
            if len(set(local_paths)) != len(local_paths) or not all(
                    p.startswith("/opt/ml/processing/") for p in local_paths):
                raise InputError(f"LocalPath must be unique and begin with /opt/ml/processing/: {local_paths}")
            for item in request.get("ProcessingInputs", []):  # resolved before any machine starts, as SageMaker does
                s3_input = item["S3Input"]
                objects = self.input_objects(s3, s3_input)
                local = Path(s3_input["LocalPath"]).relative_to("/opt/ml/processing")
                for i, host in enumerate(hosts):
                    for bucket, key, rel in self.deal(objects, i, count, s3_input["S3DataDistributionType"]):
                        plans[host].append((item["InputName"], bucket, key, local / rel))
            threads = [threading.Thread(target=machine, args=(host, plans[host])) for host in hosts]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.process_results[name] = results
            failed = {h: r for h, r in results.items() if r.returncode != 0}
            if failed or len(results) != count:
                host, run = next(iter(failed.items())) if failed else ("?", None)
                job.failure_reason = (f"AlgorithmError: {host} exited {run.returncode if run else '?'}: "
                                      f"{(run.stderr if run else '')[-500:]}")[:1024]
                job.processing_job_status = "Failed"
            else:
                job.processing_job_status = "Completed"
        except InputError as err:  # the user's input, as SageMaker reports it: the job fails, the double is fine
            job.failure_reason = f"ClientError: {err}"[:1024]
            job.processing_job_status = "Failed"
        except BaseException as err:
            self.errors.append(err)
            job.failure_reason = f"ClientError: the SageMaker double failed: {err!r}"[:1024]
            job.processing_job_status = "Failed"

    # -- the tuner ----------------------------------------------------------------------------------
    @staticmethod
    def grid(ranges: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
        axes: list[list[tuple[str, str]]] = []
        for kind, items in ranges.items():
            for item in items:
                categorical = kind == "CategoricalParameterRanges"
                values = item["Values"] if categorical else [item["MinValue"], item["MaxValue"]]
                axes.append([(item["Name"], v) for v in values])
        return [dict(point) for point in itertools.product(*axes)]

    def _tune(self, request: dict[str, Any], tuning: Any) -> None:
        name = request["HyperParameterTuningJobName"]
        config = request["HyperParameterTuningJobConfig"]
        definition = request["TrainingJobDefinition"]
        objective = config["HyperParameterTuningJobObjective"]
        sm = self.session.client("sagemaker", endpoint_url=self.endpoint)
        points = self.grid(config["ParameterRanges"])[:config["ResourceLimits"]["MaxNumberOfTrainingJobs"]]
        results = []
        try:
            for point in points:
                job_name = f"{name}-{len(results) + 1:03d}-{uuid.uuid4().hex[:8]}"
                sm.create_training_job(
                    TrainingJobName=job_name, RoleArn=definition["RoleArn"],
                    AlgorithmSpecification=definition["AlgorithmSpecification"],
                    HyperParameters={**definition.get("StaticHyperParameters", {}), **point,
                                     "_tuning_objective_metric": objective["MetricName"]},
                    InputDataConfig=definition["InputDataConfig"], OutputDataConfig=definition["OutputDataConfig"],
                    ResourceConfig=definition["ResourceConfig"], StoppingCondition=definition["StoppingCondition"],
                    **({"CheckpointConfig": definition["CheckpointConfig"]} if "CheckpointConfig" in definition
                       else {}))
                self.threads[job_name].join(600)
                info = sm.describe_training_job(TrainingJobName=job_name)
                values = {m["MetricName"]: m["Value"] for m in info.get("FinalMetricDataList", [])}
                results.append((job_name, info, point, values.get(objective["MetricName"])))
            scored = [r for r in results if r[1]["TrainingJobStatus"] == "Completed" and r[3] is not None]
            if scored:
                pick = max if objective["Type"] == "Maximize" else min
                job_name, info, point, value = pick(scored, key=lambda r: r[3])
                tuning.best_training_job = tuning.OverallBestTrainingJob = {
                    "TrainingJobName": job_name, "TrainingJobArn": info["TrainingJobArn"],
                    "TuningJobName": name, "CreationTime": info["CreationTime"], "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": point,
                    "FinalHyperParameterTuningJobObjectiveMetric": {**objective, "Value": value},
                    "ObjectiveStatus": "Succeeded"}
            completed = sum(r[1]["TrainingJobStatus"] == "Completed" for r in results)
            tuning.training_job_status_counters = {"Completed": completed, "InProgress": 0, "RetryableError": 0,
                                                   "NonRetryableError": len(results) - completed, "Stopped": 0}
            tuning.hyper_parameter_tuning_job_status = "Completed" if scored else "Failed"
        except BaseException as err:
            self.errors.append(err)
            tuning.failure_reason = f"the tuning double failed: {err!r}"[:1024]
            tuning.hyper_parameter_tuning_job_status = "Failed"

    def join(self, timeout: float = 300) -> None:
        for thread in list(self.threads.values()):
            thread.join(timeout)

    def close(self) -> None:
        for run in self.runs.values():
            run.stop()
        self.join(60)
        self._tmp.cleanup()
