"""The SDK's request building: validated against the image's schema and botocore's service model, no AWS."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

import sdk
from container.failure import UserError
from container.schema import Schema
from sdk import _errors
from sdk.cli import main as cli
from sdk.jobs import request as _request
from tests.conftest import ROOT
from tests.sdk.double import check_against_service_model

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:1.0"
BASE = {"image": IMAGE, "train": "s3://bkt/data/train/", "role": ROLE, "output_path": "s3://bkt/out"}


def test_public_names():
    public = [n for n, v in vars(sdk).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]
    assert sorted(sdk.__all__) == sorted(n for n in public if n not in ("Schema", "annotations"))
    for name in sdk.__all__:
        assert getattr(sdk, name).__doc__, f"sdk.{name} has no docstring"


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    """A region as a notebook has one (plan_job resolves it: the upload and the API need it); no profile."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_import_loads_nothing_heavy_and_plan_only_botocore_model():
    """``import sdk`` loads neither boto3 nor a framework; plan_job reads botocore's service model only."""
    code = ("import sys, sdk; before = sorted(m for m in ('boto3', 'botocore', 'torch', 'ultralytics') "
            f"if m in sys.modules); sdk.plan_job(**{BASE!r}); "
            "print(before, sorted(m for m in ('boto3', 'torch', 'ultralytics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "AWS_REGION": "us-east-1"})
    assert out.stdout.strip() == "[] []"


@pytest.mark.parametrize("extra", [
    {},
    {"spot": True, "max_run": 3600, "max_wait": 7200},
    {"tensorboard": True, "environment": {"WANDB_MODE": "offline"}, "tags": {"team": "cv", "project": "pcb"}},
    {"val": "s3://bkt/data/val/", "channels": {"weights": "s3://bkt/w/yolo11n.pt"},
     "input_modes": {"train": "FastFile"}},
    {"volume_size_gb": 200, "checkpoints": False, "job_name": "pcb-defects-7"},
])
def test_requests_match_the_service_model(extra):
    plan = sdk.plan_job(**BASE, hyperparameters={"epochs": 3, "imgsz": 320}, **extra)
    check_against_service_model("CreateTrainingJob", plan.request)
    assert plan.request["AlgorithmSpecification"]["MetricDefinitions"] == Schema.load("yolo").metric_definitions()


def test_request_fields():
    plan = sdk.plan_job(**BASE, spot=True, max_run=3600, tensorboard=True, job_name="j1",
                        hyperparameters={"epochs": "3", "cos_lr": True, "model": "yolo11s.yaml"})
    r = plan.request
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert r["EnableManagedSpotTraining"] is True
    assert r["CheckpointConfig"] == {"S3Uri": "s3://bkt/out/j1/checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["TensorBoardOutputConfig"]["S3OutputPath"] == "s3://bkt/out/j1/tensorboard"
    assert r["HyperParameters"] == {"epochs": "3", "cos_lr": "true", "model": "yolo11s.yaml"}
    assert r["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bkt/data/train/"


def test_checkpoint_uri_gets_its_trailing_slash():
    r = sdk.plan_job(**BASE, checkpoint_s3_uri="s3://bkt/ckpt").request
    assert r["CheckpointConfig"]["S3Uri"] == "s3://bkt/ckpt/"


@pytest.mark.parametrize("value", [3, 0.01, True, False, "yolo11n.yaml", "true", "001", "1e-3", [640, 480],
                                   {"a": 1}, "a,b", "none", "", "[1, 2]", " spaced ", None])
def test_the_image_reads_back_what_the_sdk_validated(value):
    """For an untyped key and a string-typed key: the image's parse of the sent strings is the SDK's parse.
    None given means "the image's default" and is not sent; "none" typed is sent, and read back as None."""
    schema = Schema.from_dict({"image": "t", "hyperparameters": {"x": {}, "s": {"type": "str", "optional": True}}})
    for key in ("x", "s"):
        try:
            wanted = schema.parse({key: value})
        except UserError:  # a list is no string: refused on both sides
            continue
        encoded = _request.encode_hyperparameters(schema, {key: value})
        assert all(isinstance(v, str) for v in encoded.values())
        assert schema.parse(encoded) == (wanted if value is not None else {})


def test_typed_values_are_coerced_then_encoded():
    encoded = _request.encode_hyperparameters(Schema.load("yolo"), {"epochs": "5", "lr0": 1, "amp": "false"})
    assert encoded == {"epochs": "5", "lr0": "1", "amp": "false"}  # ultralytics takes an int for a float key
    assert Schema.load("yolo").parse(encoded) == {"epochs": 5, "lr0": 1.0, "amp": False}


@pytest.mark.parametrize("hps, message", [
    ({"epoch": 3}, "did you mean 'epochs'"),
    ({"epochs": "many"}, "'epochs' must be an integer"),
    ({"project": "x"}, "set by the image"),
    ({"names": "x" * 3000}, "at most 2500"),
])
def test_bad_hyperparameters_are_refused_before_anything(hps, message):
    with pytest.raises(sdk.ConfigurationError, match=message):
        sdk.plan_job(**BASE, hyperparameters=hps)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": {"trian": "s3://bkt/x/"}}, "did you mean 'train'"),
    ({"train": None, "channels": {"val": "s3://bkt/x/"}}, "needs the channel"),
    ({"input_modes": {"train": "Pipe"}}, "File or FastFile mode, not Pipe"),
    ({"input_modes": {"train": "Fast"}}, "use one of"),
    ({"job_name": "my_job"}, "not valid"),
    ({"role": "SageMakerRole"}, "not an IAM role ARN"),
    ({"spot": True, "max_run": 3600, "max_wait": 60}, "must be at least max_run"),
    ({"max_wait": 60}, "only applies to spot"),
    ({"output_path": "bkt/out"}, "not an S3 URI"),
    ({"environment": {"BAD-NAME": "1"}}, "Environment key 'BAD-NAME': 'BAD-NAME' does not match the API's pattern"),
    ({"image": "yolo"}, "runs only in local mode"),
    ({"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/detector:1"}, "pass kind="),
    ({"train": "/no/such/folder"}, "does not exist"),
])
def test_bad_arguments_name_the_cause(kwargs, message):
    with pytest.raises(sdk.ConfigurationError, match=message):
        sdk.plan_job(**{**BASE, **kwargs})


def test_unique_job_names_are_valid():
    for base in ("yolo", "my_team/experiment.v2", "x" * 80, "---"):
        name = _request.unique_job_name(base)
        assert _request.JOB_NAME_RE.match(name), name
    assert _request.unique_job_name("yolo") != _request.unique_job_name("yolo")


def test_image_from_build_and_push_file(tmp_path, monkeypatch):
    (tmp_path / "ecr_image_fullname.txt").write_text(IMAGE + "\n")
    monkeypatch.chdir(tmp_path)
    assert sdk.plan_job(**{**BASE, "image": None}).request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert _request.resolve_image(tmp_path / "ecr_image_fullname.txt").uri == IMAGE


def test_local_folders_are_planned_under_a_content_prefix(shapes):
    first = sdk.plan_job(**{**BASE, "train": shapes}).uploads["train"]
    again = sdk.plan_job(**{**BASE, "train": shapes}).uploads["train"]
    assert first.uri == again.uri and first.uri.startswith("s3://bkt/out/datasets/shapes")
    assert len(first.files) == sum(1 for p in shapes.rglob("*") if p.is_file())


def _client_error(code, message="m", op="CreateTrainingJob"):
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize("err, cls", [
    (NoCredentialsError(), sdk.CredentialsError),
    (_client_error("AccessDeniedException"), sdk.AccessDeniedError),
    (_client_error("NoSuchBucket"), sdk.NotFoundError),
    (_client_error("ResourceLimitExceeded", "account-level service limit 'ml.p3.2xlarge for training'"),
     sdk.QuotaError),
    (_client_error("ValidationException", "Could not find training job"), sdk.NotFoundError),
    (_client_error("ValidationException", "bad value"), sdk.ConfigurationError),
    (_client_error("InternalFailure"), sdk.AWSError),
])
def test_botocore_errors_are_translated(err, cls):
    with pytest.raises(cls) as info, _errors.aws_errors("creating training job j1"):
        raise err
    assert "creating training job j1" in str(info.value)
    assert isinstance(info.value, sdk.SDKError) and info.value.__cause__ is err


def test_cli_dry_run_prints_the_request(capsys):
    code = cli(["launch", "--image", IMAGE, "--train", "s3://bkt/data/", "--hp", "epochs=3", "--role", ROLE,
                "--output-path", "s3://bkt/out", "--job-name", "j1", "--dry-run"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["CreateTrainingJob"]["TrainingJobName"] == "j1"
    assert printed["CreateTrainingJob"]["HyperParameters"] == {"epochs": "3"}


def test_cli_bad_input_exits_2_with_the_cause(capsys):
    assert cli(["launch", "--image", IMAGE, "--train", "s3://bkt/d/", "--hp", "epoch=3", "--role", ROLE,
                "--output-path", "s3://bkt/out", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown hyperparameter 'epoch'; did you mean 'epochs'?")
    assert "Traceback" not in err


# -- a conversion's inputs on several Processing machines (sdk/data/convert_inputs.py) --------------------------
class _Pages:
    """A stand-in for boto3's S3 client: list_objects_v2 pages as given, puts recorded."""

    def __init__(self, pages: list[list[tuple[str, int]]]) -> None:
        self.pages, self.put = pages, {}

    def get_paginator(self, name: str):
        assert name == "list_objects_v2"
        pages = self.pages

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str):
                assert (Bucket, Prefix) == ("bkt", "raw/")
                return [{"Contents": [{"Key": k, "Size": n} for k, n in page]} for page in pages]

        return Paginator()

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.put[f"s3://{Bucket}/{Key}"] = json.loads(Body)


def test_listing_splits_images_from_the_rest_and_stages_sagemaker_manifests(monkeypatch, capsys, tmp_path):
    from container.processing import manifest_keys
    from sdk.data import convert_inputs as ci

    client = _Pages([[("raw/", 0), ("raw/a/1.JPG", 100), ("raw/a/1.xml", 7)],
                     [("raw/b/2.png", 50), ("raw/coco.json", 9), ("raw/notes/", 0)],
                     [("raw/c/3.webp", 10)]])
    monkeypatch.setattr(ci, "PROGRESS_EVERY", 3)
    listing = ci.list_source(client, "s3://bkt/raw")  # a folder, with or without its slash
    assert (listing.folder, listing.images, listing.others) == (
        "s3://bkt/raw/", ["a/1.JPG", "b/2.png", "c/3.webp"], ["a/1.xml", "coco.json"])
    assert (listing.image_bytes, listing.other_bytes) == (160, 16)
    assert "listing s3://bkt/raw/: 6 keys" in capsys.readouterr().err  # no terminal: a line per 3 keys
    staged = ci.stage(client, listing, staging=ci.staging_uri("s3://bkt/records", "job-1"))
    assert staged.images == "s3://bkt/sm-detectors/convert/job-1/image-list/images.manifest"
    assert client.put[staged.images] == [{"prefix": "s3://bkt/raw/"}, "a/1.JPG", "b/2.png", "c/3.webp"]
    assert client.put[staged.annotations] == [{"prefix": "s3://bkt/raw/"}, "a/1.xml", "coco.json"]
    (tmp_path / "m").write_text(json.dumps(client.put[staged.images]))
    assert manifest_keys(tmp_path / "m") == listing.images  # what the SDK writes, the entry reads
    assert "3 images (160 B) sharded over 2 machines (about 1 each); 2 other files (16 B)" in ci.describe(
        listing, instance_count=2, annotations_only=False)
    with pytest.raises(_errors.ConfigurationError, match="would hold the job's manifest files"):
        ci.staging_uri("s3://bkt/sm-detectors/", "job-1")
    with pytest.raises(_errors.ConfigurationError, match="holds no images"):
        ci.check_listing(ci.Listing("s3://bkt/raw/", others=["a.json"]), instance_count=2, annotations_only=False)
    with pytest.raises(_errors.ConfigurationError, match="holds no annotation files"):
        ci.check_listing(ci.Listing("s3://bkt/raw/", images=["a.jpg"]), instance_count=1, annotations_only=False)


def test_the_entry_refuses_an_image_key_that_leaves_its_folder(tmp_path):
    from container.processing import link_tree

    (tmp_path / "ann").mkdir()
    for key in ("a/../../etc/x.jpg", "../x.jpg", "a/.."):
        with pytest.raises(UserError, match="leaves the dataset folder"):
            link_tree(tmp_path / "ann", tmp_path / "images", [key], tmp_path / "tree")
    (tmp_path / "ann" / "a.json").write_text("{}")
    (tmp_path / "images" / "c").mkdir(parents=True)
    (tmp_path / "images" / "c" / "here.jpg").write_bytes(b"jpeg")
    for tree, hard in ((tmp_path / "t2", True), (tmp_path / "t3", False)):
        assert link_tree(tmp_path / "ann", tmp_path / "images", ["./a//b.jpg", "c/here.jpg"], tree,
                         hard_links=hard) == 1
        assert (tree / "c" / "here.jpg").read_bytes() == b"jpeg" and (tree / "a.json").read_text() == "{}"
        assert (tree / "a.json").is_symlink() is not hard
        assert (tree / ".images-elsewhere").read_text() == "a/b.jpg\n"  # listed, not here


def test_multirecord_packs_lines_as_sagemaker_does():
    """BatchStrategy=MultiRecord (the local transform and the hosting double): as many lines as fit in the payload
    per request, a line longer than the payload alone."""
    from sdk.serving.hosting import pack_records

    records = [b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 40, b"e" * 5]
    assert pack_records(records, 22) == [b"a" * 10 + b"\n" + b"b" * 10 + b"\n", b"c" * 10 + b"\n",
                                         b"d" * 40 + b"\n", b"e" * 5 + b"\n"]
    assert pack_records(records, 1000) == [b"\n".join(records) + b"\n"]
    assert pack_records([], 10) == []
