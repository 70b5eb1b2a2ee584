"""Videos through ``POST /invocations`` (container/serving/video.py) with the session's trained YOLO model, in
process behind a threaded WSGI server: JSON lines per frame, tracks, the real-time budget, bad videos."""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from container.serving.app import App
from container.serving.protocol import CUSTOM_ATTRIBUTES
from container.serving.video import DEFAULT_BATCH, INVOCATION_SECONDS_ENV, MAX_VIDEO_MB_ENV
from container.yolo import serve as yolo_serve
from tests.integration.test_serving import start
from tests.serving_models import video_bytes, yolo_model_dir

pytestmark = pytest.mark.slow
LOW = "conf=0.0001,max_det=3"  # a 1-epoch model scores low: let detections through
# ByteTrack with thresholds a 1-epoch model's scores pass, shipped in the model folder as serving reads it
LOW_TRACKER = """tracker_type: bytetrack
track_high_thresh: 0.0001
track_low_thresh: 0.00005
new_track_thresh: 0.0001
track_buffer: 30
match_thresh: 0.99
fuse_score: False
"""


class Counting:
    """The model's predictor, counting how many frames each call is given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.names, self.defaults = inner.name, inner.names, inner.defaults
        self.calls: list[int] = []
        self.tracking = inner.tracking

    def predict(self, images, thresholds):
        self.calls.append(len(images))
        return self.inner.predict(images, thresholds)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-model") / "model"
    shutil.copytree(yolo_model_dir(tmp_path_factory), folder)
    (folder / "lowtrack.yaml").write_text(LOW_TRACKER)
    return folder


@pytest.fixture(scope="module")
def served(model_dir):
    app = App(yolo_serve.load, model_dir)
    app.load()
    assert app.predictor is not None, app.load_error
    app.predictor = Counting(app.predictor)
    base, server = start(app)
    yield base, app
    server.shutdown()


def post(url: str, body: bytes, content_type: str = "video/mp4", attributes: str = LOW) -> requests.Response:
    return requests.post(f"{url}/invocations", data=body, timeout=120,
                         headers={"Content-Type": content_type, CUSTOM_ATTRIBUTES: attributes})


@pytest.mark.parametrize("suffix,content_type", [(".mp4", "video/mp4"), (".avi", "video/x-msvideo")])
def test_one_json_line_per_frame_a_bounded_batch_at_a_time(served, suffix, content_type):
    url, app = served
    app.predictor.calls.clear()
    answer = post(url, video_bytes(20, 96, 64, suffix), content_type)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/jsonlines"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["frame"] for line in lines] == list(range(20))
    assert lines[3]["time"] == 0.3  # 10 frames a second
    assert all((line["width"], line["height"]) == (96, 64) for line in lines)
    assert all(0 < len(line["detections"]) <= 3 for line in lines)
    assert all("track_id" not in d for line in lines for d in line["detections"])
    # the first frame alone (it times the rest), then at most DEFAULT_BATCH frames decoded and predicted at once
    assert app.predictor.calls == [1, DEFAULT_BATCH, DEFAULT_BATCH, 20 - 1 - 2 * DEFAULT_BATCH]


def test_frames_decoded_at_once_stay_within_the_worker_pixel_budget(served, monkeypatch):
    from dataclasses import replace

    url, app = served
    monkeypatch.setattr(app, "limits", replace(app.limits, max_pixels=96 * 64 * 3))  # three frames' worth
    app.predictor.calls.clear()
    answer = post(url, video_bytes(8, 96, 64))
    assert answer.status_code == 200 and len(answer.text.splitlines()) == 8
    assert app.predictor.calls == [1, 3, 3, 1]
    monkeypatch.setattr(app, "limits", replace(app.limits, max_pixels=96 * 64 - 1))
    refused = post(url, video_bytes(2, 96, 64))
    assert refused.status_code == 413 and "96x64" in refused.json()["error"]


def test_frames_match_the_same_images_sent_one_by_one(served):
    import cv2
    import numpy as np

    url, app = served
    body = video_bytes(3)
    lines = [json.loads(line) for line in post(url, body).text.splitlines()]
    path = app.model_dir.parent / "clip.mp4"
    path.write_bytes(body)
    capture = cv2.VideoCapture(str(path))
    for line in lines:
        ok, frame = capture.read()
        assert ok
        ok, png = cv2.imencode(".png", frame)  # lossless: the same pixels the server decoded
        single = requests.post(f"{url}/invocations", data=png.tobytes(), timeout=60,
                               headers={"Content-Type": "image/png", CUSTOM_ATTRIBUTES: LOW}).json()
        assert single["detections"] == line["detections"]
    capture.release()
    assert np.all(np.array([line["frame"] for line in lines]) == [0, 1, 2])


def test_track_true_gives_track_ids_that_persist(served):
    url, _ = served
    answer = post(url, video_bytes(12), attributes=f"{LOW},track=true,tracker=lowtrack")
    assert answer.status_code == 200, answer.text
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert len(lines) == 12
    ids = [d["track_id"] for line in lines for d in line["detections"]]
    assert ids and all(isinstance(i, int) for i in ids)
    assert max(ids.count(i) for i in set(ids)) > 1, "a track follows its object over several frames"
    # a second video starts its tracks afresh: the same ids again, not numbers carried over
    again = [json.loads(line) for line in post(url, video_bytes(12),
                                               attributes=f"{LOW},track=true,tracker=lowtrack").text.splitlines()]
    assert [[d["track_id"] for d in line["detections"]] for line in again] == \
        [[d["track_id"] for d in line["detections"]] for line in lines]


def test_a_video_over_the_real_time_budget_is_refused_naming_async(served, monkeypatch):
    url, _ = served
    monkeypatch.setenv(INVOCATION_SECONDS_ENV, "0.001")  # no video of several frames fits in a millisecond
    answer = post(url, video_bytes(10))
    assert answer.status_code == 413
    message = answer.json()["error"]
    assert "10 frames" in message and "asynchronous endpoint" in message and INVOCATION_SECONDS_ENV in message


@pytest.mark.parametrize("body,content_type,attributes,status,says", [
    (b"not a video at all", "video/mp4", LOW, 400, "not a video OpenCV can read"),
    (b"", "video/mp4", LOW, 400, "empty"),
    (None, "video/mp4", "track=maybe", 400, "track must be true or false"),
    (None, "video/mp4", "track=true,tracker=../../etc/passwd", 400, "tracker '../../etc/passwd'"),
    (None, "video/mp4", "conf=2", 400, "conf must be between 0 and 1"),
])
def test_bad_videos_are_4xx_naming_the_cause(served, body, content_type, attributes, status, says):
    url, _ = served
    answer = post(url, video_bytes(2) if body is None else body, content_type, attributes)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]


def test_a_video_over_the_size_limit_is_refused_before_it_is_read(served, monkeypatch):
    url, _ = served
    monkeypatch.setenv(MAX_VIDEO_MB_ENV, "0.001")
    answer = post(url, video_bytes(6))
    assert answer.status_code == 413 and MAX_VIDEO_MB_ENV in answer.json()["error"]


def test_tracking_needs_a_model_the_trackers_follow(model_dir, monkeypatch):
    monkeypatch.setenv("SERVING_WEIGHTS", "onnx")
    app = App(yolo_serve.load, model_dir)
    app.load()
    base, server = start(app)
    try:
        plain = post(base, video_bytes(3))
        assert plain.status_code == 200 and len(plain.text.splitlines()) == 3
        answer = post(base, video_bytes(3), attributes="track=true")
        assert answer.status_code == 400 and "track=true needs" in answer.json()["error"]
    finally:
        server.shutdown()


def test_temporary_files_are_gone_after_answers_and_refusals(served, monkeypatch, tmp_path):
    import tempfile

    url, _ = served
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the server spools body and answer
    assert post(url, video_bytes(4)).status_code == 200
    assert post(url, b"not a video", "video/mp4").status_code == 400
    monkeypatch.setenv(INVOCATION_SECONDS_ENV, "0.001")
    assert post(url, video_bytes(4)).status_code == 413
    assert list(tmp_path.iterdir()) == []


def test_the_sdk_sends_a_video_file_as_a_video(served, tmp_path):
    from sdk.serving.hosting import decode_answer, encode_inputs, http

    url, _ = served
    clip = tmp_path / "clip.avi"
    clip.write_bytes(video_bytes(3, suffix=".avi"))
    body, content_type, batch = encode_inputs(clip)
    assert (content_type, batch) == ("video/x-msvideo", False)
    frames = decode_answer(*http(f"{url}/invocations", body=body,
                                 headers={"Content-Type": content_type, CUSTOM_ATTRIBUTES: LOW}))
    assert [f["frame"] for f in frames] == [0, 1, 2]
