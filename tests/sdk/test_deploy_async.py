"""Asynchronous endpoints and autoscaling against the moto server: deploy(asynchronous=..., autoscaling=...),
predict_async with images and videos, and delete removing the scaling it made. tests/sdk/hosting_double.py plays
the instance (the real ``serve`` on the job's model.tar.gz) and answers InvokeEndpointAsync as SageMaker does,
in S3; requests are checked against botocore's service model."""

from __future__ import annotations

import json

import pytest

from sdk._errors import ConfigurationError, InvocationError
from sdk.serving import AsyncConfig, Autoscaling, ServerlessConfig, deploy, transform
from tests.sdk.conftest import BUCKET, ROLE
from tests.sdk.test_deploy import FAST_POLL, ONNX, hosting, job, tarball  # noqa: F401  (fixtures)
from tests.serving_models import image_bytes, video_bytes

pytestmark = pytest.mark.slow
TOPIC = "arn:aws:sns:us-east-1:123456789012:detections"
LOW = {"conf": 0.0001, "max_det": 2}


def _scaling(aws):
    aas = aws.client("application-autoscaling")
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    alarms = aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return targets, {p["PolicyName"]: p for p in policies}, alarms


def test_async_endpoint_scaling_to_zero_created_used_and_deleted(hosting, job, aws, tmp_path):  # noqa: F811
    endpoint = deploy(job, weights=ONNX, poll=FAST_POLL, name="shapes-async",
                      asynchronous=AsyncConfig(output=f"s3://{BUCKET}/answers/", notify=TOPIC, max_concurrent=2),
                      autoscaling=Autoscaling(min=0, max=3))
    sent = dict(hosting.requests)
    assert sent["CreateEndpointConfig"]["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/answers/", "S3FailurePath": f"s3://{BUCKET}/answers/failures/",
                         "NotificationConfig": {"SuccessTopic": TOPIC, "ErrorTopic": TOPIC}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2}}
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName="shapes-async")
    assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == f"s3://{BUCKET}/answers/"
    # the container's budget per request is the hour an asynchronous request has, not real-time's 60 s
    assert sent["CreateModel"]["PrimaryContainer"]["Environment"] == {
        "SERVING_WEIGHTS": "onnx", "SERVING_INVOCATION_SECONDS": "3600", "SERVING_BODY_TIMEOUT": "600"}

    targets, policies, alarms = _scaling(aws)
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        ("endpoint/shapes-async/variant/AllTraffic", 0, 3)]
    backlog = policies["sm-detectors-backlog-per-instance"]["TargetTrackingScalingPolicyConfiguration"]
    assert backlog["TargetValue"] == 5.0
    assert backlog["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    step = policies["sm-detectors-has-backlog-without-capacity"]
    assert step["PolicyType"] == "StepScaling"
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]
    (alarm,) = alarms
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["AlarmActions"] == [step["PolicyARN"]]
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "shapes-async"}]

    # an image: uploaded, queued, answered in S3 once the instance gets to it (the test decides when)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(100, 70))
    hosting.async_gate.clear()
    pending = endpoint.predict_async(photo, **LOW)
    request = hosting.requests[-1][1]
    assert request["InputLocation"] == pending.input
    assert pending.input.startswith(f"s3://{BUCKET}/async-inputs/shapes-async/") and pending.input.endswith(".jpg")
    assert (request["ContentType"], request["CustomAttributes"]) == ("image/jpeg", "conf=0.0001,max_det=2")
    assert pending.output == f"s3://{BUCKET}/answers/{pending.inference_id}.out"
    assert not pending.done()
    hosting.async_gate.set()
    answer = pending.result(timeout=120, poll=0.05)
    server = hosting.servers["shapes-async"]
    status, direct, _ = server.invoke(photo.read_bytes(), "image/jpeg", attributes="conf=0.0001,max_det=2")
    assert status == 200 and answer == json.loads(direct), "the same detections as a real-time call"
    assert pending.done()

    # a video: one result per frame; from a local file, and from an S3 object used where it is
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video_bytes(5))
    frames = endpoint.predict_async(clip, **LOW).result(timeout=120, poll=0.05)
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4] and all(len(f["detections"]) == 2 for f in frames)
    assert hosting.requests[-1][1]["ContentType"] == "video/mp4"
    aws.client("s3").put_object(Bucket=BUCKET, Key="videos/clip.mp4", Body=clip.read_bytes())
    again = endpoint.predict_async(f"s3://{BUCKET}/videos/clip.mp4", **LOW).result(timeout=120, poll=0.05)
    assert again == frames

    # a request the container refuses: the failure object, read back as the container's reason
    refused = endpoint.predict_async(clip, track=True)
    with pytest.raises(InvocationError, match="track=true needs") as err:
        refused.result(timeout=120, poll=0.05)
    assert err.value.status == 400 and refused.failure.startswith(f"s3://{BUCKET}/answers/failures/")

    # a new instance count keeps the endpoint asynchronous (its answers still go to S3)
    endpoint.update(instance_count=2)
    current = endpoint.describe()["EndpointConfigName"]
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=current)
    assert config["AsyncInferenceConfig"] == sent["CreateEndpointConfig"]["AsyncInferenceConfig"]
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    with pytest.raises(ConfigurationError, match="runs on instances"):
        endpoint.update(serverless=ServerlessConfig())
    assert len(endpoint.predict_async(image_bytes(), **LOW).result(timeout=120, poll=0.05)["detections"]) == 2

    deleted = endpoint.delete()
    assert set(deleted) == {
        "endpoint:shapes-async", "scaling-policy:sm-detectors-backlog-per-instance",
        "scaling-policy:sm-detectors-has-backlog-without-capacity",
        "scalable-target:endpoint/shapes-async/variant/AllTraffic",
        "alarm:sm-detectors-shapes-async-has-backlog-without-capacity",
        f"endpoint-config:{current}", "model:shapes-async"}
    assert _scaling(aws) == ([], {}, [])


def test_real_time_target_tracking_and_delete_leaves_what_others_put(hosting, job, aws):  # noqa: F811
    endpoint = deploy(job, weights=ONNX, poll=FAST_POLL, name="shapes-rt", instance_count=2,
                      autoscaling=Autoscaling(min=1, max=4, target=120))
    targets, policies, alarms = _scaling(aws)
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 4)] and not alarms
    tracking = policies["sm-detectors-invocations-per-instance"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking == {"TargetValue": 120.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                        "PredefinedMetricSpecification": {
                            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
    with pytest.raises(ConfigurationError, match="real-time endpoint"):
        endpoint.predict_async(image_bytes())
    # a scheduled-hours policy someone added by hand: not deploy's, so delete leaves it and its target
    aws.client("application-autoscaling").put_scaling_policy(
        PolicyName="office-hours", ServiceNamespace="sagemaker", ResourceId="endpoint/shapes-rt/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 50.0, "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    deleted = endpoint.delete()
    assert "scaling-policy:sm-detectors-invocations-per-instance" in deleted
    targets, policies, _ = _scaling(aws)
    assert list(policies) == ["office-hours"] and len(targets) == 1


@pytest.mark.parametrize("kwargs,says", [
    ({"autoscaling": Autoscaling(min=0, max=2)}, "min=0 needs an asynchronous endpoint"),
    ({"autoscaling": Autoscaling(min=3, max=2)}, "0 <= min <= max"),
    ({"autoscaling": Autoscaling(min=2, max=4)}, "instance_count=1 is outside"),
    ({"autoscaling": Autoscaling(), "wait": False}, "needs wait=True"),
    ({"serverless": ServerlessConfig(), "autoscaling": Autoscaling()}, "scales itself"),
    ({"serverless": ServerlessConfig(), "asynchronous": AsyncConfig(output=f"s3://{BUCKET}/a/")}, "runs on instances"),
    ({"asynchronous": AsyncConfig(output="answers/")}, "not an S3 URI"),
    ({"asynchronous": AsyncConfig(output=f"s3://{BUCKET}/a/", notify="my-topic")}, "not an SNS topic ARN"),
    ({"asynchronous": AsyncConfig(output=f"s3://{BUCKET}/a/", max_concurrent=0)}, "max_concurrent must be"),
    ({"instance_type": "local", "autoscaling": Autoscaling()}, "autoscaling applies to SageMaker endpoints"),
])
def test_bad_arguments_are_caught_before_anything_is_created(hosting, job, aws, kwargs, says):  # noqa: F811
    with pytest.raises(ConfigurationError, match=says):
        deploy(job, role=ROLE, **kwargs)
    assert not any(op.startswith(("Create", "Register", "Put")) for op, _ in hosting.requests)


def test_cli_async_deploy_invoke_undeploy(hosting, job, aws, tmp_path, capsys, monkeypatch):  # noqa: F811
    from sdk import cli

    monkeypatch.setattr("sdk.serving.POLL_SECONDS", FAST_POLL)
    monkeypatch.setattr("sdk.serving.asynchronous.POLL_SECONDS", FAST_POLL)
    assert cli.main(["deploy", job, "--name", "shapes-cli", "--weights", ONNX, "--autoscaling", "1"]) == 2
    assert "--autoscaling takes MIN:MAX[:TARGET]" in capsys.readouterr().err
    assert cli.main(["deploy", job, "--name", "shapes-cli", "--weights", ONNX, "--async-output",
                     f"s3://{BUCKET}/cli-answers/", "--autoscaling", "0:2:3"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "InService"
    policies = _scaling(aws)[1]
    assert policies["sm-detectors-backlog-per-instance"]["TargetTrackingScalingPolicyConfiguration"][
        "TargetValue"] == 3.0
    clip = tmp_path / "clip.avi"
    clip.write_bytes(video_bytes(4, suffix=".avi"))
    assert cli.main(["invoke", "shapes-cli", str(clip), "--async", "--conf", "0.0001", "--max-det", "1"]) == 0
    frames = json.loads(capsys.readouterr().out)
    assert [(f["frame"], len(f["detections"])) for f in frames] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert hosting.requests[-1][1]["ContentType"] == "video/x-msvideo"
    assert cli.main(["invoke", "shapes-cli", str(clip), "--async", "--no-wait"]) == 0
    where = json.loads(capsys.readouterr().out)
    assert where["output"] == f"s3://{BUCKET}/cli-answers/{where['inference_id']}.out"
    assert cli.main(["invoke", "shapes-cli", str(clip), str(clip), "--async"]) == 2
    assert "--async takes one image or video" in capsys.readouterr().err
    assert cli.main(["undeploy", "shapes-cli"]) == 0
    deleted = json.loads(capsys.readouterr().out)["deleted"]
    assert "scalable-target:endpoint/shapes-cli/variant/AllTraffic" in deleted and len(deleted) == 7


def test_batch_transform_of_videos_one_line_per_frame(hosting, job, aws):  # noqa: F811
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="clips/a.mp4", Body=video_bytes(3))
    s3.put_object(Bucket=BUCKET, Key="clips/b.mp4", Body=video_bytes(5, 64, 48))
    done = transform(job, f"s3://{BUCKET}/clips/", f"s3://{BUCKET}/clips-out/", content_type="video/mp4",
                     weights=ONNX, environment={"SERVING_VIDEO_BATCH": "2"}, poll=FAST_POLL)
    request = dict(hosting.requests)["CreateTransformJob"]
    assert request["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 3600}
    assert dict(hosting.requests)["CreateModel"]["PrimaryContainer"]["Environment"]["SERVING_INVOCATION_SECONDS"] \
        == "3600"
    found = done.results()
    assert [f["frame"] for f in found["a.mp4"]] == [0, 1, 2]
    assert [(f["frame"], f["width"], f["height"]) for f in found["b.mp4"]] == [(i, 64, 48) for i in range(5)]
