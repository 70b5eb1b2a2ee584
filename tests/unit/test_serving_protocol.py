"""The serving contract without a model: parsing, thresholds, limits, worker plans, the TF adapter's box
arithmetic, the SDK's request encoding. (A trained model over HTTP: tests/integration/test_serving.py.)"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from container.failure import UserError
from container.serving import resources
from container.serving.protocol import (
    Limits,
    ServingError,
    Thresholds,
    decode_image,
    parse_custom_attributes,
    parse_request,
    render,
)
from container.serving.server import detect_image, resolve
from container.tfod import serve as tfod_serve

LIMITS = Limits(max_body_bytes=1024 * 1024, max_images=4)
DEFAULTS = Thresholds(conf=0.3, iou=0.6, max_det=100)


def png(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_custom_attributes_over_defaults():
    assert parse_custom_attributes(None, DEFAULTS) == DEFAULTS
    assert parse_custom_attributes("conf=0.5, iou=0.4;max_det=7", DEFAULTS) == Thresholds(0.5, 0.4, 7)
    assert parse_custom_attributes("confidence=0.1,max_detections=3", DEFAULTS) == Thresholds(0.1, 0.6, 3)
    for header, says in [("conf=1.5", "between 0 and 1"), ("max_det=0", "1..10000"), ("nms=0.5", "unknown key"),
                         ("conf", "not key=value"), ("iou=high", "must be a number")]:
        with pytest.raises(ServingError, match=says) as err:
            parse_custom_attributes(header, DEFAULTS)
        assert err.value.status == 400


def test_request_shapes():
    one = parse_request(png(), "image/png", DEFAULTS, LIMITS)
    assert (one.shape, len(one.images)) == ("one", 1)
    encoded = base64.b64encode(png()).decode()
    listed = parse_request(json.dumps([encoded, encoded]).encode(), "application/json; charset=utf-8", DEFAULTS, LIMITS)
    assert (listed.shape, len(listed.images)) == ("list", 2)
    keyed = parse_request(json.dumps({"images": [encoded], "conf": 0.9}).encode(), "application/json", DEFAULTS, LIMITS)
    assert (keyed.shape, keyed.thresholds.conf) == ("list", 0.9)
    lines = parse_request(f'"{encoded}"\n\n{{"image": "{encoded}"}}\n'.encode(), "application/jsonlines", DEFAULTS,
                          LIMITS)
    assert (lines.shape, lines.counts) == ("lines", [1, 1])
    with pytest.raises(ServingError, match="at most 4") as err:
        parse_request(json.dumps([encoded] * 5).encode(), "application/json", DEFAULTS, LIMITS)
    assert err.value.status == 413
    with pytest.raises(ServingError) as err:
        parse_request(b"a,b", "text/csv", DEFAULTS, LIMITS)
    assert err.value.status == 415


def test_render_jsonlines_one_line_per_record():
    request = parse_request(b'"eA=="\n{"images": ["eA==", "eA=="]}\n', "application/jsonlines", DEFAULTS, LIMITS)
    body, content_type = render(request, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert content_type == "application/jsonlines"
    assert [json.loads(line) for line in body.decode().splitlines()] == [{"n": 1}, [{"n": 2}, {"n": 3}]]


def test_decode_image():
    assert decode_image(png(8, 6)).shape == (6, 8, 3)
    gray = io.BytesIO()
    Image.new("L", (5, 4)).save(gray, "JPEG")
    assert decode_image(gray.getvalue()).shape == (4, 5, 3), "any mode becomes RGB"
    with pytest.raises(ServingError, match="not an image"):
        decode_image(b"\x89PNG but not really")


def test_worker_plans():
    gib = 2**30
    plan = resources.plan_workers(cpus=8, memory=32 * gib, weights_bytes=6_000_000, environ={})
    assert (plan.workers, plan.threads) == (8, 1)
    small = resources.plan_workers(cpus=8, memory=2 * gib, weights_bytes=100_000_000, environ={})
    assert small.workers == 2 and small.threads == 4, "memory bounds the copies of the model"
    assert resources.plan_workers(cpus=8, memory=64 * gib, weights_bytes=1, gpus=1, environ={}).workers == 1
    forced = resources.plan_workers(cpus=8, memory=gib, weights_bytes=1,
                                    environ={"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    assert (forced.workers, forced.threads) == (3, 2)
    with pytest.raises(ValueError, match="at least 1"):
        resources.plan_workers(cpus=2, memory=gib, weights_bytes=1, environ={"SERVING_WORKERS": "0"})


def test_tf_outputs_to_detections():
    """SavedModel outputs are [ymin, xmin, ymax, xmax] in pixels of the S x S input, classes from 1."""
    boxes = np.array([[10, 20, 50, 140], [12, 22, 50, 100], [0, 0, 64, 64], [5, 5, 6, 6]], np.float32)
    scores = np.array([0.9, 0.8, 0.5, 0.1])
    classes = np.array([1, 1, 2, 1], np.float32)
    found = tfod_serve.to_detections(boxes, scores, classes, 4, input_size=(128, 128), shape=(256, 64),
                                     thresholds=Thresholds(conf=0.2, iou=0.5, max_det=10))
    assert [(d.class_id, d.score) for d in found] == [(0, 0.9), (1, 0.5)], "overlapping box suppressed, 0.1 dropped"
    assert found[0].box == pytest.approx((20 * 0.5, 10 * 2.0, 64.0, 50 * 2.0)), "scaled to 64 x 256, x2 clipped"
    loose = tfod_serve.to_detections(boxes, scores, classes, 3, input_size=(128, 128), shape=(128, 128),
                                     thresholds=Thresholds(conf=0.0, iou=0.95, max_det=2))
    assert len(loose) == 2, "count and max_det both cut"


def test_tf_input_size():
    """Model Garden's image_tensor signature leaves H and W open: training's image_size says what they are."""
    assert tfod_serve.input_size((1, 320, 320, 3), {}) == (320, 320)
    assert tfod_serve.input_size((1, None, None, 3), {"hyperparameters": {"image_size": 128}}) == (128, 128)
    with pytest.raises(UserError, match="image_size"):
        tfod_serve.input_size((1, None, None, 3), {})


def test_model_folders(tmp_path):
    (tmp_path / "label_map.csv").write_text("1,cat\n2,dog\n")
    assert tfod_serve.class_names(tmp_path) == ["cat", "dog"]
    assert detect_image(tmp_path) == "tfod"
    with pytest.raises(UserError, match="no SavedModel"):
        resolve(tmp_path, None)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "saved_model.pb").write_bytes(b"")
    assert resolve(tmp_path, None)[1] == tmp_path / "12", "the highest version, by number"
    with pytest.raises(UserError, match="does not exist"):
        resolve(tmp_path / "missing", None)


def test_sdk_encodes_what_the_server_parses(tmp_path):
    from sdk._hosting import custom_attributes, encode_inputs

    path = tmp_path / "a.png"
    path.write_bytes(png())
    body, content_type, batch = encode_inputs(path)
    assert parse_request(body, content_type, DEFAULTS, LIMITS).shape == "one" and not batch
    array = np.zeros((4, 4, 3), np.uint8)
    body, content_type, batch = encode_inputs([path, png(), array, Image.new("RGB", (3, 3))])
    parsed = parse_request(body, content_type, DEFAULTS, LIMITS)
    assert batch and [decode_image(b).shape[:2] for b in parsed.images] == [(6, 8), (6, 8), (4, 4), (3, 3)]
    assert encode_inputs(tmp_path)[2], "a folder is a batch of its images"
    header = custom_attributes(0.4, None, 10)
    assert parse_custom_attributes(header, DEFAULTS) == Thresholds(0.4, 0.6, 10)


def test_ultralytics_is_not_imported_by_the_contract():
    import subprocess
    import sys

    code = "import sys, container.serving.app, container.serving.server, container.yolo.serve, container.tfod.serve; " \
           "print(sorted(m for m in ('torch', 'ultralytics', 'tensorflow', 'gunicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
