"""Dockerfile.yolo started as SageMaker hosting starts it: `IMAGE serve`, the model a training job wrote mounted
at /opt/ml/model, HTTP on the port SAGEMAKER_BIND_TO_PORT names (host network, a free port of 127.0.0.1).
Skipped only where no container engine answers (see engine.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid

import pytest
import requests

from sdk.serving.hosting import free_port
from tests.images.conftest import TF_TAG
from tests.images.engine import IMAGES, SERVE_VARIANT, built_engine
from tests.serving_models import image_bytes, yolo_model_dir

pytestmark = [pytest.mark.image, pytest.mark.slow]
TAG = IMAGES["Dockerfile.yolo"]  # the tags test_yolo_image.py and test_tfod_image.py build: one build serves both


@pytest.fixture(scope="module")
def engine():
    return built_engine("Dockerfile.yolo", TAG)


def _wait_ready(engine, name: str, url: str, timeout: float = 300) -> list[int]:
    codes: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            codes.append(requests.get(f"{url}/ping", timeout=5).status_code)
        if codes and codes[-1] == 200:
            return codes
        state = engine.run("inspect", "-f", "{{.State.Running}}", name, check=False, capture_output=True)
        assert state.stdout.strip() == "true", engine.run("logs", name, check=False, capture_output=True).stderr
        time.sleep(0.5)
    raise AssertionError(f"no 200 from /ping in {timeout}s: {codes[-5:]}\n"
                         + engine.run("logs", name, check=False, capture_output=True).stderr[-3000:])


def test_image_serves_the_model_training_wrote(engine, tmp_path_factory):
    model = yolo_model_dir(tmp_path_factory)
    port = free_port()
    name = f"sm-yolo-serve-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"
    started = engine.run("run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                         "-v", f"{model}:/opt/ml/model:ro", TAG, "serve", check=False, capture_output=True)
    assert started.returncode == 0, started.stderr
    try:
        _wait_ready(engine, name, url)
        answer = requests.post(f"{url}/invocations", data=image_bytes(100, 70), timeout=60,
                               headers={"Content-Type": "image/jpeg",
                                        "X-Amzn-SageMaker-Custom-Attributes": "conf=0.0001,max_det=3"})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["width"], result["height"], result["model"]) == (100, 70, "best.pt")
        assert len(result["detections"]) == 3
        assert {d["label"] for d in result["detections"]} <= {"rectangle", "ellipse"}
        garbage = requests.post(f"{url}/invocations", data=b"\x00garbage", headers={"Content-Type": "image/png"},
                                timeout=30)
        assert garbage.status_code == 400 and "not an image" in garbage.json()["error"]
        lines = requests.post(f"{url}/invocations", timeout=60, headers={"Content-Type": "application/jsonlines"},
                              data="\n".join(json.dumps({"image": base64.b64encode(
                                  image_bytes(40 + i, 30)).decode()}) for i in range(2)))
        assert [json.loads(line)["width"] for line in lines.text.splitlines()] == [40, 41]
        assert engine.run("kill", "--signal", "TERM", name, check=False, capture_output=True).returncode == 0
        sent = time.monotonic()
        code = int(engine.run("wait", name, capture_output=True, timeout=60).stdout.strip().splitlines()[-1])
        took = time.monotonic() - sent
        logs = engine.run("logs", name, check=False, capture_output=True)
        assert code == 0, logs.stdout[-2000:] + logs.stderr[-2000:]
        assert took < 30, f"SageMaker sends SIGKILL 30 s after SIGTERM; serve took {took:.0f}s"
        assert "worker(s)" in logs.stderr and "loaded from /opt/ml/model" in logs.stderr
    finally:
        engine.run("rm", "-f", name, check=False, capture_output=True)


def test_sdk_local_deploy_runs_the_image(engine, tmp_path_factory):
    """deploy(folder, instance_type="local", image=TAG): the container, the ONNX export, predictions."""
    from sdk.serving import deploy

    endpoint = deploy(yolo_model_dir(tmp_path_factory), instance_type="local", image=TAG, engine=engine.name,
                      weights="onnx")
    try:
        result = endpoint.predict([image_bytes(64, 48), image_bytes(32, 32, "PNG")], conf=0.0001, max_det=2)
        assert [(r["width"], r["height"], r["model"], len(r["detections"])) for r in result] == [
            (64, 48, "best.onnx", 2), (32, 32, "best.onnx", 2)]
    finally:
        endpoint.delete()
    assert endpoint.status == "OutOfService"


def test_serving_variant_serves_the_onnx_export_without_torch(tmp_path_factory, tmp_path):
    """Dockerfile.yolo --target serve: under 1.5 GB, no torch; it serves the training job's exports/best.onnx by
    default with the answers the ONNX path gives in process, and refuses training and best.pt naming the full image.
    How fast its workers start is measured in benchmarks/bench_serve.py, not here."""
    import io

    import numpy as np
    from PIL import Image

    from container.serving.protocol import Thresholds
    from container.yolo import serve as yolo_serve

    dockerfile, target, tag = SERVE_VARIANT
    found = built_engine(dockerfile, tag, target=target)
    size = int(found.run("image", "inspect", "-f", "{{.Size}}", tag, capture_output=True).stdout.strip())
    assert size < 1.5e9, f"the serving variant is {size / 1e9:.2f} GB"
    no_torch = found.run("run", "--rm", tag, "python", "-c", "import torch", check=False, capture_output=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    model = yolo_model_dir(tmp_path_factory)
    trained = found.run("run", "--rm", "-v", f"{tmp_path}:/opt/ml", tag, "train", check=False, capture_output=True)
    assert trained.returncode == 2, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert "full YOLO image" in (tmp_path / "output" / "failure").read_text()
    pt = found.run("run", "--rm", "-e", "SERVING_WEIGHTS=best.pt", "-v", f"{model}:/opt/ml/model:ro", tag, "serve",
                   check=False, capture_output=True)
    assert pt.returncode == 2 and "needs torch" in pt.stderr, pt.stderr[-2000:]

    port = free_port()
    name = f"sm-yolo-serve-variant-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"
    started = found.run("run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                        "-v", f"{model}:/opt/ml/model:ro", tag, check=False, capture_output=True)  # no command: serve
    assert started.returncode == 0, started.stderr
    try:
        _wait_ready(found, name, url)
        body = image_bytes(100, 70)
        answer = requests.post(f"{url}/invocations", data=body, timeout=60, headers={
            "Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "conf=0.0001,max_det=3"})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["width"], result["height"], result["model"]) == (100, 70, "best.onnx")
        local = yolo_serve.load_weights(model, model / "exports" / "best.onnx")
        image = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        expected = local.predict([image], Thresholds(conf=0.0001, iou=local.defaults.iou, max_det=3))[0]
        assert len(result["detections"]) == len(expected) == 3
        for got, want in zip(result["detections"], expected, strict=True):  # the same onnxruntime: the same numbers
            assert got["class_id"] == want.class_id and abs(got["score"] - want.score) < 1e-4
            np.testing.assert_allclose(got["box"], want.box, atol=0.05)
    finally:
        logs = found.run("logs", name, check=False, capture_output=True)
        found.run("rm", "-f", name, check=False, capture_output=True)
    assert "model best.onnx loaded from /opt/ml/model" in logs.stderr, logs.stderr[-2000:]


def test_tf_image_serves_its_saved_model(tfod_trained):
    """Dockerfile.tfod: `IMAGE serve` on the model folder a training job of the image wrote (the RetinaNet of 8
    steps at 128 px that test_tfod_image checks, shared: its exports take minutes)."""
    found, base = tfod_trained.engine, tfod_trained.base
    assert tfod_trained.returncode == 0, tfod_trained.log[-3000:]
    assert (base / "model" / "1" / "saved_model.pb").is_file()
    port = free_port()
    name = f"sm-tfod-serve-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"
    started = found.run("run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                        "-v", f"{base / 'model'}:/opt/ml/model:ro", TF_TAG, "serve", check=False, capture_output=True)
    assert started.returncode == 0, started.stderr
    try:
        _wait_ready(found, name, url, timeout=600)
        body = json.dumps({"images": [base64.b64encode(image_bytes(200, 100)).decode(),
                                      base64.b64encode(image_bytes(64, 64, "PNG")).decode()]})
        answer = requests.post(f"{url}/invocations", data=body, timeout=120, headers={
            "Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "conf=0,max_det=5"})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()
        assert (first["width"], first["height"], second["width"], second["height"]) == (200, 100, 64, 64)
        # 8 steps leave every score under Model Garden's own 0.05 cut-off, so there may be no detection at all
        assert first["model"] == "saved_model/1" and len(first["detections"]) <= 5
        for d in first["detections"]:
            assert d["label"] == ["rectangle", "ellipse"][d["class_id"]]
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 100
        bad = requests.post(f"{url}/invocations", data=b"nope", headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert bad.status_code == 400
    finally:
        found.run("rm", "-f", name, check=False, capture_output=True)
