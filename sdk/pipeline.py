"""Retrain on upload (the seed's S3-triggered pipeline) as one call: ``retrain_on_upload``.

    from sdk.pipeline import retrain_on_upload
    trigger = retrain_on_upload(name="pcb-retrain", image=URI, data="s3://bucket/datasets/pcb/",
                                role=ROLE, hyperparameters={"epochs": 50}, marker="_READY")
    trigger.start()                       # or upload s3://bucket/datasets/pcb/_READY

It creates (or updates):

* a SageMaker Pipeline whose one step trains our image with the request ``launch_job`` would send,
  with pipeline parameters ``DataPrefix``, ``InstanceType`` and one ``hp_<name>`` per hyperparameter;
  each execution checkpoints under ``<output>/pipelines/<name>/<execution id>/``;
* S3 → EventBridge notifications on the data bucket (added to the bucket's existing configuration);
* an EventBridge rule matching ``Object Created`` under the prefix, or only the ``marker`` key when one
  is given (so an upload of 10,000 images starts one training, not 10,000);
* the rule's target, the pipeline, and the IAM role EventBridge assumes to start it (allowed exactly
  ``sagemaker:StartPipelineExecution`` on that pipeline);
* with ``register_to``: after training, a condition (final mAP50-95 >= ``min_map``) and a register step that
  adds the model to that Model Registry group, pending approval (docs/registry.md).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from sdk._errors import AWSError, ConfigurationError, aws_errors
from sdk.jobs.spec import JobSpec, argument, check_kwargs, takes

PIPELINE_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
PARAM_RE = re.compile(r"[^A-Za-z0-9_]")

__all__ = ["RetrainTrigger", "event_pattern", "pipeline_definition", "retrain_on_upload", "start_pipeline"]


@dataclass
class RetrainTrigger:
    pipeline_name: str
    pipeline_arn: str
    rule_name: str
    rule_arn: str
    role_arn: str
    definition: dict[str, Any]
    event_pattern: dict[str, Any]
    session: Any = field(default=None, repr=False)

    def start(self, **parameters: Any) -> str:
        """Start the pipeline now (as the rule would); ``parameters`` override DataPrefix, InstanceType, hp_*."""
        return start_pipeline(self.pipeline_name, session=self.session, **parameters)


def start_pipeline(name: str, *, session: Any = None, **parameters: Any) -> str:
    """Start pipeline ``name`` with ``parameters`` checked against its definition; returns the execution ARN."""
    from sdk._session import aws_session

    session = aws_session(session)
    sm = session.client("sagemaker")
    with aws_errors(f"reading pipeline {name}"):
        definition = json.loads(sm.describe_pipeline(PipelineName=name)["PipelineDefinition"])
    names = {p["Name"] for p in definition.get("Parameters", [])}
    unknown = sorted(set(parameters) - names)
    if unknown:
        raise ConfigurationError(f"pipeline {name} has no parameter {', '.join(unknown)}; "
                                 f"it has {', '.join(sorted(names))}")
    with aws_errors(f"starting pipeline {name}"):
        return sm.start_pipeline_execution(
            PipelineName=name, PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
        )["PipelineExecutionArn"]


def _param(name: str) -> dict[str, str]:
    return {"Get": f"Parameters.{name}"}


def hp_parameter(key: str) -> str:
    return "hp_" + PARAM_RE.sub("_", key)


def pipeline_definition(request: Mapping[str, Any], *, data_channel: str = "train",
                        checkpoint_base: str | None = None) -> dict[str, Any]:
    """A pipeline definition (schema 2020-12-01) whose Training step sends ``request`` with parameters in it."""
    from sdk.jobs.request import CHECKPOINT_LOCAL_PATH

    args = json.loads(json.dumps(request))
    args.pop("TrainingJobName", None)  # the pipeline names each execution's job
    parameters = [
        {"Name": "DataPrefix", "Type": "String",
         "DefaultValue": next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]
                              if c["ChannelName"] == data_channel)},
        {"Name": "InstanceType", "Type": "String", "DefaultValue": args["ResourceConfig"]["InstanceType"]},
    ]
    for channel in args["InputDataConfig"]:
        if channel["ChannelName"] == data_channel:
            channel["DataSource"]["S3DataSource"]["S3Uri"] = _param("DataPrefix")
    args["ResourceConfig"]["InstanceType"] = _param("InstanceType")
    seen: dict[str, str] = {}
    for key, value in list(args.get("HyperParameters", {}).items()):
        name = hp_parameter(key)
        if name in seen:
            raise ConfigurationError(f"hyperparameters {seen[name]!r} and {key!r} map to one pipeline parameter {name}")
        seen[name] = key
        parameters.append({"Name": name, "Type": "String", "DefaultValue": value})
        args["HyperParameters"][key] = _param(name)
    if checkpoint_base:
        args["CheckpointConfig"] = {
            "S3Uri": {"Std:Join": {"On": "/", "Values": [checkpoint_base.rstrip("/"),
                                                         {"Get": "Execution.PipelineExecutionId"}, "checkpoints"]}},
            "LocalPath": CHECKPOINT_LOCAL_PATH}
    else:
        args.pop("CheckpointConfig", None)
    args.pop("Tags", None)  # tags go on the pipeline
    return {"Version": "2020-12-01", "Metadata": {}, "Parameters": parameters,
            "Steps": [{"Name": "Train", "Type": "Training", "Arguments": args}]}


def event_pattern(bucket: str, prefix: str, marker: str | None = None) -> dict[str, Any]:
    """EventBridge pattern for S3 ``Object Created`` under ``prefix`` (or exactly ``prefix + marker``)."""
    key: list[Any] = [prefix + marker] if marker else [{"prefix": prefix}]
    return {"source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": key}}}


def _events_role(iam: Any, name: str, pipeline_arn: str) -> str:
    trust = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sagemaker:StartPipelineExecution",
                                                      "Resource": pipeline_arn}]}
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                              Description="EventBridge starts the retraining pipeline")["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="start-pipeline", PolicyDocument=json.dumps(policy))
    return arn


@dataclass(frozen=True, kw_only=True)
class RetrainSpec(JobSpec):
    """``retrain_on_upload``'s arguments: ``plan_job``'s (the pipeline sets ``train``, ``job_name`` and
    ``checkpoints``), and the pipeline's."""

    name: str = argument(MISSING, "the pipeline's name (letters, digits and hyphens)", cli="none")
    data: str = argument(MISSING, "the s3:// prefix uploads land under (the train channel)")
    marker: str | None = argument(None, "start only when this file lands under --data (e.g. _READY)")
    events_role: str | None = argument(None, "the role EventBridge assumes (default: one is created)")
    description: str = argument("", "the pipeline's description (default: what it trains on what)", cli="none")
    register_to: str | None = argument(None, "register each trained model in this Model Registry group, pending "
                                       "approval (docs/registry.md)", metavar="GROUP")
    min_map: float | None = argument(None, "with --register-to: only when the final mAP50-95 is at least this "
                                     "(0..1)", cli="float")
    auto_approve: bool = argument(False, "with --register-to: register it Approved (no human gate)", cli="flag")


@takes(RetrainSpec)
def retrain_on_upload(**kwargs: Any) -> RetrainTrigger:
    """Create or update the pipeline, the bucket's EventBridge notifications, the rule, its target and role.

    ``data`` is the S3 prefix uploads land under (the ``train`` channel); every other argument is
    :func:`sdk.plan_job`'s (image, role, hyperparameters, instance_type, val/channels, output_path, ...).

    ``register_to``: a Model Registry group (created if new) that each trained model is registered in, pending
    approval (``auto_approve=True``: Approved, so ``deploy(group=...)`` serves it with no human in between);
    with ``min_map``, only when the job's final mAP50-95 is at least that (else the execution fails saying so).
    """
    from sdk._session import aws_session
    from sdk.jobs.plan import plan_job
    from sdk.jobs.request import s3_join

    spec = _retrain_spec(kwargs)
    name = spec.name
    bucket, prefix = _watched_prefix(spec)
    session = aws_session(spec.session)
    plan = plan_job(**spec.job_arguments(train=f"s3://{bucket}/{prefix}", job_name=name[:40] + "-train",
                                         session=session, checkpoints=False))
    checkpoint_base = s3_join(plan.request["OutputDataConfig"]["S3OutputPath"], "pipelines", name)
    if spec.marker is None:  # every object written under the watched prefix would start another training
        _refuse_runaway_loop(plan.request, checkpoint_base, f"s3://{bucket}/{prefix}")
    definition = _retrain_definition(spec, plan, checkpoint_base)
    sm, events, iam, s3 = (session.client(s) for s in ("sagemaker", "events", "iam", "s3"))
    arn = _put_pipeline(sm, spec, plan, definition)
    _turn_on_eventbridge(s3, bucket)
    with aws_errors("creating the role EventBridge uses to start the pipeline"):
        role_arn = spec.events_role or _events_role(iam, f"{name[:50]}-events", arn)
    pattern = event_pattern(bucket, prefix, spec.marker)
    rule, rule_arn = _put_rule(events, spec, pattern, pipeline_arn=arn, role_arn=role_arn,
                               data_prefix=f"s3://{bucket}/{prefix}")
    if spec.register_to is not None:  # last: a pipeline refused above leaves no group behind
        from sdk.jobs.model_registry import ensure_group

        if ensure_group(sm, spec.register_to, f"{plan.kind} models registered by pipeline {name}"):
            print(f"model package group {spec.register_to} created", file=sys.stderr)
    return RetrainTrigger(name, arn, rule, rule_arn, role_arn, definition, pattern, session)


def _retrain_spec(kwargs: Mapping[str, Any]) -> RetrainSpec:
    """``retrain_on_upload``'s arguments as a :class:`RetrainSpec`: none of those the pipeline sets."""
    set_by_the_pipeline = ("train", "job_name", "checkpoints", "resume")
    check_kwargs(kwargs, allowed=[f.name for f in fields(RetrainSpec) if f.name not in set_by_the_pipeline],
                 what="retrain_on_upload")
    return RetrainSpec(**kwargs)


def _watched_prefix(spec: RetrainSpec) -> tuple[str, str]:
    """The bucket and prefix (``""`` or ending in ``/``) uploads land under, once the pipeline's name, ``data``,
    the instance type and ``marker`` are checked (nothing asked of AWS yet)."""
    from sdk.jobs.request import is_s3, split_s3

    name, data, marker = spec.name, spec.data, spec.marker
    if not PIPELINE_NAME_RE.match(name):
        raise ConfigurationError(f"pipeline name {name!r} is not valid: letters, digits and hyphens, at most 256")
    if not is_s3(data):
        raise ConfigurationError(f"data must be the S3 prefix uploads land under (s3://bucket/prefix/), got {data!r}")
    if spec.instance_type == "local":
        raise ConfigurationError("a pipeline runs on SageMaker; instance_type='local' has nothing to trigger")
    bucket, prefix = split_s3(data)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if marker is not None and ("/" in marker or not marker):
        raise ConfigurationError(f"marker is a file name directly under the prefix, got {marker!r}")
    return bucket, prefix


def _refuse_runaway_loop(request: Mapping[str, Any], checkpoint_base: str, watched: str) -> None:
    """With no marker, an output written inside the watched prefix would start another training: refused."""
    output = request["OutputDataConfig"]["S3OutputPath"]
    for what, uri in (("output_path", output), ("the checkpoint location", checkpoint_base),
                      *((("tensorboard", request["TensorBoardOutputConfig"]["S3OutputPath"]),)
                        if request.get("TensorBoardOutputConfig") else ())):
        if (uri.rstrip("/") + "/").startswith(watched):
            raise ConfigurationError(
                f"{what} {uri} is inside the watched prefix {watched}: every checkpoint and model.tar.gz the "
                "training writes would start another training (a runaway loop). Write outputs elsewhere "
                "(output_path=...), or pass marker='_READY' so only that file starts a training")


def _retrain_definition(spec: RetrainSpec, plan: Any, checkpoint_base: str) -> dict[str, Any]:
    """The pipeline's definition: the training step, and with ``register_to`` the gate and register steps."""
    definition = pipeline_definition(plan.request, checkpoint_base=checkpoint_base)
    if spec.register_to is not None:
        from sdk.jobs.model_registry import APPROVED, PENDING, pipeline_steps

        hps = plan.request.get("HyperParameters", {})
        definition["Steps"] += pipeline_steps(
            train="Train", image=plan.request["AlgorithmSpecification"]["TrainingImage"], kind=plan.kind,
            group=spec.register_to, min_map=spec.min_map, approval=APPROVED if spec.auto_approve else PENDING,
            parameters={"channel:train": "DataPrefix", **{k: hp_parameter(k) for k in ("epochs", "num_steps")
                                                         if k in hps}},
            description=f"trained by pipeline {spec.name} on an upload to {spec.data}")
    elif spec.min_map is not None or spec.auto_approve:
        raise ConfigurationError("min_map and auto_approve gate the registration: pass register_to='<group>' too")
    return definition


def _put_pipeline(sm: Any, spec: RetrainSpec, plan: Any, definition: Mapping[str, Any]) -> str:
    """Create the pipeline, or update it when one of that name exists; its ARN."""
    name = spec.name
    with aws_errors(f"creating pipeline {name}"):
        body = {"PipelineName": name, "PipelineDefinition": json.dumps(definition), "RoleArn": plan.request["RoleArn"],
                "PipelineDescription": spec.description
                or f"train {plan.kind} on {spec.data} (sdk.pipeline.retrain_on_upload)"}
        listed = sm.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]
        if any(p["PipelineName"] == name for p in listed):
            arn: str = sm.update_pipeline(**body)["PipelineArn"]
            print(f"pipeline {name} updated", file=sys.stderr)
        else:
            tags = {"Tags": plan.request["Tags"]} if plan.request.get("Tags") else {}
            arn = sm.create_pipeline(**body, **tags)["PipelineArn"]
            print(f"pipeline {name} created", file=sys.stderr)
    return arn


def _turn_on_eventbridge(s3: Any, bucket: str) -> None:
    """The bucket's S3 → EventBridge notifications, added to its existing notification configuration."""
    with aws_errors(f"turning on EventBridge notifications for bucket {bucket}"):
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
        config.pop("ResponseMetadata", None)
        if "EventBridgeConfiguration" not in config:
            config["EventBridgeConfiguration"] = {}
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def _put_rule(events: Any, spec: RetrainSpec, pattern: Mapping[str, Any], *, pipeline_arn: str, role_arn: str,
              data_prefix: str) -> tuple[str, str]:
    """The EventBridge rule matching ``pattern`` and its target, the pipeline (started with ``DataPrefix``):
    the rule's name and ARN. A target EventBridge refused (in a 200 answer) is an error: nothing would start."""
    name = spec.name
    rule = f"{name[:50]}-on-upload"
    with aws_errors(f"creating EventBridge rule {rule}"):
        rule_arn: str = events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED",
                                        Description=f"start pipeline {name} when data lands in {spec.data}")["RuleArn"]
        answer = events.put_targets(Rule=rule, Targets=[{
            "Id": "pipeline", "Arn": pipeline_arn, "RoleArn": role_arn,
            "SageMakerPipelineParameters": {"PipelineParameterList": [
                {"Name": "DataPrefix", "Value": data_prefix}]},
        }])
    if answer.get("FailedEntryCount"):
        failed = answer.get("FailedEntries") or [{}]
        raise AWSError(f"EventBridge created rule {rule} but refused its target (pipeline {name}): "
                       f"{failed[0].get('ErrorMessage', 'no message')} ({failed[0].get('ErrorCode', '')}). "
                       "Nothing would start the pipeline; check the events role and try again",
                       code=str(failed[0].get("ErrorCode", "FailedEntry")), operation="PutTargets")
    print(f"rule {rule}: {data_prefix + (spec.marker or '*')} → pipeline {name}", file=sys.stderr)
    return rule, rule_arn
