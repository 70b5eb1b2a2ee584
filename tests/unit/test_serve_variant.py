"""The YOLO image's serving variant (Dockerfile.yolo --target serve, container/serving/variant.py): what it
installs, how it is named, what it serves and what it refuses. The built image is tried in
tests/images/test_serve_image.py."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from container.failure import UserError
from container.serving import variant
from container.yolo import serve as yolo_serve
from tests.conftest import ROOT


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_lock_is_the_full_images_versions_without_torch():
    serve, full = _pins(ROOT / "requirements/yolo-serve.lock"), _pins(ROOT / "requirements/yolo.lock")
    assert {name: full.get(name) for name in serve} == serve  # the same answers as the full image
    assert not {n for n in serve if re.match(r"torch|nvidia-|ultralytics|triton|mlflow", n)}
    assert {"onnxruntime", "opencv-python-headless", "numpy", "gunicorn", "pillow", "pyyaml"} <= set(serve)


def test_dockerfile_has_the_serve_target_first_and_full_last():
    stages = re.findall(r"(?m)^FROM \S+ AS (\w+)", (ROOT / "Dockerfile.yolo").read_text())
    assert stages == ["serve", "full"]  # a plain build (no --target) is the full image
    text = (ROOT / "Dockerfile.yolo").read_text()
    assert f"{variant.VARIANT_ENV}={variant.SERVE_ONLY}" in text and "yolo-serve.lock" in text


def test_build_and_push_knows_the_variant_and_its_tag_suffix():
    script = (ROOT / "build-and-push.sh").read_text()
    assert "yolo-serve" in script and f'suffix="{variant.TAG_SUFFIX}"' in script


@pytest.mark.parametrize(("image", "expected"), [
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo:git-abc", "123.dkr.ecr.eu-west-1.amazonaws.com/yolo:git-abc-serve"),
    ("localhost:5000/team/yolo:v1", "localhost:5000/team/yolo:v1-serve"),
    ("localhost:5000/team/yolo", None),  # no tag: nothing to derive from (":5000/team/yolo" is no tag)
    ("yolo", None),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo@sha256:" + "a" * 64, None),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo:v1-serve", None),  # already the variant
])
def test_serving_tag(image, expected):
    assert variant.serving_tag(image) == expected


@pytest.fixture
def model(tmp_path):
    (tmp_path / "exports").mkdir()
    for name in ("best.pt", "exports/best.onnx", "exports/best.torchscript", "data.yaml"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_variant_serves_onnx_by_default_and_refuses_torch_weights(model, monkeypatch):
    monkeypatch.delenv(yolo_serve.WEIGHTS_ENV, raising=False)
    assert yolo_serve.weights_path(model) == model / "best.pt"  # the full image
    monkeypatch.setenv(variant.VARIANT_ENV, variant.SERVE_ONLY)
    assert yolo_serve.weights_path(model) == model / "exports" / "best.onnx"
    for choice in ("best.pt", "torchscript"):
        with pytest.raises(UserError, match="needs torch.*full YOLO image"):
            yolo_serve.weights_path(model, choice)
    (model / "exports" / "best.onnx").unlink()
    with pytest.raises(UserError, match=r"no \*\.onnx.*export=onnx.*full YOLO image"):
        yolo_serve.weights_path(model)


def test_variant_refuses_training_and_conversion(tmp_path):
    """`IMAGE train` and `IMAGE convert` in the variant: exit 2, the failure file names the full image."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    env = {"PYTHONPATH": str(ROOT), variant.VARIANT_ENV: variant.SERVE_ONLY, "SAGEMAKER_BASE_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    for command in ("train", "convert"):
        done = subprocess.run([sys.executable, "-m", "container", command], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "needs torch" in done.stderr and "full YOLO image" in done.stderr
    assert "full YOLO image" in (tmp_path / "output" / "failure").read_text()
    described = subprocess.run([sys.executable, "-m", "container", "describe"], env=env, capture_output=True,
                               text=True, timeout=120)
    assert described.returncode == 0 and described.stdout.startswith("SERVING VARIANT")
