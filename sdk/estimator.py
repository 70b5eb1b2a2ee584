"""For notebooks built around the ``sagemaker`` v2 SDK: an ``Estimator`` that sends what ``launch_job`` sends.

    from sdk.estimator import make_estimator

    run = make_estimator(image="ecr_image_fullname.txt", train="data/", role=ROLE, hyperparameters={"epochs": 50})
    run.estimator            # a sagemaker.estimator.Estimator, configured
    run.fit(wait=True)       # == run.estimator.fit(run.inputs, job_name=run.job_name)

Validation, uploads and defaults are ``launch_job``'s (same schema, same encoding, same prefixes);
the ``CreateTrainingJob`` request is the same, field for field (the tests capture both and compare).
Needs ``pip install 'sagemaker>=2.250,<3'``; v3 has no ``Estimator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdk._errors import ConfigurationError
from sdk.jobs.plan import plan_job, prepare_inputs
from sdk.jobs.spec import JOB_ARG_NAMES, AdapterSpec, check_kwargs, takes


@dataclass
class EstimatorRun:
    """A configured v2 ``Estimator``, its ``inputs`` and the job name ``launch_job`` would have used."""

    estimator: Any
    inputs: dict[str, Any]
    job_name: str

    def fit(self, *, wait: bool = True, logs: bool = True) -> Any:
        self.estimator.fit(self.inputs, job_name=self.job_name, wait=wait, logs="All" if logs else "None")
        return self.estimator


@takes(AdapterSpec)
def make_estimator(**kwargs: Any) -> EstimatorRun:
    """Takes ``plan_job``'s arguments (:class:`sdk.jobs.spec.AdapterSpec`; ``wait``/``logs`` go to ``fit``)."""
    check_kwargs(kwargs, allowed=[*(n for n in JOB_ARG_NAMES if n != "session"), "sagemaker_session"],
                 what="make_estimator")
    spec = AdapterSpec(**kwargs)
    try:
        from sagemaker.debugger import TensorBoardOutputConfig
        from sagemaker.estimator import Estimator
        from sagemaker.inputs import TrainingInput
        from sagemaker.session import Session
    except ImportError as err:
        raise ConfigurationError("sdk.estimator needs the SageMaker Python SDK v2: pip install 'sagemaker>=2.250,<3' "
                                 f"({err})") from None
    if spec.instance_type == "local":
        raise ConfigurationError("for a local run use launch_job(instance_type='local'); it needs no sagemaker SDK")
    session = spec.sagemaker_session or Session()
    boto_session = session.boto_session
    plan = plan_job(**spec.job_arguments(session=boto_session))
    request = prepare_inputs(plan, session=boto_session, create_bucket=spec.output_path is None)
    stopping = request["StoppingCondition"]
    checkpoint = request.get("CheckpointConfig", {})
    tensorboard = request.get("TensorBoardOutputConfig")
    estimator = Estimator(
        image_uri=request["AlgorithmSpecification"]["TrainingImage"],
        role=request["RoleArn"],
        instance_count=request["ResourceConfig"]["InstanceCount"],
        instance_type=request["ResourceConfig"]["InstanceType"],
        volume_size=request["ResourceConfig"]["VolumeSizeInGB"],
        max_run=stopping["MaxRuntimeInSeconds"],
        use_spot_instances=request.get("EnableManagedSpotTraining", False),
        max_wait=stopping.get("MaxWaitTimeInSeconds"),
        output_path=request["OutputDataConfig"]["S3OutputPath"],
        checkpoint_s3_uri=checkpoint.get("S3Uri"),
        checkpoint_local_path=checkpoint.get("LocalPath"),
        tensorboard_output_config=TensorBoardOutputConfig(
            s3_output_path=tensorboard["S3OutputPath"], container_local_output_path=tensorboard["LocalPath"])
        if tensorboard else None,
        hyperparameters=dict(request["HyperParameters"]),  # already strings: v2's str() leaves them alone
        metric_definitions=request["AlgorithmSpecification"]["MetricDefinitions"],
        environment=request.get("Environment"),
        tags=request.get("Tags"),
        input_mode=request["AlgorithmSpecification"]["TrainingInputMode"],
        disable_profiler=True,
        debugger_hook_config=False,
        sagemaker_session=session,
    )
    inputs = {
        c["ChannelName"]: TrainingInput(c["DataSource"]["S3DataSource"]["S3Uri"], input_mode=c["InputMode"],
                                        distribution="FullyReplicated", s3_data_type="S3Prefix")
        for c in request["InputDataConfig"]
    }
    return EstimatorRun(estimator, inputs, request["TrainingJobName"])
