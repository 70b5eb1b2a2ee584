"""For notebooks built around the SageMaker Python SDK v3: a ``ModelTrainer`` that sends what ``launch_job`` sends.

    from sdk import model_trainer

    trainer = model_trainer(image="ecr_image_fullname.txt", train="data/", role=ROLE, hyperparameters={"epochs": 50})
    trainer.train()          # a sagemaker.train.ModelTrainer, configured: image, channels, hyperparameters ...

Validation, uploads and defaults are ``launch_job``'s (same schema, same encoding, same prefixes); the
``CreateTrainingJob`` request is the same, field for field (the tests capture both in ``.venv-sm3`` and compare),
except the job's name: v3 always appends its own ``-YYYYmmddHHMMSS`` to ``base_job_name``, which is set to the
name ``launch_job`` would have used. Needs ``pip install 'sagemaker>=3,<4'`` (docs/sdk-v3.md); for v2, see
:mod:`sdk.estimator`.
"""

from __future__ import annotations

from typing import Any

from sdk._errors import ConfigurationError
from sdk.jobs.plan import plan_job, prepare_inputs
from sdk.jobs.spec import JOB_ARG_NAMES, AdapterSpec, check_kwargs, takes


@takes(AdapterSpec)
def model_trainer(**kwargs: Any) -> Any:
    """A v3 ``ModelTrainer`` for ``plan_job``'s arguments (:class:`sdk.jobs.spec.AdapterSpec`); call ``train()``."""
    check_kwargs(kwargs, allowed=[*(n for n in JOB_ARG_NAMES if n != "session"), "sagemaker_session"],
                 what="model_trainer")
    launch = AdapterSpec(**kwargs)
    try:
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.shapes import ProfilerConfig
        from sagemaker.train import ModelTrainer
        from sagemaker.train.configs import Channel as V3Channel
        from sagemaker.train.configs import (
            CheckpointConfig,
            Compute,
            DataSource,
            MetricDefinition,
            OutputDataConfig,
            S3DataSource,
            StoppingCondition,
            Tag,
            TensorBoardOutputConfig,
        )
    except ImportError as err:
        raise ConfigurationError("sdk.model_trainer needs the SageMaker Python SDK v3: pip install 'sagemaker>=3,<4' "
                                 f"({err})") from None
    if launch.instance_type == "local":
        raise ConfigurationError("for a local run use launch_job(instance_type='local'), which needs no sagemaker "
                                 "SDK, or v3's own local mode (docs/sdk-v3.md)")
    session = launch.sagemaker_session or Session()
    boto_session = session.boto_session
    plan = plan_job(**launch.job_arguments(session=boto_session))
    request = prepare_inputs(plan, session=boto_session, create_bucket=launch.output_path is None)
    spec = request["AlgorithmSpecification"]
    resources = request["ResourceConfig"]
    stopping = request["StoppingCondition"]
    checkpoint = request.get("CheckpointConfig")
    tensorboard = request.get("TensorBoardOutputConfig")
    class _ModelTrainer(ModelTrainer):
        """v3 has no argument for ``ProfilerConfig``; launch_job turns SageMaker Debugger's profiler off."""

        def _create_training_job_args(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            job_args = super()._create_training_job_args(*args, **kwargs)
            if "ProfilerConfig" in request and "profiler_config" not in job_args and "ProfilerConfig" not in job_args:
                job_args["profiler_config"] = ProfilerConfig(disable_profiler=True)
            return job_args

    trainer = _ModelTrainer(
        sagemaker_session=session,
        role=request["RoleArn"],
        base_job_name=request["TrainingJobName"],
        training_image=spec["TrainingImage"],
        training_input_mode=spec["TrainingInputMode"],
        compute=Compute(instance_type=resources["InstanceType"], instance_count=resources["InstanceCount"],
                        volume_size_in_gb=resources["VolumeSizeInGB"],
                        enable_managed_spot_training=request.get("EnableManagedSpotTraining")),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
                                             max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds")),
        output_data_config=OutputDataConfig(s3_output_path=request["OutputDataConfig"]["S3OutputPath"]),
        checkpoint_config=CheckpointConfig(s3_uri=checkpoint["S3Uri"], local_path=checkpoint.get("LocalPath"))
        if checkpoint else None,
        input_data_config=[
            V3Channel(channel_name=c["ChannelName"], input_mode=c["InputMode"],
                      data_source=DataSource(s3_data_source=S3DataSource(
                          s3_data_type="S3Prefix", s3_uri=c["DataSource"]["S3DataSource"]["S3Uri"],
                          s3_data_distribution_type="FullyReplicated")))
            for c in request["InputDataConfig"]
        ],
        hyperparameters=dict(request["HyperParameters"]),  # strings already: v3's serializer leaves them alone
        environment=dict(request.get("Environment") or {}),
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in request.get("Tags") or []] or None,
    )
    trainer = trainer.with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"])
                                               for m in spec["MetricDefinitions"]])
    if tensorboard:
        trainer = trainer.with_tensorboard_output_config(TensorBoardOutputConfig(
            s3_output_path=tensorboard["S3OutputPath"], local_path=tensorboard["LocalPath"]))
    return trainer
