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


def test_one_worker_per_gpu_each_on_its_own_device():
    gib = 2**30
    four = resources.plan_workers(cpus=48, memory=192 * gib, weights_bytes=1, gpus=4, environ={})
    assert (four.workers, four.threads, four.gpus) == (4, 12, 4)
    forced = resources.plan_workers(cpus=8, memory=gib, weights_bytes=1, gpus=2, environ={"SERVING_WORKERS": "3"})
    assert (forced.workers, forced.gpus) == (3, 2) and "spread over 2 GPU(s)" in forced.why
    # the arbiter's choice: the least-held GPU, so that a restarted worker takes the dead one's place
    assert [resources.gpu_for([], 4), resources.gpu_for([0], 4), resources.gpu_for([0, 1, 3], 4)] == [0, 1, 2]
    assert resources.gpu_for([0, 1, 0, 1], 2) == 0 and resources.gpu_for([0, 1, 0], 2) == 1
    # CUDA_VISIBLE_DEVICES given to the container: it narrows what nvidia-smi lists, and maps a worker's index
    assert resources.usable_gpus(4, {}) == 4
    assert resources.usable_gpus(4, {"CUDA_VISIBLE_DEVICES": "2,3"}) == 2
    assert resources.usable_gpus(4, {"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert resources.usable_gpus(4, {"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert resources.visible_device(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    assert resources.visible_device(1, {}) == "1"


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
    from sdk.serving.hosting import custom_attributes, encode_inputs

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


# -- hostile and careless input (issue 22) ---------------------------------------------------------------------
def test_thresholds_are_refused_not_coerced():
    """max_det=1.9 was truncated to 1 and conf=true taken as 1.0: a value that is not what it names is a 400."""
    encoded = base64.b64encode(png()).decode()
    for extra, says in [({"max_det": 1.9}, "max_det must be a whole number, got 1.9"),
                        ({"conf": True}, "conf must be a number, got True"),
                        ({"iou": None}, "iou must be a number"), ({"max_det": "7.5"}, "max_det must be a whole"),
                        ({"max_det": 10**400}, "max_det must be a whole"), ({"conf": "nan"}, "between 0 and 1"),
                        ({"conf": 1e308 * 10}, "between 0 and 1")]:
        body = json.dumps({"image": encoded, **extra}).encode()
        with pytest.raises(ServingError, match=says) as err:
            parse_request(body, "application/json", DEFAULTS, LIMITS)
        assert err.value.status == 400
    with pytest.raises(ServingError, match="max_det must be a whole number, got '1.9'"):
        parse_custom_attributes("max_det=1.9", DEFAULTS)
    assert parse_request(json.dumps({"image": encoded, "max_det": 5.0, "conf": 1}).encode(), "application/json",
                         DEFAULTS, LIMITS).thresholds == Thresholds(1.0, 0.6, 5), "whole and numeric values pass"


@pytest.mark.parametrize("body, content_type", [(json.dumps(["***"] * 100_000), "application/json"),
                                                (json.dumps([1.5] * 100_000), "application/json"),
                                                ('{"image": "eA==", "conf": 0.5}\n' * 3 + "\n" * 100_000,
                                                 "application/jsonlines"),
                                                (json.dumps({"images": ["***"] * 100_000}), "application/json"),
                                                ('"***"\n' * 100_000, "application/jsonlines")])
def test_a_batch_is_counted_before_it_is_decoded(body, content_type):
    """A 20 MB list of 100k items was base64-decoded item by item before the count was checked; now the
    separators are counted before the JSON is even parsed (20 MB of `[1.5,1.5,...` is ten times that parsed)."""
    with pytest.raises(ServingError, match="at most 4 (images in one request|records)") as err:
        parse_request(body.encode(), content_type, DEFAULTS, LIMITS)
    assert err.value.status == 413


def test_base64_wrapped_by_the_base64_tool_is_read():
    """`base64 photo.jpg` wraps at 76 characters: the line breaks are not part of the image."""
    encoded = base64.encodebytes(png(30, 20)).decode()  # what the command-line tool prints
    assert "\n" in encoded.strip()
    request = parse_request(json.dumps({"image": encoded}).encode(), "application/json", DEFAULTS, LIMITS)
    assert decode_image(request.images[0]).shape == (20, 30, 3)


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines"])
def test_deeply_nested_json_is_a_400(content_type):
    """100k '[' made json's decoder raise RecursionError: an HTTP 500 for a client's mistake. Brackets are now
    counted before parsing (a flat list of 100k empty lists is refused too: 100k Python lists); the decoder's
    RecursionError is still a 400 behind that."""
    for body in (b"[" * 100_000, b"[" + b"[]," * 100_000 + b"[]]"):
        with pytest.raises(ServingError, match="lists or objects, nested or not: not a request") as err:
            parse_request(body, content_type, DEFAULTS, LIMITS)
        assert err.value.status == 400
    from container.serving.protocol import _parse_json

    with pytest.raises(ServingError, match="nests lists or objects too deeply") as err:
        _parse_json(b"[" * 100_000, "JSON body")
    assert err.value.status == 400


@pytest.mark.parametrize("accept, ok", [
    (None, True), ("", True), ("*/*", True), ("application/json", True), ("application/*", True),
    ("application/jsonlines", True), ("text/html, application/json;q=0.5", True), ("text/csv", False),
    ("text/csv, */*;q=0", False), ("application/json;q=0", False), ("image/png", False),
])
def test_accept_header(accept, ok):
    from container.serving.protocol import check_accept

    if ok:
        check_accept(accept)
        return
    with pytest.raises(ServingError, match="allows no type this server answers with") as err:
        check_accept(accept)
    assert err.value.status == 406


@pytest.mark.parametrize("name, value", [("SERVING_MAX_BODY_MB", "-1"), ("SERVING_MAX_BODY_MB", "abc"),
                                         ("SERVING_MAX_BODY_MB", "inf"), ("SERVING_MAX_IMAGES", "0"),
                                         ("SERVING_MAX_IMAGES", "2.5"), ("SERVING_MAX_MEGAPIXELS", "nan"),
                                         ("SERVING_HEADER_TIMEOUT", "0"), ("SERVING_BODY_TIMEOUT", "-3"),
                                         ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "abc")])
def test_settings_name_a_bad_variable(name, value):
    from container.serving.server import settings

    with pytest.raises(UserError, match=f"{name}='{value}' is not usable"):
        settings({name: value})
    limits, timeout = settings({"SERVING_MAX_BODY_MB": "0.5", "SERVING_MAX_MEGAPIXELS": "2"})
    assert (limits.max_body_bytes, limits.max_pixels, timeout) == (512 * 1024, 2_000_000, 120)


def test_serve_refuses_a_bad_variable_before_gunicorn_starts(tmp_path):
    """SERVING_MAX_BODY_MB=abc killed gunicorn with exit 3 (a traceback per worker): now exit 2 naming it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    for name, value, says in [("SERVING_MAX_BODY_MB", "abc", "is not usable"),
                              ("SERVING_MAX_BODY_MB", "-1", "is not usable"),
                              ("SAGEMAKER_BIND_TO_PORT", "abc", "is not a port"),
                              ("SAGEMAKER_BIND_TO_PORT", "70000", "is not a port")]:
        result = subprocess.run([sys.executable, "-m", "container", "serve", "--model-dir", str(tmp_path)],
                                check=False, capture_output=True, text=True, timeout=60, cwd=root,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), name: value})
        assert result.returncode == 2, result.stderr
        assert f"{name}='{value}' {says}" in result.stderr and "Traceback" not in result.stderr


class _CountingPredictor:
    """A predictor that records, at each call, how many decoded images are still alive in the process."""

    name, names, defaults = "fake", ["a"], Thresholds()

    def __init__(self) -> None:
        self.alive: list = []  # weak references to every array decode_image returned
        self.calls: list[tuple[int, int]] = []  # (images in this call, decoded arrays alive)

    def predict(self, images, thresholds):
        import gc

        gc.collect()
        self.calls.append((len(images), sum(ref() is not None for ref in self.alive)))
        return [[] for _ in images]


def _invoke(app, body: bytes, content_type: str, **environ) -> tuple[int, dict]:
    out = {}

    def start_response(status, headers):
        out["status"] = int(status.split()[0])

    chunks = app({"PATH_INFO": "/invocations", "REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type,
                  "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), **environ}, start_response)
    return out["status"], json.loads(b"".join(chunks))


def test_pixel_budget_holds_for_the_whole_request(monkeypatch):
    """24 large images in one request were all decoded before prediction (4.6 GB in a worker). Now at most
    max_pixels are decoded at once: a group of images that fits is decoded, predicted, and let go."""
    import weakref

    from container.serving import app as app_module
    from container.serving.app import App

    predictor = _CountingPredictor()
    real_decode = app_module.decode_image

    def counted(*args, **kwargs):
        array = real_decode(*args, **kwargs)
        predictor.alive.append(weakref.ref(array))
        return array

    monkeypatch.setattr(app_module, "decode_image", counted)
    limits = Limits(max_body_bytes=1024 * 1024, max_images=64, max_pixels=3 * 40 * 30)
    app = App(lambda _: predictor, Path("."), limits=limits)
    app.load()
    encoded = base64.b64encode(png(40, 30)).decode()
    status, body = _invoke(app, json.dumps([encoded] * 10).encode(), "application/json")
    assert status == 200 and len(body) == 10 and all(r["width"] == 40 for r in body)
    assert predictor.calls == [(3, 3), (3, 3), (3, 3), (1, 1)], "3 images' pixels at a time, earlier ones freed"

    status, body = _invoke(app, json.dumps([encoded, base64.b64encode(png(200, 100)).decode()]).encode(),
                           "application/json")
    assert status == 413 and "image 1: image of 200x100 pixels is over the limit of 3600" in body["error"]
    assert "SERVING_MAX_MEGAPIXELS" in body["error"] and len(predictor.calls) == 4, "refused before any work"


def test_a_stalled_body_is_a_408_and_a_failed_load_a_500(tmp_path):
    from container.serving.app import App

    class Stalled(io.BytesIO):
        def read(self, size=-1):
            raise TimeoutError("timed out")

    app = App(lambda _: _CountingPredictor(), tmp_path, limits=Limits(1024, 4, body_timeout=7))
    app.load()
    status, body = _invoke(app, b"", "image/png", CONTENT_LENGTH="100", **{"wsgi.input": Stalled()})
    assert status == 408 and "within 7 s (SERVING_BODY_TIMEOUT" in body["error"]

    class BadChunk(io.BytesIO):
        def read(self, size=-1):
            raise type("InvalidChunkSize", (Exception,), {})("Invalid chunk size: b'zz'")

    status, body = _invoke(app, b"", "image/png", CONTENT_LENGTH="", **{"wsgi.input": BadChunk()})
    assert status == 400 and "InvalidChunkSize" in body["error"], "the body's framing is the client's (was 500)"

    def broken(model_dir):
        raise ValueError("invalid load key, 'n'")

    failed = App(broken, tmp_path)
    failed.load()
    status, body = _invoke(failed, png(), "image/png")
    assert status == 500 and "could not be loaded" in body["error"] and str(tmp_path) in body["error"]
    status, body = _invoke(app, png(), "image/png", HTTP_ACCEPT="text/csv")
    assert status == 406


def test_load_errors_name_the_file(tmp_path):
    """A SavedModel that cannot be loaded (here: TensorFlow absent, or junk bytes) is named in the error."""
    from container.serving.protocol import ModelLoadError

    (tmp_path / "label_map.csv").write_text("1,cat\n")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=str(tmp_path / "1")):
        tfod_serve.load(tmp_path)


def test_deadline_socket():
    import socket
    import time

    from container.serving.worker import DeadlineSocket

    left, right = socket.socketpair()
    with left, right:
        wrapped = DeadlineSocket(left)
        right.sendall(b"abc")
        wrapped.set_deadline(time.monotonic() + 50)
        assert wrapped.recv(10) == b"abc" and 0 < left.gettimeout() <= 50, "each read waits at most what is left"
        wrapped.set_deadline(time.monotonic() - 1)
        right.sendall(b"more")
        with pytest.raises(TimeoutError):
            wrapped.recv(10)  # the total has passed: even bytes that are there do not extend it
        wrapped.set_deadline(None)
        assert left.gettimeout() is None and wrapped.recv(10) == b"more"
