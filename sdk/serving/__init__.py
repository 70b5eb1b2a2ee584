"""Serve a trained model: SageMaker endpoints (instances or serverless), batch transform, or this machine.

    from sdk.serving import deploy, transform, ServerlessConfig

    endpoint = deploy(job, instance_type="ml.m5.large")                 # a Job, a job name, or "latest"
    endpoint.predict("photo.jpg", conf=0.4)     # -> {"model", "width", "height", "detections": [...]}
    endpoint.predict(["a.jpg", "b.png"])        # -> one result per image, in order
    endpoint.update(instance_count=2)
    endpoint.delete()                           # the endpoint, and the config and model deploy created

    deploy(job, serverless=ServerlessConfig(memory=4096, concurrency=5))
    big = deploy(job, asynchronous=AsyncConfig(output="s3://bucket/answers/"),  # requests and answers in S3
                 autoscaling=Autoscaling(min=0, max=4))                         # scales to zero on the backlog
    big.predict_async("clip.mp4", track=True).result(timeout=3600)   # -> one result per frame, with track ids
    transform(job, "s3://bucket/images/", "s3://bucket/detections/")  # <key>.out per image
    local = deploy(job_or_folder, instance_type="local")                # serve on 127.0.0.1 (image= for a container)

The Model is the training image (the job's ``TrainingImage``) with the job's ``model.tar.gz``: the image's
``serve`` reads it as training wrote it. Names default to the job's; everything deploy creates is tagged
``sm-detectors:created-for=<endpoint>`` so that ``delete`` (and ``python -m sdk undeploy``) removes exactly
that. See docs/serving.md for the request and response contract.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from container.serving import variant as serving_image
from container.serving.protocol import BODY_TIMEOUT_ENV, ENV_MAX, MAX_BODY_MB_ENV, MAX_IMAGES_ENV
from container.serving.resources import WEIGHTS_ENV
from container.serving.video import ASYNC_BODY_SECONDS, ASYNC_INVOCATION_SECONDS, INVOCATION_SECONDS_ENV
from sdk._errors import ConfigurationError, DeployFailedError, NotFoundError, WaitTimeoutError, aws_errors
from sdk.jobs.model_registry import DEFAULT_INSTANCE_TYPE
from sdk.serving.asynchronous import AsyncConfig, AsyncResult, invoke_async
from sdk.serving.autoscaling import Autoscaling
from sdk.serving.hosting import LocalServer, custom_attributes, decode_answer, encode_inputs, free_port

LOCAL = "local"
CREATED_TAG = "sm-detectors:created-for"
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)  # MB, SageMaker's allowed sizes
POLL_SECONDS = 15.0  # between status checks while waiting (endpoints take minutes)


@dataclass(frozen=True)
class ServerlessConfig:
    """A serverless endpoint: ``memory`` in MB (1024..6144 in steps of 1024), ``concurrency`` (1..200)."""

    memory: int = 4096
    concurrency: int = 5

    def to_request(self) -> dict[str, int]:
        if self.memory not in SERVERLESS_MEMORY:
            raise ConfigurationError(f"serverless memory must be one of {SERVERLESS_MEMORY} MB, got {self.memory}")
        if not 1 <= self.concurrency <= 200:
            raise ConfigurationError(f"serverless concurrency must be 1..200, got {self.concurrency}")
        return {"MemorySizeInMB": self.memory, "MaxConcurrency": self.concurrency}


@dataclass(frozen=True)
class ModelSource:
    """What a Model is made of: the image URI, the model.tar.gz URI, the role, a base name."""

    image: str
    model_data: str
    role: str
    name: str


# -- what to deploy ------------------------------------------------------------------------------------------
def _session(session: Any) -> Any:
    from sdk._session import aws_session

    return aws_session(session)  # the region rule of every command (AWS_REGION included)


def _training_job(job_or_model: Any, session: Any) -> dict[str, Any] | None:
    """``describe_training_job`` for a Job handle, a job name or "latest"; None for an S3 model URI."""
    from sdk.jobs.job import Job

    if isinstance(job_or_model, str) and job_or_model.startswith("s3://"):
        return None
    if isinstance(job_or_model, str):
        if job_or_model == "latest":
            from sdk.jobs.fetch import latest_job

            with aws_errors("connecting to SageMaker"):
                client = session.client("sagemaker")
            job_or_model = latest_job(client)
        job_or_model = Job(job_or_model, session=session)
    if not hasattr(job_or_model, "describe"):
        raise ConfigurationError(f"cannot deploy {type(job_or_model).__name__}: give a training job (handle or "
                                 "name), 'latest', or the s3:// URI of a model.tar.gz (with image=)")
    info = job_or_model.describe()
    if info["TrainingJobStatus"] != "Completed":
        raise ConfigurationError(f"training job {info['TrainingJobName']} is {info['TrainingJobStatus']}: only a "
                                 "Completed job has a model to deploy")
    return info


def model_source(job_or_model: Any, *, image: str | None, role: str | None, session: Any) -> ModelSource:
    info = _training_job(job_or_model, session)
    if info is None:
        if not image:
            raise ConfigurationError("deploying a model.tar.gz URI needs image=: the training image that wrote it")
        base = "model"
        model_data = job_or_model
    else:
        base = info["TrainingJobName"]
        model_data = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
        image = image or info["AlgorithmSpecification"].get("TrainingImage")
        role = role or info.get("RoleArn")
    if image:
        from sdk.jobs.request import resolve_image

        image = resolve_image(image).uri or image
    from sdk.jobs.plan import ROLE_ENV

    if not model_data.startswith("s3://"):
        raise ConfigurationError(f"the model is at {model_data or 'no location'}, not in S3: a local job's model is "
                                 "served with instance_type='local'")
    role = role or next((os.environ[k] for k in ROLE_ENV if os.environ.get(k)), None)
    if not role:
        raise ConfigurationError("no role: pass role='arn:aws:iam::<account>:role/<name>' (SageMaker pulls the image "
                                 "and the model with it) or set SM_DETECTORS_ROLE")
    if not image:
        raise ConfigurationError("no image: pass image=<the training image URI>")
    return ModelSource(image=image, model_data=model_data, role=role, name=base)


def serving_variant(image: str, session: Any) -> str:
    """The training image's serving variant (``IMAGE:TAG-serve``: ONNX Runtime, no torch, workers ready in about
    a second) when ``build-and-push.sh NAME yolo-serve TAG`` pushed it to the same ECR repository; else ``image``,
    with a line saying how to get the variant (the full image serves the ONNX export as well, it starts slower)."""
    from sdk.jobs.request import EcrImage

    tag = serving_image.serving_tag(image)
    ecr = EcrImage.parse(tag) if tag else None
    if tag is None or ecr is None or ecr.tag is None or ecr.digest is not None:
        return image
    try:
        client = session.client("ecr", region_name=ecr.region)
        client.describe_images(registryId=ecr.account, repositoryName=ecr.repository, imageIds=[{"imageTag": ecr.tag}])
    except Exception as err:  # not pushed (ImageNotFound, RepositoryNotFound), or no ecr:DescribeImages
        why = getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__
        print(f"note: weights='onnx' runs in {image} (no serving variant {tag}: {why}); "
              f"`./build-and-push.sh {ecr.repository} yolo-serve {ecr.tag.removesuffix(serving_image.TAG_SUFFIX)}` "
              "pushes the torch-free variant (under 1.5 GB, workers ready in about a second), which deploy then uses",
              file=sys.stderr)
        return image
    print(f"note: the ONNX export is served by the serving variant {tag} (no torch)", file=sys.stderr)
    return tag


def _environment(environment: dict[str, str] | None, weights: str | None) -> dict[str, str]:
    env = {str(k): str(v) for k, v in (environment or {}).items()}
    if weights:
        env[WEIGHTS_ENV] = weights
    return env


def _variant(model_name: str, instance_type: str, instance_count: int,
             serverless: ServerlessConfig | None) -> dict[str, Any]:
    if serverless is not None:
        return {"VariantName": "AllTraffic", "ModelName": model_name, "ServerlessConfig": serverless.to_request()}
    if not instance_type.startswith("ml."):
        raise ConfigurationError(f"instance_type {instance_type!r} is not a SageMaker hosting instance type "
                                 f"({DEFAULT_INSTANCE_TYPE}, ml.g4dn.xlarge, ...) or 'local'")
    if instance_count < 1:
        raise ConfigurationError(f"instance_count must be at least 1, got {instance_count}")
    return {"VariantName": "AllTraffic", "ModelName": model_name, "InstanceType": instance_type,
            "InitialInstanceCount": instance_count, "InitialVariantWeight": 1.0}


# -- endpoints -----------------------------------------------------------------------------------------------
class Endpoint:
    """A SageMaker endpoint. ``Endpoint.attach(name)`` picks one up from another session."""

    def __init__(self, name: str, *, session: Any = None, poll: float | None = None) -> None:
        self.name = name
        self.poll = poll  # seconds between status checks while waiting
        self.scaling: list[str] = []  # what deploy registered with Application Auto Scaling, kind:name
        self.session = _session(session)
        with aws_errors("connecting to SageMaker"):
            self.sagemaker = self.session.client("sagemaker")
            self.runtime = self.session.client("sagemaker-runtime")

    @classmethod
    def attach(cls, name: str, *, session: Any = None, poll: float | None = None) -> Endpoint:
        endpoint = cls(name, session=session, poll=poll)
        endpoint.describe()
        return endpoint

    def describe(self) -> dict[str, Any]:
        with aws_errors(f"describing endpoint {self.name}"):
            return self.sagemaker.describe_endpoint(EndpointName=self.name)

    @property
    def status(self) -> str:
        return self.describe()["EndpointStatus"]

    def wait(self, *, poll: float | None = None, timeout: float = 3600, out: Any = None) -> dict[str, Any]:
        """Until ``InService``; DeployFailedError with SageMaker's reason if it fails."""
        out = out or sys.stderr
        poll = poll if poll is not None else self.poll if self.poll is not None else POLL_SECONDS
        return _poll_until("endpoint", self.name, self.describe, "EndpointStatus", done="InService",
                           failed=("Failed", "OutOfService"), poll=poll, timeout=timeout, out=out)

    def predict(self, images: Any, *, conf: float | None = None, iou: float | None = None,
                max_det: int | None = None) -> Any:
        """Detections for an image (path, bytes, PIL image, RGB array) or a list or folder of them."""
        body, content_type, _ = encode_inputs(images)
        kwargs: dict[str, Any] = {"EndpointName": self.name, "Body": body, "ContentType": content_type,
                                  "Accept": "application/json"}
        attributes = custom_attributes(conf, iou, max_det)
        if attributes:
            kwargs["CustomAttributes"] = attributes
        from botocore.exceptions import ClientError

        with aws_errors(f"invoking endpoint {self.name}"):
            try:
                response = self.runtime.invoke_endpoint(**kwargs)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == "ModelError":  # the container answered 4xx/5xx
                    raise _model_error(err) from err
                raise
        return decode_answer(200, response["Body"].read(), response.get("ContentType", "application/json"))

    def predict_async(self, source: Any, *, conf: float | None = None, iou: float | None = None,
                      max_det: int | None = None, track: bool = False, tracker: str | None = None,
                      content_type: str | None = None, input_prefix: str | None = None,
                      inference_id: str | None = None, timeout: int | None = None) -> AsyncResult:
        """An asynchronous endpoint's answer, later: ``source`` is an image or a video (path, bytes, PIL image,
        RGB array, or an ``s3://`` URI used where it is). A local file is uploaded (streamed) under
        ``input_prefix`` (default ``s3://<answers' bucket>/async-inputs/<endpoint>/``). ``track=True``: a video's
        detections carry track ids. ``AsyncResult.result(timeout)`` waits for the answer."""
        config = self._config().get("AsyncInferenceConfig")
        if not config:
            raise ConfigurationError(f"endpoint {self.name} is a real-time endpoint: predict() it, or deploy with "
                                     "asynchronous=AsyncConfig(output='s3://...') for predict_async")
        attributes = ",".join(filter(None, [custom_attributes(conf, iou, max_det), "track=true" if track else "",
                                            f"tracker={tracker}" if track and tracker else ""]))
        with aws_errors("connecting to S3"):
            s3 = self.session.client("s3")
        return invoke_async(self.runtime, s3, self.name, config, source, attributes=attributes,
                            content_type=content_type, input_prefix=input_prefix, inference_id=inference_id,
                            timeout=timeout)

    def _config(self) -> dict[str, Any]:
        name = self.describe()["EndpointConfigName"]
        with aws_errors(f"describing endpoint configuration {name}"):
            return self.sagemaker.describe_endpoint_config(EndpointConfigName=name)

    def _ours(self, arn: str) -> bool:
        try:
            with aws_errors("reading tags"):
                tags = self.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
        except NotFoundError:
            return False
        return any(t["Key"] == CREATED_TAG and t["Value"] == self.name for t in tags)

    def update(self, *, instance_type: str | None = None, instance_count: int | None = None,
               serverless: ServerlessConfig | None = None, wait: bool = True, model: Any = None,
               group: str | None = None) -> Endpoint:
        """Move the endpoint to a new configuration, same name; the old configuration goes if deploy made it.
        ``model`` (a RegisteredModel) or ``group`` (its latest Approved version): serve that version instead
        (a new Model; the old one goes too if deploy made it). Otherwise the same model."""
        old = self._config()
        variant = old["ProductionVariants"][0]
        old_model = variant["ModelName"]
        if model is not None or group is not None:
            from sdk.jobs.model_registry import replace_model

            variant = {**variant, "ModelName": replace_model(self.sagemaker, self.session, old_model, self.name,
                                                             model=model, group=group, tag=CREATED_TAG)}
        if serverless is None and instance_type is None and "ServerlessConfig" in variant:
            serverless = ServerlessConfig(variant["ServerlessConfig"]["MemorySizeInMB"],
                                          variant["ServerlessConfig"]["MaxConcurrency"])
        new_variant = _variant(variant["ModelName"],
                               instance_type or variant.get("InstanceType", DEFAULT_INSTANCE_TYPE),
                               instance_count or variant.get("InitialInstanceCount", 1), serverless)
        kept = {"AsyncInferenceConfig": old["AsyncInferenceConfig"]} if old.get("AsyncInferenceConfig") else {}
        if kept and "ServerlessConfig" in new_variant:  # an asynchronous endpoint stays one
            raise ConfigurationError("an asynchronous endpoint runs on instances: give instance_type, not serverless")
        from sdk.jobs.request import unique_job_name

        config = unique_job_name(self.name[:40])
        with aws_errors(f"updating endpoint {self.name}"):
            self.sagemaker.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[new_variant],
                                                  Tags=[{"Key": CREATED_TAG, "Value": self.name}], **kept)
            self.sagemaker.update_endpoint(EndpointName=self.name, EndpointConfigName=config)
        if wait:
            self.wait()
        if self._ours(old["EndpointConfigArn"]):
            with aws_errors(f"deleting endpoint configuration {old['EndpointConfigName']}"):
                self.sagemaker.delete_endpoint_config(EndpointConfigName=old["EndpointConfigName"])
        if variant["ModelName"] != old_model:
            with aws_errors(f"describing model {old_model}"):
                old_arn = self.sagemaker.describe_model(ModelName=old_model)["ModelArn"]
            if self._ours(old_arn):
                with aws_errors(f"deleting model {old_model}"):
                    self.sagemaker.delete_model(ModelName=old_model)
        return self

    def delete(self) -> list[str]:
        """Delete the endpoint, and its configuration and model where deploy created them (tagged). Returns
        what was deleted, ``kind:name``."""
        config = self._config()
        from sdk.serving.autoscaling import remove

        scaling = remove(self.session, self.name, [v["VariantName"] for v in config["ProductionVariants"]])
        deleted = []
        with aws_errors(f"deleting endpoint {self.name}"):
            self.sagemaker.delete_endpoint(EndpointName=self.name)
        deleted += [f"endpoint:{self.name}", *scaling]
        if self._ours(config["EndpointConfigArn"]):
            with aws_errors(f"deleting endpoint configuration {config['EndpointConfigName']}"):
                self.sagemaker.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
            deleted.append(f"endpoint-config:{config['EndpointConfigName']}")
        for variant in config["ProductionVariants"]:
            try:
                with aws_errors(f"describing model {variant['ModelName']}"):
                    arn = self.sagemaker.describe_model(ModelName=variant["ModelName"])["ModelArn"]
            except NotFoundError:
                continue
            if self._ours(arn):
                with aws_errors(f"deleting model {variant['ModelName']}"):
                    self.sagemaker.delete_model(ModelName=variant["ModelName"])
                deleted.append(f"model:{variant['ModelName']}")
        return deleted

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r})"


def _model_error(err: Any) -> Exception:
    """InvokeEndpoint's ModelError (the container's own error status and message) as an InvocationError."""
    from sdk._errors import InvocationError

    status = int(err.response.get("OriginalStatusCode") or 500)
    try:
        decode_answer(status, (err.response.get("OriginalMessage") or "").encode(), "application/json")
    except InvocationError as translated:
        return translated
    return InvocationError(f"the model server answered {status}", status=status)


class LocalEndpoint:
    """``deploy(..., instance_type="local")``: the image's ``serve`` on 127.0.0.1, same methods as :class:`Endpoint`."""

    def __init__(self, server: LocalServer, name: str) -> None:
        self.server = server
        self.name = name
        self.url = server.url

    @property
    def status(self) -> str:
        process = self.server.process
        return "InService" if process is not None and process.poll() is None else "OutOfService"

    def predict(self, images: Any, *, conf: float | None = None, iou: float | None = None,
                max_det: int | None = None) -> Any:
        body, content_type, _ = encode_inputs(images)
        return decode_answer(*self.server.invoke(body, content_type, attributes=custom_attributes(conf, iou, max_det)))

    def update(self, **_: Any) -> LocalEndpoint:
        raise ConfigurationError("a local endpoint has no instances to change: delete it and deploy again")

    def delete(self) -> list[str]:
        self.server.stop()
        return [f"local:{self.name}"]

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"LocalEndpoint({self.name!r}, {self.url!r})"


def _local_model_dir(job_or_model: Any, dest: Path | None) -> tuple[Path, str]:
    """A folder to serve: a folder as is, a FetchedModel's, else the job's model fetched."""
    from sdk.jobs.fetch import FetchedModel, fetch_model

    if isinstance(job_or_model, FetchedModel):
        return job_or_model.directory, job_or_model.job_name
    if isinstance(job_or_model, (str, Path)) and Path(job_or_model).expanduser().is_dir():
        path = Path(job_or_model).expanduser()
        return path, path.name
    if isinstance(job_or_model, (str, Path)) and str(job_or_model).endswith(".tar.gz") and Path(job_or_model).is_file():
        from container.archive import safe_extract

        target = dest or Path("models") / Path(job_or_model).name.removesuffix(".tar.gz")
        target.mkdir(parents=True, exist_ok=True)
        safe_extract(Path(job_or_model), target)
        return target, target.name
    fetched = fetch_model(job_or_model, dest=dest)
    return fetched.directory, fetched.job_name


def deploy(job_or_model: Any = "latest", *, group: str | None = None, instance_type: str = DEFAULT_INSTANCE_TYPE,
           instance_count: int = 1,
           serverless: ServerlessConfig | None = None, image: str | None = None, role: str | None = None,
           name: str | None = None, weights: str | None = None, environment: dict[str, str] | None = None,
           tags: dict[str, str] | None = None, wait: bool = True, session: Any = None, engine: str | None = None,
           port: int | None = None, workers: int | None = None, poll: float | None = None,
           asynchronous: AsyncConfig | None = None, autoscaling: Autoscaling | None = None,
           ) -> Endpoint | LocalEndpoint:
    """Create a Model (training image + the job's model.tar.gz), an endpoint configuration and an endpoint.

    ``job_or_model``: a Job handle, a job name, ``"latest"``, or an ``s3://.../model.tar.gz`` (with ``image=``);
    for ``instance_type="local"`` also a model folder, a local ``model.tar.gz`` or a :class:`FetchedModel`.
    ``weights``: YOLO ``"best.pt"`` (default) or ``"onnx"`` (the export, run without torch; with no ``image=``, in
    the image's serving variant ``IMAGE:TAG-serve`` where build-and-push.sh pushed one, see :func:`serving_variant`).
    ``asynchronous``: an asynchronous endpoint (requests and answers in S3, an hour per request: videos);
    ``autoscaling``: Application Auto Scaling on the variant (``min=0`` for asynchronous endpoints).
    ``group=``: the latest Approved version of that Model Registry group (sdk.registry), or a RegisteredModel as
    ``job_or_model``: the Model is made from the version (NoApprovedModelError, before anything is created, if
    it is not Approved).
    """
    env = _environment(environment, weights)
    if instance_type == LOCAL:
        for label, value in (("serverless", serverless), ("asynchronous", asynchronous),
                             ("autoscaling", autoscaling)):
            if value is not None:
                raise ConfigurationError(f"{label} applies to SageMaker endpoints, not instance_type='local'")
        if group is not None:
            from sdk.jobs.model_registry import latest_approved

            with aws_errors("connecting to SageMaker"):
                job_or_model = latest_approved(_session(session).client("sagemaker"), group, session)
        model_dir, base = _local_model_dir(job_or_model, None)
        server = LocalServer(model_dir, image=image, engine=engine, port=port or free_port(), workers=workers,
                             environment=env)
        server.start()
        endpoint = LocalEndpoint(server, name or base)
        print(f"serving {model_dir} at {endpoint.url} (POST /invocations)", file=sys.stderr)
        return endpoint
    from sdk.jobs.model_registry import package_source
    from sdk.jobs.request import check_job_name, unique_job_name

    session = _session(session)
    package = package_source(job_or_model, group=group, role=role, session=session)
    if package is None:
        source = model_source(job_or_model, image=image, role=role, session=session)
        if serving_image.serves_onnx(weights) and image is None:
            source = replace(source, image=serving_variant(source.image, session))
    else:
        source = ModelSource(image="", model_data="", role=package.role, name=package.name)
    endpoint_name = check_job_name(name) if name else unique_job_name(source.name[:40])
    tag_list = [{"Key": CREATED_TAG, "Value": endpoint_name},
                *({"Key": k, "Value": v} for k, v in (tags or {}).items())]
    variant = _variant(endpoint_name, instance_type, instance_count, serverless)
    extra = _production(variant, asynchronous, autoscaling, wait)
    if asynchronous is not None:  # the container's budget per request: an hour, not real-time's 60 s (videos)
        env.update(_long_requests(env))
    container: dict[str, Any] = {"Image": source.image, "ModelDataUrl": source.model_data}
    if env:
        container["Environment"] = env
    if package is not None:
        container = package.container(env)
    with aws_errors("connecting to SageMaker"):
        sm = session.client("sagemaker")
    with aws_errors(f"creating model {endpoint_name}"):
        sm.create_model(ModelName=endpoint_name, PrimaryContainer=container, ExecutionRoleArn=source.role,
                        Tags=tag_list)
    with aws_errors(f"creating endpoint configuration {endpoint_name}"):
        sm.create_endpoint_config(EndpointConfigName=endpoint_name, ProductionVariants=[variant], Tags=tag_list,
                                  **extra)
    with aws_errors(f"creating endpoint {endpoint_name}"):
        sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=endpoint_name, Tags=tag_list)
    remote = Endpoint(endpoint_name, session=session)
    remote.poll = poll
    if wait:
        remote.wait()
    if autoscaling is not None:  # the variant must be InService to be registered
        from sdk.serving.autoscaling import register

        remote.scaling = register(session, endpoint_name, variant["VariantName"], autoscaling,
                                  asynchronous=asynchronous is not None, tags=tag_list)
    return remote


def _long_requests(env: dict[str, str]) -> dict[str, str]:
    """The container's time for one request where SageMaker gives an hour (asynchronous endpoints, batch
    transform), not real-time's 60 s; the caller's own values stay."""
    return {INVOCATION_SECONDS_ENV: str(ASYNC_INVOCATION_SECONDS), BODY_TIMEOUT_ENV: str(ASYNC_BODY_SECONDS), **env}


MIN_RECORD_BYTES = 100  # the shortest JSON line with an image in it ({"image": "<a tiny PNG in base64>"})


def _batch_limits(env: dict[str, str], max_payload_mb: int) -> dict[str, str]:
    """The container's request limits for batch transform: a request is whatever SageMaker packs into
    ``MaxPayloadInMB`` (MultiRecord: as many lines as fit), so the body limit is that payload and the record limit
    as many of the shortest records as fit in it (real-time's 20 MB and 64 images would refuse what SageMaker
    sends, failing the job); the caller's own values stay."""
    records = min(int(ENV_MAX), max_payload_mb * 2**20 // MIN_RECORD_BYTES)
    return {MAX_BODY_MB_ENV: str(max_payload_mb), MAX_IMAGES_ENV: str(records), **env}


def _production(variant: dict[str, Any], asynchronous: AsyncConfig | None, autoscaling: Autoscaling | None,
                wait: bool) -> dict[str, Any]:
    """CreateEndpointConfig's AsyncInferenceConfig, after checking what goes with what (before anything exists)."""
    serverless = "ServerlessConfig" in variant
    if serverless and asynchronous is not None:
        raise ConfigurationError("an asynchronous endpoint runs on instances: give instance_type, not serverless")
    if autoscaling is not None:
        if serverless:
            raise ConfigurationError("a serverless endpoint scales itself (up to its concurrency): no autoscaling=")
        autoscaling.check(asynchronous=asynchronous is not None)
        count = variant["InitialInstanceCount"]
        if not max(autoscaling.min, 1) <= count <= autoscaling.max:
            raise ConfigurationError(f"instance_count={count} is outside autoscaling's min..max "
                                     f"({autoscaling.min}..{autoscaling.max})")
        if not wait:
            raise ConfigurationError("autoscaling needs wait=True: a variant is registered once the endpoint is "
                                     "InService")
    return {"AsyncInferenceConfig": asynchronous.to_request()} if asynchronous is not None else {}


# -- batch transform -----------------------------------------------------------------------------------------
class TransformJob:
    """A batch transform job; ``wait()`` follows it, then deletes the Model ``transform`` made for it."""

    def __init__(self, name: str, *, session: Any = None, model_name: str | None = None,
                 poll: float | None = None) -> None:
        self.name = name
        self.poll = poll
        self.session = _session(session)
        self.model_name = model_name
        with aws_errors("connecting to SageMaker"):
            self.sagemaker = self.session.client("sagemaker")

    def describe(self) -> dict[str, Any]:
        with aws_errors(f"describing transform job {self.name}"):
            return self.sagemaker.describe_transform_job(TransformJobName=self.name)

    @property
    def status(self) -> str:
        return self.describe()["TransformJobStatus"]

    @property
    def output(self) -> str:
        return self.describe()["TransformOutput"]["S3OutputPath"]

    def wait(self, *, poll: float | None = None, timeout: float = 24 * 3600, out: Any = None) -> dict[str, Any]:
        out = out or sys.stderr
        poll = poll if poll is not None else self.poll if self.poll is not None else POLL_SECONDS
        seen: list[str] = []
        try:
            return _poll_until("transform job", self.name, self.describe, "TransformJobStatus", done="Completed",
                               failed=("Failed", "Stopped"), poll=poll, timeout=timeout, out=out, seen=seen)
        finally:
            if self.model_name and seen and seen[-1] in ("Completed", "Failed", "Stopped"):
                with aws_errors(f"deleting model {self.model_name}"):
                    self.sagemaker.delete_model(ModelName=self.model_name)
                self.model_name = None

    def results(self) -> dict[str, Any]:
        """``{input key: parsed answer}`` from the output prefix (one result, or a list for line-split input)."""
        import json

        from sdk.jobs.request import split_s3

        bucket, prefix = split_s3(self.output)
        s3 = self.session.client("s3")
        found: dict[str, Any] = {}
        with aws_errors(f"reading the results of {self.name}"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if item["Key"].endswith(".out"):
                        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
                        rel = item["Key"][len(prefix):].lstrip("/").removesuffix(".out")
                        found[rel] = lines[0] if len(lines) == 1 else lines
        return found


def transform(job_or_model: Any, input: str, output: str, *, instance_type: str = DEFAULT_INSTANCE_TYPE,
              instance_count: int = 1, content_type: str = "application/x-image", split_type: str | None = None,
              max_payload_mb: int = 6, concurrency: int | None = None, image: str | None = None,
              role: str | None = None, name: str | None = None, weights: str | None = None,
              environment: dict[str, str] | None = None, wait: bool = True, session: Any = None,
              poll: float | None = None) -> TransformJob:
    """Batch transform: every object under ``input`` (an S3 prefix) through the model, ``<key>.out`` under
    ``output``. Images: the default ``content_type``. Base64 records, one a line: ``application/jsonlines``
    (split by line, results assembled by line)."""
    from sdk.jobs.request import as_prefix, check_job_name, is_s3, unique_job_name

    for label, uri in (("input", input), ("output", output)):
        if not is_s3(uri):
            raise ConfigurationError(f"transform {label} must be an s3:// prefix, got {uri!r}")
    if "jsonlines" in content_type:
        split_type = split_type or "Line"
    if split_type not in (None, "Line", "None"):
        raise ConfigurationError(f"split_type must be 'Line' or None, got {split_type!r}")
    if not 1 <= max_payload_mb <= 100:
        raise ConfigurationError(f"max_payload_mb must be 1..100, got {max_payload_mb}")
    session = _session(session)
    source = model_source(job_or_model, image=image, role=role, session=session)
    job_name = check_job_name(name) if name else unique_job_name(source.name[:40] + "-transform")
    container: dict[str, Any] = {"Image": source.image, "ModelDataUrl": source.model_data}
    env = _environment(environment, weights)
    env.update(_long_requests(env))  # a video object may take minutes; batch transform gives up to an hour
    env.update(_batch_limits(env, max_payload_mb))
    container["Environment"] = env
    tags = [{"Key": CREATED_TAG, "Value": job_name}]
    request: dict[str, Any] = {
        "TransformJobName": job_name, "ModelName": job_name, "MaxPayloadInMB": max_payload_mb,
        "BatchStrategy": "MultiRecord" if split_type == "Line" else "SingleRecord",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": as_prefix(input)}},
                           "ContentType": content_type, "SplitType": split_type or "None"},
        "TransformOutput": {"S3OutputPath": output, "Accept": "application/json",
                            "AssembleWith": "Line" if split_type == "Line" else "None"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "Tags": tags, "ModelClientConfig": {"InvocationsTimeoutInSeconds": ASYNC_INVOCATION_SECONDS},
    }
    if concurrency:
        request["MaxConcurrentTransforms"] = concurrency
    with aws_errors("connecting to SageMaker"):
        sm = session.client("sagemaker")
    with aws_errors(f"creating model {job_name}"):
        sm.create_model(ModelName=job_name, PrimaryContainer=container, ExecutionRoleArn=source.role, Tags=tags)
    try:
        with aws_errors(f"creating transform job {job_name}"):
            sm.create_transform_job(**request)
    except Exception:
        with aws_errors(f"deleting model {job_name}"):
            sm.delete_model(ModelName=job_name)
        raise
    job = TransformJob(job_name, session=session, model_name=job_name, poll=poll)
    if wait:
        job.wait()
    return job


def _poll_until(what: str, name: str, describe: Any, status_key: str, *, done: str, failed: tuple[str, ...],
                poll: float, timeout: float, out: Any, seen: list[str] | None = None) -> dict[str, Any]:
    """Describe until ``done`` (returned), a failed status (DeployFailedError with SageMaker's reason) or the
    timeout (WaitTimeoutError: the resource itself goes on). Each new status is printed once, and kept in ``seen``."""
    seen = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while True:
        info = describe()
        status = info[status_key]
        if not seen or status != seen[-1]:
            print(f"{what} {name}: {status}", file=out, flush=True)
            seen.append(status)
        if status == done:
            return info
        if status in failed:
            raise DeployFailedError(what, name, status, info.get("FailureReason", ""))
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"{what} {name} still {status} after {timeout:.0f} s")
        time.sleep(poll)
