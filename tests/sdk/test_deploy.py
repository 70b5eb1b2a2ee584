"""sdk.serving (deploy, transform, endpoints) against the moto server, with tests/sdk/hosting_double.py
playing SageMaker hosting by running the real ``serve`` on the model.tar.gz the request names. Every hosting
request is checked against botocore's
service model on the way in."""

from __future__ import annotations

import json

import pytest

from sdk._errors import ConfigurationError, DeployFailedError, InvocationError, NotFoundError
from sdk.serving import CREATED_TAG, Endpoint, ServerlessConfig, deploy, transform
from tests.sdk.conftest import BUCKET, IMAGE, ROLE
from tests.sdk.hosting_double import HostingDouble
from tests.serving_models import image_bytes, model_tarball, yolo_model_dir

pytestmark = pytest.mark.slow
JOB = "yolo-shapes-001"
FAST_POLL = 0.2
ONNX = "onnx"  # the ONNX export starts in seconds (no torch import); best.pt is served in tests/integration


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return model_tarball(yolo_model_dir(tmp_path_factory), tmp_path_factory.mktemp("tar") / "model.tar.gz")


@pytest.fixture
def hosting(aws, moto_endpoint, monkeypatch):
    double = HostingDouble(moto_endpoint)
    double.install(monkeypatch)
    yield double
    double.close()
    assert not double.errors, double.errors


@pytest.fixture
def job(aws, tarball):
    """A Completed training job (moto completes it at once) whose model.tar.gz is the trained model."""
    sm = aws.client("sagemaker")
    sm.create_training_job(
        TrainingJobName=JOB, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    uri = sm.describe_training_job(TrainingJobName=JOB)["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    aws.client("s3").upload_file(str(tarball), bucket, key)
    return JOB


def _names(sm):
    return ({m["ModelName"] for m in sm.list_models()["Models"]},
            {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]},
            {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]})


def test_deploy_predict_update_delete(hosting, job, aws, tmp_path):
    endpoint = deploy(job, instance_type="ml.m5.large", weights="onnx", poll=FAST_POLL)
    assert endpoint.status == "InService"
    sent = dict(hosting.requests)
    model = sent["CreateModel"]
    assert model["PrimaryContainer"] == {"Image": IMAGE, "Environment": {"SERVING_WEIGHTS": "onnx"},
                                         "ModelDataUrl": f"s3://{BUCKET}/jobs/{JOB}/output/model.tar.gz"}
    assert model["ExecutionRoleArn"] == ROLE and {"Key": CREATED_TAG, "Value": endpoint.name} in model["Tags"]
    variant = sent["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 1

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(100, 70))
    one = endpoint.predict(photo, conf=0.0001, max_det=2)
    assert (one["width"], one["height"], one["model"]) == (100, 70, "best.onnx")
    assert len(one["detections"]) == 2
    assert hosting.requests[-1][1]["CustomAttributes"] == "conf=0.0001,max_det=2"
    batch = endpoint.predict([photo, image_bytes(80, 120, "PNG")], conf=0.0001, max_det=1)
    assert [(r["width"], r["height"]) for r in batch] == [(100, 70), (80, 120)]
    with pytest.raises(InvocationError, match="not an image") as bad:
        endpoint.predict(b"these bytes are no image")
    assert bad.value.status == 400

    old_config = endpoint.describe()["EndpointConfigName"]
    endpoint.update(instance_count=2)
    name = endpoint.describe()["EndpointConfigName"]
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    assert old_config not in _names(aws.client("sagemaker"))[1], "the replaced configuration deploy made is gone"
    assert len(endpoint.predict(photo, conf=0.0001, max_det=3)["detections"]) == 3

    deleted = endpoint.delete()
    assert deleted[0] == f"endpoint:{endpoint.name}" and len(deleted) == 3
    models, configs, endpoints = _names(aws.client("sagemaker"))
    assert not models and not configs and not endpoints
    assert not hosting.servers, "the endpoint's server was stopped"


def test_serverless_and_delete_leaves_what_it_did_not_create(hosting, job, aws):
    sm = aws.client("sagemaker")
    endpoint = deploy(job, serverless=ServerlessConfig(memory=2048, concurrency=3), name="shapes-serverless",
                      weights=ONNX, poll=FAST_POLL)
    variant = dict(hosting.requests)["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    assert "InstanceType" not in variant
    assert endpoint.predict(image_bytes(64, 64))["model"] == "best.onnx"
    endpoint.delete()

    # an endpoint someone made by hand: undeploy deletes the endpoint only
    mine = sm.create_model(ModelName="hand-made", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": IMAGE, "Environment": {"SERVING_WEIGHTS": ONNX},
                                             "ModelDataUrl": f"s3://{BUCKET}/jobs/{JOB}/output/model.tar.gz"})
    assert mine["ModelArn"]
    sm.create_endpoint_config(EndpointConfigName="hand-made", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "hand-made", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="hand-made", EndpointConfigName="hand-made")
    attached = Endpoint.attach("hand-made", poll=FAST_POLL)
    attached.wait()
    assert attached.delete() == ["endpoint:hand-made"]
    models, configs, endpoints = _names(sm)
    assert models == {"hand-made"} and configs == {"hand-made"} and not endpoints


def test_transform_images_and_jsonlines(hosting, job, aws):
    import base64

    s3 = aws.client("s3")
    for i, (w, h) in enumerate([(100, 70), (64, 64), (80, 120)]):
        s3.put_object(Bucket=BUCKET, Key=f"in/img{i}.jpg", Body=image_bytes(w, h, seed=i))
    result = transform(job, f"s3://{BUCKET}/in/", f"s3://{BUCKET}/out/", weights=ONNX, poll=FAST_POLL)
    assert result.status == "Completed"
    request = dict(hosting.requests)["CreateTransformJob"]
    assert request["TransformInput"]["ContentType"] == "application/x-image"
    found = result.results()
    assert {k: (v["width"], v["height"]) for k, v in found.items()} == {
        "img0.jpg": (100, 70), "img1.jpg": (64, 64), "img2.jpg": (80, 120)}
    assert not _names(aws.client("sagemaker"))[0], "the model made for the transform is deleted after it"

    # more records than a real-time request may carry (64): SageMaker packs as many as fit in MaxPayloadInMB into
    # one request (MultiRecord), so the transform's container takes what fits (was 413, failing the job)
    small = [base64.b64encode(image_bytes(20 + i % 30, 16, seed=i)).decode() for i in range(100)]
    s3.put_object(Bucket=BUCKET, Key="lines/records.jsonl",
                  Body="\n".join(json.dumps({"image": data}) for data in small).encode())
    result = transform(job, f"s3://{BUCKET}/lines/", f"s3://{BUCKET}/lines-out/",
                       content_type="application/jsonlines", weights=ONNX, poll=FAST_POLL, max_payload_mb=1)
    ops = [op for op, _ in hosting.requests]
    request = hosting.requests[ops.index("CreateTransformJob", 2)][1]
    assert request["TransformInput"]["SplitType"] == "Line" and request["TransformOutput"]["AssembleWith"] == "Line"
    assert request["BatchStrategy"] == "MultiRecord" and request["MaxPayloadInMB"] == 1
    env = hosting.requests[ops.index("CreateModel", ops.index("CreateModel") + 1)][1]["PrimaryContainer"]["Environment"]
    assert (env["SERVING_MAX_BODY_MB"], env["SERVING_MAX_IMAGES"]) == ("1", str(2**20 // 100))
    assert [r["width"] for r in result.results()["records.jsonl"]] == [20 + i % 30 for i in range(100)]


def test_transform_failure_names_the_record(hosting, job, aws):
    aws.client("s3").put_object(Bucket=BUCKET, Key="bad/notes.txt", Body=b"not an image")
    with pytest.raises(DeployFailedError, match="notes.txt: 400") as err:
        transform(job, f"s3://{BUCKET}/bad/", f"s3://{BUCKET}/bad-out/", weights=ONNX, poll=FAST_POLL)
    assert err.value.status == "Failed"


def test_an_endpoint_that_cannot_start_fails_with_the_reason(hosting, aws, tmp_path):
    import tarfile

    empty = tmp_path / "model.tar.gz"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "readme.txt").write_text("no model here")
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(tmp_path / "m" / "readme.txt", arcname="readme.txt")
    aws.client("s3").upload_file(str(empty), BUCKET, "odd/model.tar.gz")
    with pytest.raises(DeployFailedError, match="holds neither a YOLO model"):
        deploy(f"s3://{BUCKET}/odd/model.tar.gz", image=IMAGE, role=ROLE, poll=FAST_POLL)
    hosting.errors.clear()  # the double reported it as SageMaker would: a Failed endpoint


def test_bad_arguments_are_caught_before_anything_is_created(hosting, job, aws):
    with pytest.raises(ConfigurationError, match="serverless memory"):
        deploy(job, serverless=ServerlessConfig(memory=1500))
    with pytest.raises(ConfigurationError, match="not a SageMaker hosting instance type"):
        deploy(job, instance_type="m5.large")
    with pytest.raises(ConfigurationError, match="needs image="):
        deploy(f"s3://{BUCKET}/x/model.tar.gz", role=ROLE)
    with pytest.raises(ConfigurationError, match="must be an s3:// prefix"):
        transform(job, "images/", f"s3://{BUCKET}/out/")
    with pytest.raises(NotFoundError):
        deploy("no-such-job")
    assert not any(op.startswith("Create") for op, _ in hosting.requests)


def test_cli_deploy_invoke_undeploy_transform(hosting, job, aws, tmp_path, capsys, monkeypatch):
    from sdk import cli

    monkeypatch.setattr("sdk.serving.POLL_SECONDS", FAST_POLL)
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(90, 60, "PNG"))
    assert cli.main(["deploy", job, "--name", "shapes-cli", "--weights", ONNX]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "InService"
    assert cli.main(["invoke", "shapes-cli", str(photo), "--conf", "0.0001", "--max-det", "1"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["width"], answer["height"], len(answer["detections"])) == (90, 60, 1)
    assert cli.main(["invoke", "shapes-cli", str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["undeploy", "shapes-cli"]) == 0
    assert len(json.loads(capsys.readouterr().out)["deleted"]) == 3
    assert cli.main(["undeploy", "shapes-cli"]) == 1
    assert "Could not find endpoint" in capsys.readouterr().err

    aws.client("s3").put_object(Bucket=BUCKET, Key="cli-in/a.png", Body=photo.read_bytes())
    assert cli.main(["transform", job, f"s3://{BUCKET}/cli-in/", f"s3://{BUCKET}/cli-out/", "--weights", ONNX]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "Completed"
    out = aws.client("s3").get_object(Bucket=BUCKET, Key="cli-out/a.png.out")["Body"].read()
    assert json.loads(out)["width"] == 90


def test_local_deploy_serves_on_this_machine(tmp_path_factory):
    endpoint = deploy(yolo_model_dir(tmp_path_factory), instance_type="local", weights="onnx")
    try:
        assert endpoint.status == "InService" and endpoint.url.startswith("http://127.0.0.1:")
        result = endpoint.predict(image_bytes(70, 50), conf=0.0001, max_det=4)
        assert (result["width"], result["height"], len(result["detections"])) == (70, 50, 4)
        with pytest.raises(InvocationError, match="max_det must be 1..10000") as err:
            endpoint.predict(image_bytes(), max_det=0)
        assert err.value.status == 400
        # sdk.predict on an endpoint: each image sent as a JPEG, boxes drawn, detections.json written
        from sdk.predict import predict

        photos = tmp_path_factory.mktemp("photos")
        (photos / "a.jpg").write_bytes(image_bytes(100, 70))
        (photos / "b.png").write_bytes(image_bytes(60, 90, "PNG"))
        out = tmp_path_factory.mktemp("predictions")
        result = predict(endpoint, photos, out=out, conf=0.0001)
        assert [f["source"].rsplit("/", 1)[-1] for f in result.frames] == ["a.jpg", "b.png"]
        assert all(f["detections"] and f["detections"][0]["label"] in ("rectangle", "ellipse") for f in result.frames)
        assert sorted(p.name for p in result.outputs) == ["a_pred.jpg", "b_pred.png"]
        assert json.loads(result.json_path.read_text())["model"] == endpoint.name
    finally:
        endpoint.delete()
    assert endpoint.status == "OutOfService"


def test_onnx_deploys_the_serving_variant_when_it_was_pushed(hosting, job, aws, capsys):
    """weights="onnx" and no image=: IMAGE:TAG-serve when build-and-push.sh pushed the variant to the training
    image's ECR repository (asked with ecr:DescribeImages on the moto server), else the training image and a line
    saying how to push the variant."""
    from sdk.serving import serving_variant

    assert serving_variant(IMAGE, aws) == IMAGE
    assert "yolo-serve 1.0" in capsys.readouterr().err  # the command that pushes it
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="sm-yolo")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    ecr.put_image(repositoryName="sm-yolo", imageManifest=json.dumps(manifest), imageTag="1.0")
    assert serving_variant(IMAGE, aws) == IMAGE  # the training image alone is not the variant
    layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
             "digest": "sha256:" + "1" * 64}
    ecr.put_image(repositoryName="sm-yolo", imageManifest=json.dumps({**manifest, "layers": [layer]}),
                  imageTag="1.0-serve")
    endpoint = deploy(job, weights=ONNX, wait=False)
    try:
        assert dict(hosting.requests)["CreateModel"]["PrimaryContainer"]["Image"] == f"{IMAGE}-serve"
        assert "serving variant" in capsys.readouterr().err
        explicit = deploy(job, weights=ONNX, image=IMAGE, wait=False, name="explicit-image")
        assert dict(hosting.requests)["CreateModel"]["PrimaryContainer"]["Image"] == IMAGE  # image= is the user's
        explicit.delete()
    finally:
        endpoint.delete()
