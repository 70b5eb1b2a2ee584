"""SageMaker hosting behind the moto server: what moto leaves out of endpoints and batch transform.

moto 5.2 records models, endpoint configurations, endpoints and transform jobs (all at once InService or
Completed, nothing runs), has no ``UpdateEndpoint``, and its ``InvokeEndpoint`` returns canned bodies. This
double hooks moto's handlers (the server runs in this process, spoken to over HTTP):

* every hosting request is checked against botocore's service model first;
* ``CreateEndpoint`` / ``UpdateEndpoint``: ``Creating``/``Updating`` while a worker thread plays the instance:
  downloads the Model's ``ModelDataUrl`` (a Model made from a registry version: the version's) from moto's S3,
  unpacks it, starts the real ``serve`` with the
  Model's ``Environment`` (``sdk.serving.hosting.LocalServer``: a process, or the image in podman) and sets
  ``InService`` once ``/ping`` answers 200, or ``Failed`` with the reason;
* ``InvokeEndpoint`` (sagemaker-runtime) goes to that server; a 4xx/5xx from it becomes SageMaker's
  ``ModelError`` (HTTP 424 with ``OriginalStatusCode`` and ``OriginalMessage``);
* ``DeleteEndpoint`` stops the server (SIGTERM);
* ``InvokeEndpointAsync`` (moto's writes a canned answer to a bucket of its own): answers ``202`` with the
  output and failure locations SageMaker would give (``<S3OutputPath>/<id>.out``,
  ``<S3FailurePath>/<id>-error.out``) and, on a worker thread, reads the input object, sends it to the
  endpoint's server and writes the answer (with the server's Content-Type) or the failure message there.
  ``async_gate`` holds that worker until a test sets it: "not answered yet" is a state the test makes, not a
  race;
* Application Auto Scaling requests are checked against botocore's model too (moto keeps targets and policies).
* ``CreateTransformJob``: ``InProgress`` while a worker serves the model, sends each input object (split by
  line when asked) to ``/invocations`` and writes ``<key>.out`` under the output path, then ``Completed``.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3
from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from container.archive import safe_extract
from sdk.jobs.request import split_s3
from sdk.serving.hosting import LocalServer, transform_objects
from tests.sdk.double import check_against_service_model

# InvokeEndpointAsync's members sent as headers (botocore's model: sagemaker-runtime)
ASYNC_HEADERS = {"ContentType": "X-Amzn-SageMaker-Content-Type", "Accept": "X-Amzn-SageMaker-Accept",
                 "CustomAttributes": "X-Amzn-SageMaker-Custom-Attributes",
                 "InferenceId": "X-Amzn-SageMaker-Inference-Id", "InputLocation": "X-Amzn-SageMaker-InputLocation",
                 "S3OutputPathExtension": "X-Amzn-SageMaker-S3OutputPathExtension",
                 "Filename": "X-Amzn-SageMaker-Filename", "RequestTTLSeconds": "X-Amzn-SageMaker-RequestTTLSeconds",
                 "InvocationTimeoutSeconds": "X-Amzn-SageMaker-InvocationTimeoutSeconds"}


class HostingDouble:
    def __init__(self, endpoint: str, *, image_runner: str | None = None, engine: str | None = None) -> None:
        self.endpoint = endpoint
        self.image_runner = image_runner
        self.engine = engine
        self.servers: dict[str, LocalServer] = {}  # endpoint name -> its server
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.configs: dict[str, dict[str, Any]] = {}  # endpoint name -> the configuration it serves
        self.async_gate = threading.Event()
        self.async_gate.set()
        self._tmp = tempfile.TemporaryDirectory(prefix="sm-hosting-")
        self.session = boto3.Session(region_name="us-east-1")

    # -- hooks ------------------------------------------------------------------------------------------------
    def install(self, monkeypatch: Any) -> None:
        double = self

        def checked(operation: str, original: Any) -> Any:
            def handler(response: SageMakerResponse) -> Any:
                request = json.loads(response.body)
                check_against_service_model(operation, request)
                double.requests.append((operation, request))
                return original(response)
            return handler

        def checked_scaling(operation: str, original: Any) -> Any:
            def handler(response: ApplicationAutoScalingResponse) -> Any:
                request = json.loads(response.body)
                check_against_service_model(operation, request, service="application-autoscaling")
                double.requests.append((operation, request))
                return original(response)
            return handler

        for operation, method in [("CreateModel", "create_model"), ("CreateEndpointConfig", "create_endpoint_config"),
                                  ("DeleteModel", "delete_model"), ("DeleteEndpointConfig", "delete_endpoint_config"),
                                  ("DescribeEndpoint", "describe_endpoint")]:
            monkeypatch.setattr(SageMakerResponse, method, checked(operation, getattr(SageMakerResponse, method)))

        original_create = SageMakerResponse.create_endpoint

        def create_endpoint(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("CreateEndpoint", request)
            double.requests.append(("CreateEndpoint", request))
            result = original_create(response)
            endpoint = response.sagemaker_backend.endpoints[request["EndpointName"]]
            endpoint.endpoint_status = "Creating"
            double._start(double._serve_endpoint, response.sagemaker_backend, endpoint, request["EndpointConfigName"])
            return result

        def update_endpoint(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("UpdateEndpoint", request)
            double.requests.append(("UpdateEndpoint", request))
            backend = response.sagemaker_backend
            endpoint = backend.endpoints[request["EndpointName"]]
            config = backend.describe_endpoint_config(request["EndpointConfigName"])
            endpoint.endpoint_status = "Updating"
            endpoint.endpoint_config_name = request["EndpointConfigName"]
            endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
            double._start(double._serve_endpoint, backend, endpoint, request["EndpointConfigName"])
            return ActionResult({"EndpointArn": endpoint.arn})

        original_delete = SageMakerResponse.delete_endpoint

        def delete_endpoint(response: SageMakerResponse) -> EmptyResult:
            request = json.loads(response.body)
            check_against_service_model("DeleteEndpoint", request)
            double.requests.append(("DeleteEndpoint", request))
            result = original_delete(response)
            server = double.servers.pop(request["EndpointName"], None)
            if server:
                server.stop()
            return result

        original_transform = SageMakerResponse.create_transform_job

        def create_transform_job(response: SageMakerResponse) -> ActionResult:
            request = json.loads(response.body)
            check_against_service_model("CreateTransformJob", request)
            double.requests.append(("CreateTransformJob", request))
            result = original_transform(response)
            job = response.sagemaker_backend.transform_jobs[request["TransformJobName"]]
            job.transform_job_status = "InProgress"
            double._start(double._transform, response.sagemaker_backend, job, request)
            return result

        def invoke_endpoint(response: SageMakerRuntimeResponse) -> Any:
            name = response.path.split("/")[2]
            headers = {k.lower(): v for k, v in response.headers.items()}
            params = {"EndpointName": name, "Body": response.body, "ContentType": headers.get("content-type", ""),
                      "Accept": headers.get("accept", "")}
            if "x-amzn-sagemaker-custom-attributes" in headers:
                params["CustomAttributes"] = headers["x-amzn-sagemaker-custom-attributes"]
            check_against_service_model("InvokeEndpoint", params, service="sagemaker-runtime")
            double.requests.append(("InvokeEndpoint", {k: v for k, v in params.items() if k != "Body"}))
            server = double.servers.get(name)
            if server is None:
                return 400, {"status": 400, "x-amzn-ErrorType": "ValidationError"}, json.dumps(
                    {"message": f"Endpoint {name} of account 123456789012 not found."})
            status, body, content_type = server.invoke(response.body, params["ContentType"],
                                                       attributes=params.get("CustomAttributes", ""),
                                                       accept=params["Accept"] or "application/json")
            # moto takes the HTTP status from the "status" header; this is what SageMaker does with a container's error
            if status >= 400:
                return 424, {"status": 424, "x-amzn-ErrorType": "ModelError"}, json.dumps(
                    {"message": f"Received client error ({status}) from primary with message "
                                f"\"{body.decode(errors='replace')}\"", "OriginalStatusCode": status,
                     "OriginalMessage": body.decode(errors="replace")})
            return 200, {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, body

        def invoke_endpoint_async(response: SageMakerRuntimeResponse) -> Any:
            name = response.path.split("/")[2]
            headers = {k.lower(): v for k, v in response.headers.items()}
            params: dict[str, Any] = {"EndpointName": name}
            for member, header in ASYNC_HEADERS.items():
                if header.lower() in headers:
                    value = headers[header.lower()]
                    params[member] = int(value) if member.endswith("Seconds") else value
            check_against_service_model("InvokeEndpointAsync", params, service="sagemaker-runtime")
            double.requests.append(("InvokeEndpointAsync", params))
            config = double.configs.get(name, {}).get("AsyncInferenceConfig")
            if name not in double.servers or not config:
                why = "not found" if name not in double.servers else "not an asynchronous endpoint"
                return 400, {"status": 400, "x-amzn-ErrorType": "ValidationError"}, json.dumps(
                    {"message": f"Endpoint {name} of account 123456789012 {why}."})
            inference_id = params.get("InferenceId") or str(uuid.uuid4())
            out = config["OutputConfig"]
            folder = "/".join(filter(None, [out["S3OutputPath"].rstrip("/"), params.get("S3OutputPathExtension")]))
            output = f"{folder}/{params.get('Filename') or inference_id + '.out'}"
            failure = f"{(out.get('S3FailurePath') or out['S3OutputPath']).rstrip('/')}/{inference_id}-error.out"
            double._start(double._answer_async, double.servers[name], params, output, failure)
            return 202, {"X-Amzn-SageMaker-OutputLocation": output, "X-Amzn-SageMaker-FailureLocation": failure}, \
                json.dumps({"InferenceId": inference_id})

        for operation in ("RegisterScalableTarget", "PutScalingPolicy", "DescribeScalingPolicies",
                          "DeleteScalingPolicy", "DeregisterScalableTarget"):
            method = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
            monkeypatch.setattr(ApplicationAutoScalingResponse, method,
                                checked_scaling(operation, getattr(ApplicationAutoScalingResponse, method)))
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint_async", invoke_endpoint_async)
        monkeypatch.setattr(SageMakerResponse, "create_endpoint", create_endpoint)
        monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
        monkeypatch.setattr(SageMakerResponse, "delete_endpoint", delete_endpoint)
        monkeypatch.setattr(SageMakerResponse, "create_transform_job", create_transform_job)
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
        monkeypatch.setattr(SageMakerRuntimeResponse, "use_raw_body", True)  # moto decodes bodies as UTF-8: images

    # -- the instances ------------------------------------------------------------------------------------------
    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _server_for(self, backend: Any, model_name: str, workdir: Path) -> LocalServer:
        model = backend.describe_model(model_name)
        container = model.primary_container
        if "ModelPackageName" in container:  # a Model Registry version: SageMaker serves the package's container
            package = backend.describe_model_package(container["ModelPackageName"])
            inner = package.inference_specification["Containers"][0]
            container = {**inner, "Environment": {**(inner.get("Environment") or {}),
                                                  **(container.get("Environment") or {})}}
        bucket, key = split_s3(container["ModelDataUrl"])
        s3 = self.session.client("s3", endpoint_url=self.endpoint)
        tarball = workdir / "model.tar.gz"
        workdir.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(tarball))
        safe_extract(tarball, workdir / "model")
        server = LocalServer(workdir / "model", image=self.image_runner, engine=self.engine,
                             environment=container.get("Environment") or {}, workers=1,
                             log_path=workdir / "serve.log")
        return server.start(timeout=300)

    def _serve_endpoint(self, backend: Any, endpoint: Any, config_name: str) -> None:
        try:
            config = backend.describe_endpoint_config(config_name)
            self.configs[endpoint.endpoint_name] = config
            model_name = config["ProductionVariants"][0]["ModelName"]
            server = self._server_for(backend, model_name, Path(self._tmp.name) / config_name)
            old = self.servers.get(endpoint.endpoint_name)
            self.servers[endpoint.endpoint_name] = server
            if old:
                old.stop()
            endpoint.endpoint_status = "InService"
        except BaseException as err:
            self.errors.append(err)
            endpoint.failure_reason = f"the hosting double failed: {err}"[:1024]
            endpoint.endpoint_status = "Failed"

    def _answer_async(self, server: LocalServer, params: dict[str, Any], output: str, failure: str) -> None:
        """What an asynchronous endpoint's instance does with one queued request."""
        self.async_gate.wait()
        s3 = self.session.client("s3", endpoint_url=self.endpoint)
        try:
            bucket, key = split_s3(params["InputLocation"])
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            status, answer, content_type = server.invoke(
                body, params.get("ContentType", "application/octet-stream"),
                attributes=params.get("CustomAttributes", ""), accept=params.get("Accept") or "application/json",
                timeout=params.get("InvocationTimeoutSeconds", 900))
        except Exception as err:  # what SageMaker reports when it cannot read the input
            status, answer, content_type = 400, f"cannot read {params['InputLocation']}: {err}".encode(), "text/plain"
        if status < 400:
            bucket, key = split_s3(output)
            s3.put_object(Bucket=bucket, Key=key, Body=answer, ContentType=content_type)
        else:
            bucket, key = split_s3(failure)
            s3.put_object(Bucket=bucket, Key=key, Body=f"Received client error ({status}) from primary with message "
                          f"\"{answer.decode(errors='replace')}\"".encode())

    def _transform(self, backend: Any, job: Any, request: dict[str, Any]) -> None:
        server = None
        try:
            server = self._server_for(backend, request["ModelName"], Path(self._tmp.name) / request["TransformJobName"])
            s3 = self.session.client("s3", endpoint_url=self.endpoint)
            source = request["TransformInput"]
            in_bucket, in_prefix = split_s3(source["DataSource"]["S3DataSource"]["S3Uri"])
            out_bucket, out_prefix = split_s3(request["TransformOutput"]["S3OutputPath"])
            keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=in_bucket,
                                                                                         Prefix=in_prefix)
                    for item in page.get("Contents", []) if not item["Key"].endswith("/")]

            def read(key: str) -> bytes:
                return s3.get_object(Bucket=in_bucket, Key=key)["Body"].read()

            def write(key: str, data: bytes) -> None:
                rel = key[len(in_prefix):].lstrip("/")
                s3.put_object(Bucket=out_bucket, Key=f"{out_prefix.rstrip('/')}/{rel}".lstrip("/"), Body=data)

            failures = transform_objects(
                keys, read, write,
                lambda body, content_type: server.invoke(body, content_type,
                                                         accept=request["TransformOutput"].get("Accept", "")),
                content_type=source.get("ContentType", "application/x-image"), split_type=source.get("SplitType"),
                batch_strategy=request.get("BatchStrategy"), max_payload_mb=request.get("MaxPayloadInMB", 6))
            if failures:
                job.failure_reason = ("ClientError: See job logs for more information. " + "; ".join(failures))[:1024]
                job.transform_job_status = "Failed"
            else:
                job.transform_job_status = "Completed"
        except BaseException as err:
            self.errors.append(err)
            job.failure_reason = f"the hosting double failed: {err}"[:1024]
            job.transform_job_status = "Failed"
        finally:
            if server:
                server.stop()

    def close(self) -> None:
        self.async_gate.set()
        for server in list(self.servers.values()):
            server.stop()
        for thread in self.threads:
            thread.join(60)
        self._tmp.cleanup()
