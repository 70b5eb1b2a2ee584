"""Run with the SageMaker SDK v2's Python: the retrain pipeline of ``sdk.pipeline.retrain_on_upload`` with
``register_to`` (train, then a condition on the final mAP50-95, then a register step or a Fail step) built
with v2's own workflow classes from the same inputs; its definition printed as JSON.

    python tests/sdk/v2_pipeline.py '<spec as JSON>'       (spec: the training request and the register inputs)
"""

import json
import sys

from tests.sdk.sagemaker_python import loopback_only

loopback_only()  # before anything else is imported: this process too may reach nothing but 127.0.0.1

import boto3
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.metadata_properties import MetadataProperties
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join
from sagemaker.workflow.parameters import ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.step_collections import RegisterModel
from sagemaker.workflow.steps import TrainingStep

from sdk.jobs.model_registry import (
    CONTENT_TYPES,
    CREATED_BY,
    REALTIME_INSTANCE_TYPES,
    RESPONSE_TYPES,
    SCORES,
    TRANSFORM_INSTANCE_TYPES,
    metric_name,
)
from sdk.pipeline import hp_parameter

spec = json.loads(sys.argv[1])
request = spec["request"]
session = PipelineSession(boto_session=boto3.Session(region_name="us-east-1"), default_bucket="unused")
data = ParameterString("DataPrefix", default_value=next(c["DataSource"]["S3DataSource"]["S3Uri"]
                                                        for c in request["InputDataConfig"]
                                                        if c["ChannelName"] == "train"))
instance_type = ParameterString("InstanceType", default_value=request["ResourceConfig"]["InstanceType"])
hps = {key: ParameterString(hp_parameter(key), default_value=value)
       for key, value in request["HyperParameters"].items()}
stopping = request["StoppingCondition"]
estimator = Estimator(
    image_uri=request["AlgorithmSpecification"]["TrainingImage"], role=request["RoleArn"],
    instance_count=request["ResourceConfig"]["InstanceCount"], instance_type=instance_type,
    volume_size=request["ResourceConfig"]["VolumeSizeInGB"], max_run=stopping["MaxRuntimeInSeconds"],
    output_path=request["OutputDataConfig"]["S3OutputPath"],
    checkpoint_s3_uri=Join(on="/", values=[spec["checkpoint_base"], ExecutionVariables.PIPELINE_EXECUTION_ID,
                                           "checkpoints"]),
    checkpoint_local_path="/opt/ml/checkpoints", hyperparameters=hps,
    metric_definitions=request["AlgorithmSpecification"]["MetricDefinitions"],
    environment=request.get("Environment"), input_mode=request["AlgorithmSpecification"]["TrainingInputMode"],
    disable_profiler=True, debugger_hook_config=False, sagemaker_session=session)
inputs = {c["ChannelName"]: TrainingInput(
    data if c["ChannelName"] == "train" else c["DataSource"]["S3DataSource"]["S3Uri"], input_mode=c["InputMode"],
    distribution="FullyReplicated", s3_data_type="S3Prefix") for c in request["InputDataConfig"]}
train = TrainingStep("Train", step_args=estimator.fit(inputs))


def final(score):
    return train.properties.FinalMetricDataList[metric_name(spec["kind"], score)].Value


properties = {score: Join(on="", values=[final(score)]) for score in SCORES[spec["kind"]]}
properties.update({"channel:train": data, "epochs": hps["epochs"], "image": estimator.image_uri,
                   "training_job": train.properties.TrainingJobName})
register = RegisterModel(
    "Register", estimator=estimator, model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
    image_uri=estimator.image_uri, content_types=CONTENT_TYPES, response_types=RESPONSE_TYPES,
    inference_instances=REALTIME_INSTANCE_TYPES, transform_instances=TRANSFORM_INSTANCE_TYPES,
    model_package_group_name=spec["group"], approval_status=spec["approval"], description=spec["description"],
    customer_metadata_properties=properties, tags=[CREATED_BY],
    metadata_properties=MetadataProperties(generated_by=train.properties.TrainingJobArn))
score = final("mAP50-95")
check = ConditionStep(
    "CheckMinMap", conditions=[ConditionGreaterThanOrEqualTo(left=score, right=spec["min_map"])],
    if_steps=[register], else_steps=[FailStep("BelowMinMap", error_message=Join(on=" ", values=[
        f"not registered: {metric_name(spec['kind'], 'mAP50-95')}", score, "is below min_map", spec["min_map"]]))])
pipeline = Pipeline(spec["name"], parameters=[data, instance_type, *hps.values()], steps=[train, check],
                    sagemaker_session=session, pipeline_experiment_config=None)
print(pipeline.definition())
