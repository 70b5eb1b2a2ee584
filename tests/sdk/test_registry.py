"""The Model Registry (sdk.registry) against the moto server over HTTP: register a job's model, read the
version back as the console does, approve and reject, refuse to deploy an unapproved group, deploy and update to
a newer approved version (tests/sdk/hosting_double.py serving the registered model.tar.gz), and break things on
purpose. Every registry request is checked against botocore's service model (tests/sdk/registry_double.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

import sdk
from sdk._registry import CONTENT_TYPES, CREATED_BY, REALTIME_INSTANCE_TYPES, RESPONSE_TYPES, ModelList
from sdk.cli import main as cli
from tests.sdk.conftest import BUCKET, IMAGE, ROLE
from tests.sdk.registry_double import RegistryDouble

OUT = f"s3://{BUCKET}/jobs"
GROUP = "pcb-detectors"
FINAL = {"precision": 0.81234, "recall": 0.7, "mAP50": 0.66, "mAP50-95": 0.41234}


def metrics_json(final=FINAL, **extra):
    return json.dumps({"final": final, "epochs_completed": 30, "ultralytics_version": "8.4.7",
                       "hyperparameters": {"epochs": 30}, "job_name": "x", **extra}).encode()


def tarball(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_job(aws, name, *, members=None, upload=True, image=IMAGE):
    """A job moto marks Completed (plan_job's real request), its model.tar.gz as the images write it."""
    plan = sdk.plan_job(image=image, role=ROLE, output_path=OUT, train=f"s3://{BUCKET}/data/pcb/",
                        val=f"s3://{BUCKET}/data/pcb-val/", hyperparameters={"epochs": 30, "imgsz": 640},
                        job_name=name)
    aws.client("sagemaker").create_training_job(**plan.request)
    if upload:
        members = members if members is not None else [("./best.pt", b"weights " + name.encode()),
                                                       ("./metrics.json", metrics_json())]
        aws.client("s3").put_object(Bucket=BUCKET, Key=f"jobs/{name}/output/model.tar.gz", Body=tarball(members))
    return name


@pytest.fixture
def registry(aws, monkeypatch):
    double = RegistryDouble()
    double.install(monkeypatch)
    return double


def _groups(aws):
    return [g["ModelPackageGroupName"] for g in
            aws.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]]


# -- register ---------------------------------------------------------------------------------------------------
def test_register_reads_back_as_the_console_would(registry, aws, capsys):
    job = make_job(aws, "pcb-train-001")
    model = sdk.register(job, group=GROUP, description="first PCB detector", weights="onnx", tags={"team": "cv"})
    assert "model package group pcb-detectors created" in capsys.readouterr().err
    assert (model.group, model.version, model.status, model.job_name) == (GROUP, 1, "PendingManualApproval", job)
    assert model.metrics == {"mAP50-95": 0.4123, "mAP50": 0.66, "precision": 0.8123, "recall": 0.7}
    assert model.created is not None and model.arn.endswith(f"model-package/{GROUP}/1")

    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    group = sm.describe_model_package_group(ModelPackageGroupName=GROUP)
    assert CREATED_BY in sm.list_tags(ResourceArn=group["ModelPackageGroupArn"])["Tags"]
    info = sm.describe_model_package(ModelPackageName=model.arn)
    job_info = sm.describe_training_job(TrainingJobName=job)
    spec = info["InferenceSpecification"]
    assert spec["Containers"] == [{"Image": IMAGE, "ModelDataUrl": f"{OUT}/{job}/output/model.tar.gz",
                                   "Environment": {"SERVING_WEIGHTS": "onnx"}}]
    assert spec["SupportedContentTypes"] == CONTENT_TYPES and "image/jpeg" in CONTENT_TYPES
    assert spec["SupportedResponseMIMETypes"] == RESPONSE_TYPES == ["application/json", "application/jsonlines"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == REALTIME_INSTANCE_TYPES
    assert info["MetadataProperties"] == {"GeneratedBy": job_info["TrainingJobArn"]}
    assert info["ModelPackageDescription"] == "first PCB detector"
    assert info["CustomerMetadataProperties"] == {
        "mAP50-95": "0.4123", "mAP50": "0.66", "precision": "0.8123", "recall": "0.7", "epochs": "30",
        "image": IMAGE, "ultralytics_version": "8.4.7", "channel:train": f"s3://{BUCKET}/data/pcb/",
        "channel:val": f"s3://{BUCKET}/data/pcb-val/", "training_job": job}
    # the job's metrics.json, beside its model, is the version's model-quality statistics (digest included)
    stats = info["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["S3Uri"] == f"{OUT}/{job}/output/metrics.json" and stats["ContentType"] == "application/json"
    stored = s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}/output/metrics.json")["Body"].read()
    assert stored == metrics_json() and stats["ContentDigest"] == "sha256:" + hashlib.sha256(stored).hexdigest()
    (create,) = [r for op, r in registry.requests if op == "CreateModelPackage"]
    assert {"Key": "team", "Value": "cv"} in create["Tags"] and CREATED_BY in create["Tags"]


def test_register_latest_second_version_listing_and_approval(registry, aws):
    first = sdk.register(make_job(aws, "pcb-train-001"), group=GROUP)
    second_job = make_job(aws, "pcb-train-002", members=[("metrics.json", metrics_json({**FINAL, "mAP50-95": 0.5}))])
    second = sdk.register("latest", group=GROUP)
    assert (second.version, second.job_name, second.metrics["mAP50-95"]) == (2, second_job, 0.5)
    assert "CreateModelPackageGroup" not in registry.operations()[registry.operations().index("CreateModelPackage"):]

    listed = sdk.registered_models(GROUP)
    assert isinstance(listed, ModelList) and [m.version for m in listed] == [2, 1]
    table = listed.text().splitlines()
    assert table[0].split() == ["version", "status", "mAP50-95", "job", "created"]
    assert table[2].split()[:4] == ["2", "PendingManualApproval", "0.5", second_job]
    html = listed._repr_html_()
    assert html.count("<tr>") == 3 and "<th>mAP50-95</th>" in html and "pcb-train-001" in html

    approved = sdk.approve(f"{GROUP}/1", note="beats production on the night set")
    assert (approved.status, approved.note) == ("Approved", "beats production on the night set")
    assert approved.metrics == first.metrics, "approval keeps what the version records"
    rejected = second.reject("misses small defects")
    assert (rejected.status, rejected.note) == ("Rejected", "misses small defects")
    assert [m.version for m in sdk.registered_models(GROUP, status="Approved")] == [1]
    assert [op for op in registry.operations() if op == "UpdateModelPackage"] == ["UpdateModelPackage"] * 2


def test_a_new_metrics_file_never_replaces_one_already_there(registry, aws):
    job = make_job(aws, "pcb-train-003")
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"jobs/{job}/output/metrics.json", Body=b"someone's notes")
    model = sdk.register(job, group=GROUP)
    assert model.statistics.startswith(f"{OUT}/{job}/output/metrics-") and model.statistics.endswith(".json")
    s3 = aws.client("s3")
    assert s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}/output/metrics.json")["Body"].read() == b"someone's notes"
    assert s3.get_object(Bucket=BUCKET, Key=model.statistics.split(f"{BUCKET}/", 1)[1])["Body"].read() \
        == metrics_json()


def test_register_records_the_image_digest_from_ecr(registry, aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="sm-yolo")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "1" * 64, "size": 1,
                                      "mediaType": "application/vnd.docker.container.image.v1+json"},
                           "layers": []})
    pushed = ecr.put_image(repositoryName="sm-yolo", imageManifest=manifest, imageTag="1.0")["image"]
    model = sdk.register(make_job(aws, "pcb-train-004"), group=GROUP)
    assert model.properties["image_digest"] == pushed["imageId"]["imageDigest"]


# -- what is refused, and what is left ---------------------------------------------------------------------------
def test_bad_input_is_refused_before_anything_is_created(registry, aws):
    sm = aws.client("sagemaker")
    with pytest.raises(sdk.NotFoundError, match="no-such-job"):
        sdk.register("no-such-job", group=GROUP)
    with pytest.raises(sdk.ConfigurationError, match="group name 'pcb_detectors' is not valid"):
        sdk.register(make_job(aws, "ok-job"), group="pcb_detectors")
    with pytest.raises(sdk.ConfigurationError, match="did you mean 'Approved'"):
        sdk.register("ok-job", group=GROUP, approval="Aproved")

    running = make_job(aws, "running-job")
    aws_job = __import__("moto.sagemaker.models", fromlist=["x"]).sagemaker_backends["123456789012"]["us-east-1"]
    aws_job.training_jobs[running].training_job_status = "InProgress"
    with pytest.raises(sdk.ConfigurationError, match=r"running-job is InProgress: only a Completed job.*job.wait"):
        sdk.register(running, group=GROUP)
    aws_job.training_jobs[running].training_job_status = "Failed"
    aws_job.training_jobs[running].failure_reason = "AlgorithmError: out of memory"
    with pytest.raises(sdk.JobFailedError, match="out of memory"):
        sdk.register(running, group=GROUP)

    with pytest.raises(sdk.NotFoundError, match="model of training job no-model is missing"):
        sdk.register(make_job(aws, "no-model", upload=False), group=GROUP)
    make_job(aws, "not-a-tarball", members=[])
    aws.client("s3").put_object(Bucket=BUCKET, Key="jobs/not-a-tarball/output/model.tar.gz", Body=b"plain text")
    with pytest.raises(sdk.ConfigurationError, match="not a readable model.tar.gz"):
        sdk.register("not-a-tarball", group=GROUP)
    with pytest.raises(sdk.ConfigurationError, match="local job"):
        sdk.register(sdk.LocalJob("x", aws_job and __import__("pathlib").Path(".")), group=GROUP)
    assert _groups(aws) == [] and sm.list_model_packages()["ModelPackageSummaryList"] == []
    assert not {"CreateModelPackageGroup", "CreateModelPackage"} & set(registry.operations())


def test_a_refused_version_takes_back_the_group_and_file_it_made(registry, aws):
    job = make_job(aws, "pcb-train-005")
    registry.deny.add("CreateModelPackage")
    with pytest.raises(sdk.AccessDeniedError) as err:
        sdk.register(job, group=GROUP)
    message = str(err.value)
    assert "sagemaker:CreateModelPackage" in message and "Check the IAM policy" in message
    assert (f"removed again what this call had created: model package group {GROUP}, "
            f"{OUT}/{job}/output/metrics.json") in message
    assert _groups(aws) == []
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job}/output/")["Contents"]
    assert [o["Key"] for o in listed] == [f"jobs/{job}/output/model.tar.gz"]

    # a group that was there before is left as it was
    registry.deny.clear()
    sdk.register(job, group=GROUP)
    registry.deny.add("CreateModelPackage")
    with pytest.raises(sdk.AccessDeniedError) as err:
        sdk.register(job, group=GROUP)
    assert "model package group" not in str(err.value).split("removed again", 1)[-1]
    assert _groups(aws) == [GROUP] and len(sdk.registered_models(GROUP)) == 1


def test_unknown_group_version_and_reject_without_a_note(registry, aws):
    sdk.register(make_job(aws, "pcb-train-006"), group=GROUP)
    with pytest.raises(sdk.NotFoundError, match=r"no model package group 'pcb-detector'; did you mean 'pcb-detectors'"):
        sdk.registered_models("pcb-detector")
    with pytest.raises(sdk.NotFoundError, match="has no version 7"):
        sdk.approve(f"{GROUP}/7")
    with pytest.raises(sdk.ConfigurationError, match="reject needs a note"):
        sdk.reject(f"{GROUP}/1", note=" ")
    with pytest.raises(sdk.NotFoundError, match="no model package arn:"):
        sdk.approve(f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/9")
    assert sdk.registered_models(GROUP)[0].status == "PendingManualApproval"


def test_deploy_refuses_a_group_without_an_approved_version(registry, aws, monkeypatch):
    sdk.register(make_job(aws, "pcb-train-007"), group=GROUP)
    second = sdk.register(make_job(aws, "pcb-train-008"), group=GROUP)
    with pytest.raises(sdk.NoApprovedModelError) as err:
        sdk.deploy(group=GROUP, role=ROLE)
    message = str(err.value)
    assert "no Approved version" in message and "nothing was created" in message
    assert "v2 (mAP50-95 0.4123, job pcb-train-008), v1" in message
    assert f"python -m sdk approve {second.arn}" in message and err.value.pending[0] == second.arn
    with pytest.raises(sdk.NoApprovedModelError, match="is PendingManualApproval, not Approved"):
        sdk.deploy(second, role=ROLE)
    with pytest.raises(sdk.ConfigurationError, match="not both"):
        sdk.deploy("pcb-train-007", group=GROUP)
    with pytest.raises(sdk.NotFoundError, match="no model package group 'nothing-here'"):
        sdk.deploy(group="nothing-here", role=ROLE)
    sm = aws.client("sagemaker")
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []


def test_fetch_a_registered_model(registry, aws, tmp_path):
    model = sdk.register(make_job(aws, "pcb-train-009"), group=GROUP)
    fetched = sdk.fetch_model(model)
    assert fetched.directory.resolve() == (tmp_path / "models" / f"{GROUP}-v1").resolve()
    assert fetched.best.read_bytes() == b"weights pcb-train-009"
    assert fetched.metrics["final"] == FINAL and fetched.job_name == "pcb-train-009"


def test_cli_register_models_approve_reject_deploy(registry, aws, capsys):
    make_job(aws, "pcb-train-010")
    assert cli(["register", "pcb-train-010", "--group", GROUP, "--tag", "team=cv"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["version"], out["status"], out["metrics"]["mAP50-95"]) == (1, "PendingManualApproval", 0.4123)
    assert cli(["deploy", "--group", GROUP, "--role", ROLE]) == 1
    assert f"python -m sdk approve {out['arn']}" in capsys.readouterr().err
    assert cli(["deploy"]) == 2
    assert "--group G" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse: --note is required
        cli(["reject", out["arn"]])
    assert usage.value.code == 2 and "required: --note" in capsys.readouterr().err
    assert cli(["reject", out["arn"], "--note", "too slow"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "Rejected"
    assert cli(["approve", f"{GROUP}/1", "--note", "second look: fine"]) == 0
    assert json.loads(capsys.readouterr().out)["note"] == "second look: fine"
    assert cli(["models", GROUP]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["version", "status", "mAP50-95", "job", "created"]
    assert lines[2].split()[:4] == ["1", "Approved", "0.4123", "pcb-train-010"]
    assert cli(["models", GROUP, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["job"] == "pcb-train-010"
    assert cli(["models", "pcb-detector"]) == 1
    assert "did you mean 'pcb-detectors'" in capsys.readouterr().err
    assert cli(["register", "no-such-job", "--group", GROUP]) == 1
    assert "no-such-job" in capsys.readouterr().err


# -- serving what was approved -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_deploy_the_approved_version_then_update_to_a_newer_one(registry, aws, moto_endpoint, monkeypatch,
                                                                tmp_path_factory):
    from tests.sdk.hosting_double import HostingDouble
    from tests.serving_models import image_bytes, model_tarball, yolo_model_dir

    hosting = HostingDouble(moto_endpoint)
    hosting.install(monkeypatch)
    try:
        trained = model_tarball(yolo_model_dir(tmp_path_factory), tmp_path_factory.mktemp("reg") / "model.tar.gz")
        for name in ("pcb-train-101", "pcb-train-102"):
            make_job(aws, name, upload=False)
            aws.client("s3").upload_file(str(trained), BUCKET, f"jobs/{name}/output/model.tar.gz")
        first = sdk.register("pcb-train-101", group=GROUP, weights="onnx")
        sdk.approve(first)
        endpoint = sdk.deploy(group=GROUP, poll=0.2)
        model = dict(hosting.requests)["CreateModel"]
        assert model["PrimaryContainer"] == {"ModelPackageName": first.arn}
        assert model["ExecutionRoleArn"] == ROLE, "the training job's role, as deploy(job) uses"
        assert endpoint.name.startswith(f"{GROUP}-v1-")
        answer = endpoint.predict(image_bytes(100, 70), conf=0.0001, max_det=2)
        assert (answer["width"], answer["model"]) == (100, "best.onnx"), "the version's SERVING_WEIGHTS served"

        second = sdk.register("pcb-train-102", group=GROUP, weights="onnx", approval="Approved")
        old_model = model
        endpoint.update(group=GROUP)
        sm = aws.client("sagemaker")
        served = sm.describe_endpoint_config(EndpointConfigName=endpoint.describe()["EndpointConfigName"])
        new_model = sm.describe_model(ModelName=served["ProductionVariants"][0]["ModelName"])
        assert new_model["PrimaryContainer"]["ModelPackageName"] == second.arn
        assert endpoint.describe()["EndpointName"] == endpoint.name, "the endpoint keeps its name"
        assert old_model["ModelName"] not in {m["ModelName"] for m in sm.list_models()["Models"]}
        assert endpoint.predict(image_bytes(64, 64), conf=0.0001, max_det=1)["width"] == 64
        with pytest.raises(sdk.ConfigurationError, match="already serves pcb-detectors-v2"):
            endpoint.update(group=GROUP)
        endpoint.delete()
        assert not hosting.errors, hosting.errors
    finally:
        hosting.close()
