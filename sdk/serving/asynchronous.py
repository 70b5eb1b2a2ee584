"""Asynchronous endpoints: requests and answers in S3 (up to 1 GB and an hour per request, scale to zero).

* :class:`AsyncConfig` becomes the endpoint configuration's ``AsyncInferenceConfig``
  (``deploy(job, asynchronous=AsyncConfig(output="s3://bucket/answers/"))``);
* :func:`invoke_async` puts a local input in S3 (streamed from disk: a video is never read whole) and calls
  ``InvokeEndpointAsync``; it returns an :class:`AsyncResult`;
* :meth:`AsyncResult.result` waits until SageMaker has written the answer (``<output>/<id>.out``) or the failure
  (``<failures>/<id>-error.out``) and returns the same detections as ``Endpoint.predict`` (a video: one result
  per frame).

No boto3 import: clients come from the endpoint's session.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk._errors import ConfigurationError, InvocationError, NotFoundError, WaitTimeoutError, aws_errors
from sdk.serving.hosting import content_type_of, decode_answer, encode_inputs

MAX_INPUT_BYTES = 1024**3  # SageMaker's cap on one asynchronous request
MAX_INVOCATION_SECONDS = 3600  # InvokeEndpointAsync's InvocationTimeoutSeconds at most
POLL_SECONDS = 5.0  # between looks in S3 while waiting for an answer
INPUTS_FOLDER = "async-inputs"  # beside the answers: s3://<output bucket>/async-inputs/<endpoint>/


@dataclass(frozen=True)
class AsyncConfig:
    """``output``: the S3 prefix SageMaker writes answers to; ``failures``: where failures go (default: beside
    the answers); ``notify``: an SNS topic ARN for both outcomes, or ``{"success": arn, "error": arn}``;
    ``max_concurrent``: requests one instance works on at once (SageMaker's default when None)."""

    output: str
    failures: str | None = None
    notify: str | dict[str, str] | None = None
    max_concurrent: int | None = None

    def to_request(self) -> dict[str, Any]:
        from sdk.jobs.request import split_s3

        split_s3(self.output)
        if self.failures:
            split_s3(self.failures)
        # failures named always: without S3FailurePath SageMaker gives no FailureLocation to wait on
        config: dict[str, Any] = {"S3OutputPath": self.output,
                                  "S3FailurePath": self.failures or self.output.rstrip("/") + "/failures/"}
        if self.notify:
            topics = {"success": self.notify, "error": self.notify} if isinstance(self.notify, str) else self.notify
            unknown = set(topics) - {"success", "error"}
            if unknown:
                raise ConfigurationError(f"AsyncConfig notify takes 'success' and 'error' topics, not "
                                         f"{sorted(unknown)}")
            for topic in topics.values():
                if not str(topic).startswith("arn:"):
                    raise ConfigurationError(f"AsyncConfig notify: {topic!r} is not an SNS topic ARN")
            config["NotificationConfig"] = {f"{k.title()}Topic": v for k, v in topics.items()}
        request: dict[str, Any] = {"OutputConfig": config}
        if self.max_concurrent is not None:
            if not 1 <= self.max_concurrent <= 1000:
                raise ConfigurationError(f"AsyncConfig max_concurrent must be 1..1000, got {self.max_concurrent}")
            request["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": self.max_concurrent}
        return request


class AsyncResult:
    """One asynchronous request. ``done()`` asks S3 once; ``result(timeout)`` waits for the answer."""

    def __init__(self, s3: Any, inference_id: str, output: str, failure: str | None, input: str) -> None:
        self.s3 = s3
        self.inference_id = inference_id
        self.output = output
        self.failure = failure
        self.input = input

    def _head(self, uri: str | None) -> dict[str, Any] | None:
        if not uri:
            return None
        from sdk.jobs.request import split_s3

        bucket, key = split_s3(uri)
        try:
            with aws_errors(f"looking for {uri}"):
                return self.s3.head_object(Bucket=bucket, Key=key)
        except NotFoundError:
            return None

    def _read(self, uri: str) -> tuple[bytes, str]:
        from sdk.jobs.request import split_s3

        bucket, key = split_s3(uri)
        with aws_errors(f"reading {uri}"):
            answer = self.s3.get_object(Bucket=bucket, Key=key)
            return answer["Body"].read(), answer.get("ContentType") or ""

    def done(self) -> bool:
        return self._head(self.output) is not None or self._head(self.failure) is not None

    def result(self, timeout: float = MAX_INVOCATION_SECONDS, *, poll: float | None = None) -> Any:
        """The detections (as ``predict`` returns them); InvocationError with SageMaker's failure message;
        WaitTimeoutError after ``timeout`` seconds (the request itself goes on)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._head(self.output) is not None:
                body, content_type = self._read(self.output)
                if "json" not in content_type:  # S3 may not keep the type: JSON lines are several documents
                    content_type = "application/jsonlines" if body.strip().count(b"\n") else "application/json"
                return decode_answer(200, body, content_type)
            if self._head(self.failure) is not None:
                text = self._read(self.failure or "")[0].decode("utf-8", "replace")
                status = re.search(r"\((\d{3})\)", text)
                raise InvocationError(f"the asynchronous request {self.inference_id} failed: {text.strip()[:2000]}",
                                      status=int(status.group(1)) if status else 500)
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"no answer to asynchronous request {self.inference_id} after {timeout:.0f} s "
                                       f"(it goes on: AsyncResult.result() again, or read {self.output})")
            time.sleep(POLL_SECONDS if poll is None else poll)

    def __repr__(self) -> str:
        return f"AsyncResult({self.inference_id!r}, output={self.output!r})"


def upload_input(s3: Any, source: Any, prefix: str, *, content_type: str | None = None) -> tuple[str, str]:
    """``(s3 uri, content type)`` of the request body: an ``s3://`` URI as it is, a local file uploaded as it is
    (streamed), anything ``predict`` takes (bytes, PIL, array, a list) encoded as ``predict`` sends it."""
    from sdk.jobs.request import split_s3

    if isinstance(source, str) and source.startswith("s3://"):
        split_s3(source)
        return source, content_type or content_type_of(source)
    bucket, key_prefix = split_s3(prefix if prefix.endswith("/") else prefix + "/")
    name = uuid.uuid4().hex
    if isinstance(source, (str, Path)) and Path(source).expanduser().is_file():
        path = Path(source).expanduser()
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise ConfigurationError(f"{path} is {size / 2**30:.2f} GiB; an asynchronous request takes at most 1 GiB: "
                                     "split the video")
        kind = content_type or content_type_of(path.name)
        key = f"{key_prefix}{name}{path.suffix.lower()}"
        with aws_errors(f"uploading {path} to s3://{bucket}/{key}"):
            s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": kind})
        return f"s3://{bucket}/{key}", kind
    body, kind, _ = encode_inputs(source)
    key = f"{key_prefix}{name}"
    with aws_errors(f"uploading the request to s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type or kind)
    return f"s3://{bucket}/{key}", content_type or kind


def inputs_prefix(output: str, endpoint: str) -> str:
    """Where local inputs go by default: ``s3://<bucket of the answers>/async-inputs/<endpoint>/``."""
    from sdk.jobs.request import split_s3

    bucket, _ = split_s3(output)
    return f"s3://{bucket}/{INPUTS_FOLDER}/{endpoint}/"


def invoke_async(runtime: Any, s3: Any, endpoint: str, async_config: dict[str, Any], source: Any, *,
                 attributes: str = "", content_type: str | None = None, input_prefix: str | None = None,
                 inference_id: str | None = None, timeout: int | None = None) -> AsyncResult:
    output = async_config["OutputConfig"]["S3OutputPath"]
    location, kind = upload_input(s3, source, input_prefix or inputs_prefix(output, endpoint),
                                  content_type=content_type)
    request: dict[str, Any] = {"EndpointName": endpoint, "InputLocation": location, "ContentType": kind,
                               "Accept": "application/json"}
    if attributes:
        request["CustomAttributes"] = attributes
    if inference_id:
        request["InferenceId"] = inference_id
    if timeout is not None:
        if not 1 <= timeout <= MAX_INVOCATION_SECONDS:
            raise ConfigurationError(f"timeout must be 1..{MAX_INVOCATION_SECONDS} s, got {timeout}")
        request["InvocationTimeoutSeconds"] = int(timeout)
    with aws_errors(f"invoking endpoint {endpoint} asynchronously"):
        answer = runtime.invoke_endpoint_async(**request)
    return AsyncResult(s3, answer["InferenceId"], answer["OutputLocation"], answer.get("FailureLocation"), location)

