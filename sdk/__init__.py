"""Launch and follow training jobs of this project's images, from a notebook or a script.

    from sdk import launch_job, fetch_model

    job = launch_job(image="ecr_image_fullname.txt", train="data/", hyperparameters={"epochs": 50},
                     role="arn:aws:iam::123456789012:role/SageMakerRole")
    model = fetch_model(job)           # or fetch_model("latest", name_prefix="yolo")
    model.best, model.exports, model.metrics

* :func:`launch_job` / :func:`plan_job` - validate (against the image's own schema), upload, create, follow
* :class:`Job` / :class:`LocalJob`       - status, wait (a progress line), metrics, metrics_history, plot,
                                          stop, restart (resume from checkpoints), fetch_model
* :func:`fetch_model`                   - download and safely unpack ``model.tar.gz``
* :func:`model_trainer`                 - a SageMaker SDK v3 ``ModelTrainer`` sending launch_job's request
* :func:`deploy` / :func:`transform`     - endpoints (instances, serverless, local) and batch transform (sdk.serving)
* :func:`register` / :func:`approve` / :func:`reject` / :func:`registered_models` - the Model Registry
  (sdk.registry): versions of a group, approval, ``deploy(group=...)`` serves the latest Approved one
* :class:`AsyncConfig` / :class:`Autoscaling` - ``deploy(asynchronous=..., autoscaling=...)``: requests and answers in
  S3 (``Endpoint.predict_async``, videos), Application Auto Scaling (to zero for asynchronous endpoints)
* errors: :class:`SDKError` and its tree (see ``sdk._errors``); botocore errors never leak raw
* ``python -m sdk launch|resume|status|logs|plot|fetch|describe`` - the same calls from a shell

The seeds' workflows, each one call (and a ``python -m sdk`` command), in their own modules:

* :mod:`sdk.pipeline` - ``retrain_on_upload``: a SageMaker Pipeline started by an EventBridge rule on S3 uploads
* :mod:`sdk.tuning` - ``tune_job``: hyperparameter tuning with ranges checked against the image's schema
* :mod:`sdk.leaderboard` - ``leaderboard``: configuration, mAP and measured speed of several jobs; CSV and PNG
* :mod:`sdk.predict` - ``predict``: images, folders or videos, annotated, with ultralytics' trackers
* :mod:`sdk.edge` - the TFLite model on a device with LiteRT (one file, NumPy + Pillow)
* :mod:`sdk.data` - datasets in any format: check, convert, split

Importing this package imports neither boto3 nor a framework: building a request costs no AWS call.
"""

from container import __version__ as __version__  # one version, pyproject.toml's
from container.schema import Schema
from sdk._errors import (
    AccessDeniedError,
    AWSError,
    ConfigurationError,
    CredentialsError,
    DeployFailedError,
    FetchError,
    InvocationError,
    JobFailedError,
    NoApprovedModelError,
    NoJobError,
    NotFoundError,
    QuotaError,
    SDKError,
    WaitTimeoutError,
)
from sdk._errors import user_errors as _user_errors
from sdk.jobs.fetch import FetchedModel, fetch_model
from sdk.jobs.job import Job, LocalJob, launch_job
from sdk.jobs.plan import Plan, plan_job
from sdk.registry import RegisteredModel, approve, register, registered_models, reject
from sdk.serving import (
    AsyncConfig,
    AsyncResult,
    Autoscaling,
    Endpoint,
    LocalEndpoint,
    ServerlessConfig,
    TransformJob,
    deploy,
    transform,
)
from sdk.trainer_v3 import model_trainer


def image_schema(image: str = "yolo") -> Schema:
    """The schema an image reads at run time (hyperparameters, channels, metrics)."""
    with _user_errors():
        return Schema.load(image)


def metric_definitions(image: str = "yolo", class_names: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """``MetricDefinitions`` for ``create_training_job``, generated from the image's schema."""
    return image_schema(image).metric_definitions(class_names)


def validate_hyperparameters(hyperparameters: dict, image: str = "yolo") -> dict:
    """Typed values, or :class:`ConfigurationError` naming every problem (unknown keys get suggestions)."""
    from sdk.jobs.request import encode_hyperparameters

    schema = image_schema(image)
    encode_hyperparameters(schema, hyperparameters)  # every check launch_job makes, SageMaker's limits included
    with _user_errors():
        return schema.parse(hyperparameters)


__all__ = [
    "AWSError",
    "AccessDeniedError",
    "AsyncConfig",
    "AsyncResult",
    "Autoscaling",
    "ConfigurationError",
    "CredentialsError",
    "DeployFailedError",
    "Endpoint",
    "FetchError",
    "FetchedModel",
    "InvocationError",
    "Job",
    "JobFailedError",
    "LocalEndpoint",
    "LocalJob",
    "NoApprovedModelError",
    "NoJobError",
    "NotFoundError",
    "Plan",
    "QuotaError",
    "RegisteredModel",
    "SDKError",
    "ServerlessConfig",
    "TransformJob",
    "WaitTimeoutError",
    "approve",
    "deploy",
    "fetch_model",
    "image_schema",
    "launch_job",
    "metric_definitions",
    "model_trainer",
    "plan_job",
    "register",
    "registered_models",
    "reject",
    "transform",
    "validate_hyperparameters",
]
