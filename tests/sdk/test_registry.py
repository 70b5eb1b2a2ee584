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
from sdk.cli import main as cli
from sdk.jobs.model_registry import CONTENT_TYPES, CREATED_BY, REALTIME_INSTANCE_TYPES, RESPONSE_TYPES, ModelList
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


def test_an_onnx_version_runs_in_the_serving_variant_when_it_was_pushed(registry, aws):
    """register(weights="onnx"): the version's container is IMAGE:TAG-serve when build-and-push.sh yolo-serve pushed
    it beside the training image (as deploy does), else the training image; the properties name the training image."""
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="sm-yolo")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "2" * 64, "size": 1,
                                      "mediaType": "application/vnd.docker.container.image.v1+json"},
                           "layers": []})
    plain = sdk.register(make_job(aws, "pcb-train-005"), group=GROUP, weights="onnx")
    ecr.put_image(repositoryName="sm-yolo", imageManifest=manifest, imageTag="1.0-serve")
    variant = sdk.register(make_job(aws, "pcb-train-006"), group=GROUP, weights="onnx")
    best_pt = sdk.register(make_job(aws, "pcb-train-007"), group=GROUP)
    sm = aws.client("sagemaker")
    images = [sm.describe_model_package(ModelPackageName=m.arn)["InferenceSpecification"]["Containers"][0]["Image"]
              for m in (plain, variant, best_pt)]
    assert images == [IMAGE, f"{IMAGE}-serve", IMAGE]
    assert variant.properties["image"] == IMAGE


def test_a_tf_job_from_a_repository_named_otherwise(registry, aws):
    """The TF image's scores (COCO AP, AP50) under the registry's names; its kind read from the job's metric
    definitions when the repository's name does not say (launched with kind='tfod')."""
    from moto.sagemaker.models import sagemaker_backends

    plan = sdk.plan_job(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/detector:2.0", kind="tfod", role=ROLE,
                        output_path=OUT, train=f"s3://{BUCKET}/data/tf/", hyperparameters={"num_steps": 500},
                        job_name="tf-train-001")
    aws.client("sagemaker").create_training_job(**plan.request)
    job = sagemaker_backends["123456789012"]["us-east-1"].training_jobs["tf-train-001"]
    job.algorithm_specification["MetricDefinitions"] = plan.request["AlgorithmSpecification"]["MetricDefinitions"]
    aws.client("s3").put_object(Bucket=BUCKET, Key="jobs/tf-train-001/output/model.tar.gz", Body=tarball([
        ("metrics.json", json.dumps({"final": {"AP": 0.31, "AP50": 0.52, "AP75": 0.3}}).encode())]))
    model = sdk.register("tf-train-001", group=GROUP)
    assert model.metrics == {"mAP50-95": 0.31, "mAP50": 0.52}
    assert model.properties["steps"] == "500" and "epochs" not in model.properties


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


def test_a_request_botocore_would_refuse_is_refused_before_the_group_is_made(registry, aws):
    """One problem alone (an empty tag key) is named too: botocore's report has no header line to skip."""
    from sdk.jobs.api import problems_of

    assert problems_of("CreateModelPackageGroup", {"ModelPackageGroupName": "g", "Tags": [{"Key": "", "Value": "x"}]}) \
        == ["Invalid length for parameter Tags[0].Key, value: 0, valid min length: 1"]
    with pytest.raises(sdk.ConfigurationError, match=r"CreateModelPackage request would be refused.*Tags\[1\]\.Key"):
        sdk.register(make_job(aws, "pcb-train-011"), group=GROUP, tags={"": "x"})
    assert _groups(aws) == [] and "CreateModelPackageGroup" not in registry.operations()


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
    registry.deny.add("UpdateModelPackage")
    with pytest.raises(sdk.AccessDeniedError, match=r"\(sagemaker:UpdateModelPackage\).*Check the IAM policy"):
        sdk.approve(f"{GROUP}/1")
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


def test_deploy_one_approved_version_with_an_environment_on_top(registry, aws):
    """deploy(version): the Model names the package (SageMaker takes its image, model and environment); weights=
    set at deploy time go on top of the version's environment. wait=False: moto's endpoint is recorded only."""
    model = sdk.register(make_job(aws, "pcb-train-012"), group=GROUP, weights="onnx")
    endpoint = sdk.deploy(sdk.approve(model), weights="best.pt", environment={"SERVING_WORKERS": "2"}, wait=False)
    sm = aws.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint.describe()["EndpointConfigName"])
    created = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert created["PrimaryContainer"] == {"ModelPackageName": model.arn, "Environment": {
        "SERVING_WEIGHTS": "best.pt", "SERVING_WORKERS": "2"}}
    assert created["ExecutionRoleArn"] == ROLE
    assert sdk.registry.served_version(endpoint.name).version == 1


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
    from sdk.registry import served_version
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
        assert served_version(endpoint.name).version == 1
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
        assert served_version(endpoint.name).arn == second.arn
        assert old_model["ModelName"] not in {m["ModelName"] for m in sm.list_models()["Models"]}
        assert endpoint.predict(image_bytes(64, 64), conf=0.0001, max_det=1)["width"] == 64
        with pytest.raises(sdk.ConfigurationError, match="already serves pcb-detectors-v2"):
            endpoint.update(group=GROUP)
        endpoint.delete()
        assert not hosting.errors, hosting.errors
    finally:
        hosting.close()


# -- the retrain pipeline registers, gated -----------------------------------------------------------------------
DATA = f"s3://{BUCKET}/incoming/pcb/"


def _resolve(value, values):
    """A pipeline definition's references resolved as SageMaker would at execution time (``values``: by ref)."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            return values[value["Get"]]
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(str(_resolve(v, values)) for v in join["Values"])
        return {k: _resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, values) for v in value]
    return value


def test_retrain_pipeline_registers_behind_the_min_map_condition(registry, aws, tmp_path):
    from sdk.pipeline import retrain_on_upload

    trigger = retrain_on_upload(name="pcb-retrain", data=DATA, image=IMAGE, role=ROLE, output_path=OUT,
                                hyperparameters={"epochs": 30}, marker="_READY", register_to=GROUP, min_map=0.5,
                                session=aws)
    sm = aws.client("sagemaker")
    definition = json.loads(sm.describe_pipeline(PipelineName="pcb-retrain")["PipelineDefinition"])
    assert definition == trigger.definition
    train, check = definition["Steps"]
    assert (train["Name"], check["Name"], check["Type"]) == ("Train", "CheckMinMap", "Condition")
    (condition,) = check["Arguments"]["Conditions"]
    assert condition == {"Type": "GreaterThanOrEqualTo", "RightValue": 0.5,
                         "LeftValue": {"Get": "Steps.Train.FinalMetricDataList['final:mAP50-95'].Value"}}
    (register,), (fail,) = check["Arguments"]["IfSteps"], check["Arguments"]["ElseSteps"]
    assert (register["Type"], fail["Type"]) == ("RegisterModel", "Fail")

    # what the register step sends once the training step has run: a valid CreateModelPackage, pending approval
    job_arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-abc-train"
    values = {"Steps.Train.ModelArtifacts.S3ModelArtifacts": f"{OUT}/pipelines-abc-train/output/model.tar.gz",
              "Steps.Train.TrainingJobName": "pipelines-abc-train", "Steps.Train.TrainingJobArn": job_arn,
              "Parameters.DataPrefix": DATA, "Parameters.hp_epochs": "30",
              **{f"Steps.Train.FinalMetricDataList['final:{k}'].Value": v for k, v in FINAL.items()}}
    sent = _resolve(register["Arguments"], values)
    check_request = __import__("tests.sdk.double", fromlist=["x"]).check_against_service_model
    check_request("CreateModelPackage", sent)
    assert sent["ModelApprovalStatus"] == "PendingManualApproval" and sent["ModelPackageGroupName"] == GROUP
    assert sent["CustomerMetadataProperties"] == {
        "mAP50-95": "0.41234", "mAP50": "0.66", "precision": "0.81234", "recall": "0.7", "epochs": "30",
        "channel:train": DATA, "image": IMAGE, "training_job": "pipelines-abc-train"}
    assert sent["MetadataProperties"] == {"GeneratedBy": job_arn}
    assert sent["InferenceSpecification"]["Containers"] == [
        {"Image": IMAGE, "ModelDataUrl": f"{OUT}/pipelines-abc-train/output/model.tar.gz"}]
    assert _resolve(fail["Arguments"]["ErrorMessage"], values) == \
        "not registered: final:mAP50-95 0.41234 is below min_map 0.5"
    # the group exists before the first execution, tagged as this SDK's
    arn = sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    assert CREATED_BY in sm.list_tags(ResourceArn=arn)["Tags"]

    # auto_approve without a threshold: the register step right after training, Approved
    again = retrain_on_upload(name="pcb-retrain", data=DATA, image=IMAGE, role=ROLE, output_path=OUT,
                              register_to=GROUP, auto_approve=True, marker="_READY", session=aws)
    assert [s["Type"] for s in again.definition["Steps"]] == ["Training", "RegisterModel"]
    assert again.definition["Steps"][1]["Arguments"]["ModelApprovalStatus"] == "Approved"
    with pytest.raises(sdk.ConfigurationError, match="pass register_to"):
        retrain_on_upload(name="other", data=DATA, image=IMAGE, role=ROLE, output_path=OUT, min_map=0.4,
                          marker="_READY", session=aws)
    with pytest.raises(sdk.ConfigurationError, match="min_map is a mAP50-95 between 0 and 1"):
        retrain_on_upload(name="other", data=DATA, image=IMAGE, role=ROLE, output_path=OUT, min_map=50,
                          register_to=GROUP, marker="_READY", session=aws)
    assert [p["PipelineName"] for p in sm.list_pipelines()["PipelineSummaries"]] == ["pcb-retrain"]


V2 = __import__("tests.conftest", fromlist=["x"]).ROOT / ".venv-sm2" / "bin" / "python"


@pytest.mark.skipif(not V2.exists(), reason="no .venv-sm2 (made by .ci/run)")
def test_retrain_pipeline_definition_is_the_one_the_sagemaker_sdk_builds(aws, tmp_path):
    """The same pipeline built with SageMaker SDK v2's TrainingStep, ConditionStep, RegisterModel and FailStep:
    the definitions are equal, training step included, but for v2's step-name suffix ('Register-RegisterModel')
    and the ``"PipelineExperimentConfig": null`` it writes when told to have none."""
    import subprocess

    from sdk.pipeline import retrain_on_upload
    from tests.conftest import ROOT
    from tests.sdk.sagemaker_python import script_env

    trigger = retrain_on_upload(name="pcb-retrain", data=DATA, image=IMAGE, role=ROLE, output_path=OUT,
                                hyperparameters={"epochs": 30, "imgsz": 640}, val=f"s3://{BUCKET}/val/",
                                marker="_READY", register_to=GROUP, min_map=0.5, session=aws)
    request = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, val=f"s3://{BUCKET}/val/",
                           hyperparameters={"epochs": 30, "imgsz": 640}, checkpoints=False, session=aws,
                           job_name="pcb-retrain-train").request
    spec = {"request": request, "checkpoint_base": f"{OUT}/pipelines/pcb-retrain", "group": GROUP, "kind": "yolo",
            "approval": "PendingManualApproval", "min_map": 0.5, "name": "pcb-retrain",
            "description": f"trained by pipeline pcb-retrain on an upload to {DATA}"}
    env = script_env(tmp_path, version=2)  # no user's SageMaker config, telemetry off
    out = subprocess.run([str(V2), str(ROOT / "tests/sdk/v2_pipeline.py"), json.dumps(spec)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    (register,) = theirs["Steps"][1]["Arguments"]["IfSteps"]
    assert register["Name"] == "Register-RegisterModel"
    register["Name"] = "Register"
    assert theirs.pop("PipelineExperimentConfig") is None  # v2 writes the null it was given; ours leaves it out
    ours = json.loads(aws.client("sagemaker").describe_pipeline(PipelineName="pcb-retrain")["PipelineDefinition"])
    assert ours == trigger.definition
    assert [s["Name"] for s in ours["Steps"]] == ["Train", "CheckMinMap"]
    assert theirs == ours


def test_cli_pipeline_create_with_register_to(registry, aws, capsys):
    base = ["pipeline", "create", "cli-retrain", "--data", DATA, "--marker", "_READY", "--image", IMAGE, "--role", ROLE,
            "--output-path", OUT]
    assert cli([*base, "--min-map", "0.3"]) == 2
    assert "pass register_to" in capsys.readouterr().err
    assert cli([*base, "--register-to", GROUP, "--min-map", "0.3"]) == 0
    definition = json.loads(aws.client("sagemaker").describe_pipeline(PipelineName="cli-retrain")["PipelineDefinition"])
    assert [s["Name"] for s in definition["Steps"]] == ["Train", "CheckMinMap"]
    check = definition["Steps"][1]
    assert check["Arguments"]["Conditions"][0]["RightValue"] == 0.3
    assert check["Arguments"]["IfSteps"][0]["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"
    assert _groups(aws) == [GROUP]
