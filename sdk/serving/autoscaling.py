"""Application Auto Scaling for an endpoint's variant: ``deploy(..., autoscaling=Autoscaling(min, max, target))``.

* a real-time endpoint gets a target-tracking policy on ``SageMakerVariantInvocationsPerInstance`` (``target``
  invocations per instance per minute);
* an asynchronous endpoint gets target tracking on its backlog (``ApproximateBacklogSizePerInstance``, ``target``
  queued requests per instance), and with ``min=0`` also the step policy and CloudWatch alarm on
  ``HasBacklogWithoutCapacity`` that bring it back from zero instances when a request arrives, as AWS's guide
  for asynchronous endpoints describes (target tracking alone never scales out from zero);
* :func:`remove` (called by ``Endpoint.delete``, before the endpoint goes, as AWS asks) deletes the policies
  and the alarm named as this module names them, and deregisters the scalable target they were on. Application
  Auto Scaling has no tags in moto and needs none here: our policy names start with :data:`PREFIX`, so policies
  someone else put on the variant are left, and so is the target that carries them.

No boto3 import: a boto3 session is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdk._errors import AccessDeniedError, ConfigurationError, NotFoundError, aws_errors

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREFIX = "sm-detectors-"  # the policies (and the alarm) deploy creates; delete removes these only
INVOCATIONS_POLICY = PREFIX + "invocations-per-instance"
BACKLOG_POLICY = PREFIX + "backlog-per-instance"
FROM_ZERO_POLICY = PREFIX + "has-backlog-without-capacity"
DEFAULT_INVOCATIONS = 70.0  # per instance per minute: AWS's own example value
DEFAULT_BACKLOG = 5.0  # queued requests per instance: AWS's example for asynchronous endpoints


@dataclass(frozen=True)
class Autoscaling:
    """Instances between ``min`` and ``max``. ``target``: invocations per instance per minute (real-time), or
    queued requests per instance (asynchronous); defaults 70 and 5. ``min=0`` only for asynchronous endpoints."""

    min: int = 1
    max: int = 4
    target: float | None = None
    scale_in_cooldown: int = 300  # seconds
    scale_out_cooldown: int = 60

    def check(self, *, asynchronous: bool) -> None:
        if self.min < 0 or self.max < 1 or self.max < self.min:
            raise ConfigurationError(f"autoscaling needs 0 <= min <= max and max >= 1, got min={self.min}, "
                                     f"max={self.max}")
        if self.min == 0 and not asynchronous:
            raise ConfigurationError("autoscaling min=0 needs an asynchronous endpoint (asynchronous=AsyncConfig"
                                     "(...)): a real-time endpoint keeps at least one instance")
        if self.target is not None and not self.target > 0:
            raise ConfigurationError(f"autoscaling target must be above 0, got {self.target}")
        for name in ("scale_in_cooldown", "scale_out_cooldown"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"autoscaling {name} must be 0 or more seconds")


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def alarm_name(endpoint: str) -> str:
    return f"{PREFIX}{endpoint}-has-backlog-without-capacity"


def policies(endpoint: str, variant: str, scaling: Autoscaling, *, asynchronous: bool) -> list[dict[str, Any]]:
    """The ``PutScalingPolicy`` requests for the variant (without the scale-from-zero step policy)."""
    target = resource_id(endpoint, variant)
    cooldowns = {"ScaleInCooldown": scaling.scale_in_cooldown, "ScaleOutCooldown": scaling.scale_out_cooldown}
    if asynchronous:
        metric = {"CustomizedMetricSpecification": {
            "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}}
        name, value = BACKLOG_POLICY, scaling.target or DEFAULT_BACKLOG
    else:
        metric = {"PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
        name, value = INVOCATIONS_POLICY, scaling.target or DEFAULT_INVOCATIONS
    return [{"PolicyName": name, "ServiceNamespace": NAMESPACE, "ResourceId": target, "ScalableDimension": DIMENSION,
             "PolicyType": "TargetTrackingScaling",
             "TargetTrackingScalingPolicyConfiguration": {"TargetValue": float(value), **metric, **cooldowns}}]


def register(session: Any, endpoint: str, variant: str, scaling: Autoscaling, *, asynchronous: bool,
             tags: list[dict[str, str]]) -> list[str]:
    """Register the variant and put its policies (and, for min=0, the scale-from-zero alarm). Returns what was
    made, ``kind:name``."""
    scaling.check(asynchronous=asynchronous)
    with aws_errors("connecting to Application Auto Scaling"):
        aas = session.client("application-autoscaling")
    target = resource_id(endpoint, variant)
    made = []
    with aws_errors(f"registering {target} with Application Auto Scaling"):
        aas.register_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION,
                                     MinCapacity=scaling.min, MaxCapacity=scaling.max)
    made.append(f"scalable-target:{target}")
    for request in policies(endpoint, variant, scaling, asynchronous=asynchronous):
        with aws_errors(f"putting scaling policy {request['PolicyName']}"):
            aas.put_scaling_policy(**request)
        made.append(f"scaling-policy:{request['PolicyName']}")
    if asynchronous and scaling.min == 0:
        with aws_errors(f"putting scaling policy {FROM_ZERO_POLICY}"):
            arn = aas.put_scaling_policy(
                PolicyName=FROM_ZERO_POLICY, ServiceNamespace=NAMESPACE, ResourceId=target,
                ScalableDimension=DIMENSION, PolicyType="StepScaling",
                StepScalingPolicyConfiguration={
                    "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                    "Cooldown": scaling.scale_out_cooldown,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]})["PolicyARN"]
        made.append(f"scaling-policy:{FROM_ZERO_POLICY}")
        with aws_errors("connecting to CloudWatch"):
            cloudwatch = session.client("cloudwatch")
        with aws_errors(f"putting CloudWatch alarm {alarm_name(endpoint)}"):
            cloudwatch.put_metric_alarm(
                AlarmName=alarm_name(endpoint), MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
                Statistic="Average", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1.0,
                ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
                Dimensions=[{"Name": "EndpointName", "Value": endpoint}], Period=60, AlarmActions=[arn], Tags=tags)
        made.append(f"alarm:{alarm_name(endpoint)}")
    return made


def remove(session: Any, endpoint: str, variants: list[str]) -> list[str]:
    """Delete our policies on each variant, deregister a target they were on, delete our alarm. Returns what was
    deleted, ``kind:name``; nothing for a variant nobody scaled."""
    with aws_errors("connecting to Application Auto Scaling"):
        aas = session.client("application-autoscaling")
    deleted: list[str] = []
    for variant in variants:
        target = resource_id(endpoint, variant)
        try:
            with aws_errors(f"describing the scaling policies of {target}"):
                found = aas.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=target,
                                                      ScalableDimension=DIMENSION).get("ScalingPolicies", [])
        except AccessDeniedError:  # credentials without Application Auto Scaling made no scaling to remove
            return deleted
        ours = [p["PolicyName"] for p in found if p["ResourceId"] == target and p["PolicyName"].startswith(PREFIX)]
        for name in ours:
            with aws_errors(f"deleting scaling policy {name}"):
                aas.delete_scaling_policy(PolicyName=name, ServiceNamespace=NAMESPACE, ResourceId=target,
                                          ScalableDimension=DIMENSION)
            deleted.append(f"scaling-policy:{name}")
        others = [p for p in found if p["ResourceId"] == target and not p["PolicyName"].startswith(PREFIX)]
        if ours and not others:  # a target that also carries someone else's policy is theirs too: left
            try:
                with aws_errors(f"deregistering {target}"):
                    aas.deregister_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=target,
                                                   ScalableDimension=DIMENSION)
                deleted.append(f"scalable-target:{target}")
            except (NotFoundError, ConfigurationError):  # already gone (moto: a ValidationException)
                pass
    with aws_errors("connecting to CloudWatch"):
        cloudwatch = session.client("cloudwatch")
    try:
        with aws_errors("describing CloudWatch alarms"):
            alarms = cloudwatch.describe_alarms(AlarmNames=[alarm_name(endpoint)]).get("MetricAlarms", [])
    except AccessDeniedError:
        return deleted
    if alarms:
        with aws_errors(f"deleting CloudWatch alarm {alarm_name(endpoint)}"):
            cloudwatch.delete_alarms(AlarmNames=[alarm_name(endpoint)])
        deleted.append(f"alarm:{alarm_name(endpoint)}")
    return deleted
