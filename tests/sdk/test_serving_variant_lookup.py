"""``serving_variant`` (deploy(weights="onnx") looking for IMAGE:TAG-serve) with image URIs of every shape and ECR
failures: it answers an image that can exist and never raises, whatever ECR says (issue 26 item 4's review)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from container.serving.variant import serves_onnx
from sdk.serving import serving_variant
from tests.sdk.conftest import IMAGE

MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                       "digest": "sha256:" + "0" * 64}, "layers": []}


def _push(session, repo, tag, region="us-east-1"):
    ecr = session.client("ecr", region_name=region)
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repo)
    ecr.put_image(repositoryName=repo, imageManifest=json.dumps(MANIFEST), imageTag=tag)


@pytest.mark.parametrize("image", [
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo@sha256:" + "a" * 64,  # by digest
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo",  # no tag
    "localhost:5000/sm-yolo:1.0",  # not ECR: nothing to ask
    "localhost:5000/sm-yolo",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:1.0-serve",  # already the variant
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:" + "t" * 123,  # TAG-serve would pass 128 characters
])
def test_images_without_a_possible_variant_are_served_as_given(aws, image, capsys):
    assert serving_variant(image, aws) == image
    assert "build-and-push.sh" not in capsys.readouterr().err  # no command that could not push a variant


def test_a_128_character_tag_never_suggests_a_tag_build_and_push_refuses(aws, capsys):
    """TAG-serve of a 123..128-character tag is not a tag; the line said to run build-and-push.sh with it, which
    refuses it ("longer than an image tag may be")."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:" + "t" * 128
    assert serving_variant(image, aws) == image
    assert "build-and-push.sh" not in capsys.readouterr().err


def test_china_regions_are_asked_in_their_region(aws, capsys):
    image = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/sm-yolo:1.0"
    assert serving_variant(image, aws) == image  # not pushed yet
    _push(aws, "sm-yolo", "1.0-serve", region="cn-north-1")
    assert serving_variant(image, aws) == image + "-serve"


def test_the_largest_tag_with_a_variant_finds_it(aws):
    image = IMAGE.rsplit(":", 1)[0] + ":" + "t" * 122
    _push(aws, "sm-yolo", "t" * 122 + "-serve")
    assert serving_variant(image, aws) == image + "-serve"


def test_no_credentials_falls_back_to_the_training_image(aws, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert serving_variant(IMAGE, boto3.Session(region_name="us-east-1")) == IMAGE
    assert "NoCredentialsError" in capsys.readouterr().err


class _Denied(BaseHTTPRequestHandler):
    """ECR answering every call as an identity without ecr:DescribeImages does."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"__type": "AccessDeniedException", "message": "not authorized to perform: "
                           "ecr:DescribeImages"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_access_denied_falls_back_to_the_training_image(aws, monkeypatch, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Denied)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert serving_variant(IMAGE, boto3.Session(region_name="us-east-1")) == IMAGE
    finally:
        server.shutdown()
    assert "AccessDeniedException" in capsys.readouterr().err


@pytest.mark.parametrize(("weights", "onnx"), [("onnx", True), ("ONNX", True), (" onnx ", True),
                                               ("exports/best.onnx", True), ("best.pt", False), (None, False),
                                               ("torchscript", False)])
def test_every_spelling_the_image_serves_as_onnx_looks_for_the_variant(weights, onnx):
    """The image takes SERVING_WEIGHTS=ONNX or a path to the .onnx file; deploy looked for the variant on "onnx"
    only."""
    assert serves_onnx(weights) is onnx
