"""The SDK's exceptions: one small hierarchy, botocore errors translated at the boundary.

    SDKError                      every error this SDK raises
    ├── ConfigurationError        a bad argument: hyperparameter, channel, job name, image... (also ValueError)
    ├── AWSError                  AWS said no; ``.code`` and ``.operation`` carry botocore's details
    │   ├── CredentialsError      no credentials, or expired ones
    │   ├── AccessDeniedError     the credentials or the role may not do this
    │   ├── NotFoundError         no such bucket, key, job or role
    │   └── QuotaError            a service quota or throttling limit was hit
    ├── JobFailedError            the job ended Failed or Stopped; ``.job_name``, ``.status``, ``.reason``
    ├── WaitTimeoutError          ``wait(timeout=...)`` ran out; the job keeps running (also a TimeoutError)
    ├── NoJobError                ``fetch_model("latest", ...)`` found no completed job matching
    ├── FetchError                a model archive refused (unsafe, unreadable, over a cap) or not written
    ├── DeployFailedError         an endpoint or a batch transform job ended Failed; ``.name``, ``.status``, ``.reason``
    ├── NoApprovedModelError      ``deploy(group=...)`` found no Approved version; ``.group``, ``.pending`` (ARNs)
    └── InvocationError           the model server refused a request; ``.status`` (4xx: the input, 5xx: the server)

Nothing here imports boto3: a notebook can catch these without paying for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class SDKError(Exception):
    """Every error this SDK raises."""


class ConfigurationError(SDKError, ValueError):
    """A bad argument, caught before anything is created or uploaded."""


class AWSError(SDKError):
    """AWS refused a call. ``code`` is AWS's error code, ``operation`` the API call."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class CredentialsError(AWSError):
    """No AWS credentials were found, or they expired."""


class AccessDeniedError(AWSError):
    """The credentials (or the job's role) are not allowed to do this."""


class NotFoundError(AWSError):
    """No such bucket, object, job or role."""


class QuotaError(AWSError):
    """A service quota or a throttling limit was hit."""


class JobFailedError(SDKError):
    """A training job ended ``Failed`` or ``Stopped``."""

    def __init__(self, job_name: str, status: str, reason: str) -> None:
        super().__init__(f"training job {job_name} {status.lower()}: {reason or 'no reason given'}"
                         + ("" if status != "Stopped" else f". Resume it from its checkpoints: job.restart() or "
                            f"python -m sdk resume {job_name}"))
        self.job_name = job_name
        self.status = status
        self.reason = reason


class WaitTimeoutError(SDKError, TimeoutError):
    """``wait(timeout=...)`` returned before the job ended (the job itself keeps running)."""


class NoJobError(SDKError):
    """No completed job matched what ``fetch_model`` was asked for."""


class FetchError(SDKError):
    """``fetch_model`` could not unpack the model: an unsafe or unreadable archive, or a disk error."""


class DeployFailedError(SDKError):
    """An endpoint (or a batch transform job) ended ``Failed`` or ``Stopped``."""

    def __init__(self, kind: str, name: str, status: str, reason: str) -> None:
        super().__init__(f"{kind} {name} {status.lower()}: {reason or 'no reason given'}")
        self.name = name
        self.status = status
        self.reason = reason


class NoApprovedModelError(SDKError):
    """A model package group (or the version given) has no Approved version to deploy; nothing was created."""

    def __init__(self, message: str, *, group: str, pending: list[str]) -> None:
        super().__init__(message)
        self.group = group
        self.pending = pending


class InvocationError(SDKError):
    """The model server refused a request. ``status``: its HTTP status; the message is the server's."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound", "ResourceNotFound", "ResourceNotFoundException",
              "NoSuchEntity", "RepositoryNotFoundException"}
_DENIED = {"AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation", "InvalidClientTokenId",
           "SignatureDoesNotMatch"}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_QUOTA = {"ResourceLimitExceeded", "ThrottlingException", "Throttling", "SlowDown", "LimitExceededException",
          "ServiceQuotaExceededException", "TooManyRequestsException"}


# How to give what a command lacks, shell means first (a CLI user has no ``session=``; sdk._session uses these too)
REGION_HINT = ("set AWS_REGION (export AWS_REGION=eu-west-1; or AWS_DEFAULT_REGION, or a region in your AWS "
               "profile: aws configure), or in Python pass session=boto3.Session(region_name=...)")
CREDENTIALS_HINT = ("configure them from a shell: aws configure (or aws sso login), --profile NAME or "
                    "AWS_PROFILE=NAME, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment; "
                    "in Python, session=boto3.Session(profile_name=...)")


def translate(err: Exception, doing: str) -> SDKError:
    """The SDK error for a botocore exception raised while ``doing`` something (a short phrase)."""
    from botocore import exceptions as bx  # only reached once boto3 is loaded anyway

    if isinstance(err, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CredentialsError(f"{doing}: no AWS credentials found; {CREDENTIALS_HINT}", code="NoCredentials")
    if isinstance(err, bx.NoRegionError):
        return ConfigurationError(f"{doing}: no AWS region set; {REGION_HINT}")
    if isinstance(err, bx.EndpointConnectionError):
        return AWSError(f"{doing}: could not reach {err.kwargs.get('endpoint_url', 'AWS')} ({err})", code="Connection")
    if isinstance(err, bx.ParamValidationError):
        return ConfigurationError(f"{doing}: the request does not match the AWS API: {err}")
    if not isinstance(err, bx.ClientError):
        return AWSError(f"{doing}: {err}")
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = error.get("Message") or ""
    operation = err.operation_name
    detail = f"{doing}: {message or code} ({operation}, {code})"
    if code in _NOT_FOUND or (code == "ValidationException" and "Could not find" in message):
        return NotFoundError(detail, code=code, operation=operation)
    if code in _DENIED:
        return AccessDeniedError(detail + ". Check the IAM policy of your credentials and of the job's role",
                                 code=code, operation=operation)
    if code in _EXPIRED:
        return CredentialsError(detail + ". Refresh your credentials", code=code, operation=operation)
    if code in _QUOTA:
        return QuotaError(detail + ". Ask for a quota increase in Service Quotas, or use another instance type",
                          code=code, operation=operation)
    if code == "ValidationException":
        return ConfigurationError(detail)
    return AWSError(detail, code=code, operation=operation)


@contextlib.contextmanager
def user_errors(context: str = "", *, fix: str = "", error: type[SDKError] | None = None) -> Iterator[None]:
    """The images' ``UserError`` (a bad value the shared ``container`` code found) as an :class:`SDKError`: a
    :class:`ConfigurationError` unless ``error`` says another, its text between ``context`` and ``fix``. The one
    place the SDK translates the images' errors (tests/unit/test_architecture.py keeps it so)."""
    from container.failure import UserError

    try:
        yield
    except UserError as err:
        raise (error or ConfigurationError)(f"{context}{err}{fix}") from None


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Translate botocore exceptions raised inside the block (the boundary of every AWS call)."""
    try:
        yield
    except SDKError:
        raise
    except Exception as err:
        if type(err).__module__.startswith(("botocore", "boto3", "s3transfer")):
            raise translate(err, doing) from err
        raise
