"""Videos through ``POST /invocations``: ``video/mp4`` (and the other containers OpenCV reads) in, JSON lines out.

One line per frame, in order: ``{"frame", "time", "model", "width", "height", "detections"}``, each detection as
for an image; with ``track=true`` in the custom attributes each detection also has a ``track_id`` from
ultralytics' trackers (ByteTrack, or ``tracker=botsort``, or ``tracker=NAME`` for a ``NAME.yaml`` shipped in the
model folder), as ``python -m sdk predict --track`` does on a workstation.

Memory stays flat whatever the video's length: the body is streamed to a temporary file (never held in memory),
frames are decoded and predicted :data:`DEFAULT_BATCH` at a time, and the answer is spooled to another temporary
file that is streamed back. Meant for asynchronous endpoints and batch transform; a real-time invocation has
60 s, so a video whose frame count times the measured time of its first frame exceeds the invocation budget
(``SERVING_INVOCATION_SECONDS``, default 60; ``deploy(asynchronous=...)`` sets 3600) is refused with 413 after
that first frame, naming the fix, and a video that runs over the budget anyway is stopped there.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from container.serving import variant
from container.serving.protocol import (
    BODY_TIMEOUT_ENV,
    CUSTOM_ATTRIBUTES,
    JSONLINES,
    MAX_PIXELS,
    ServingError,
    Thresholds,
    image_result,
    media_type,
    parse_custom_attributes,
)

# media type -> suffix of the temporary file OpenCV (FFmpeg) opens; the first suffix of a type is its own
VIDEO_TYPES = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/x-msvideo": ".avi", "video/avi": ".avi",
               "video/x-matroska": ".mkv", "video/webm": ".webm", "video/x-m4v": ".m4v", "video/mpeg": ".mpg"}
INVOCATION_SECONDS_ENV = "SERVING_INVOCATION_SECONDS"
MAX_VIDEO_MB_ENV = "SERVING_MAX_VIDEO_MB"
BATCH_ENV = "SERVING_VIDEO_BATCH"
DEFAULT_INVOCATION_SECONDS = 60.0  # SageMaker's real-time limit
ASYNC_INVOCATION_SECONDS = 3600  # an asynchronous request's limit (and batch transform's longest)
ASYNC_BODY_SECONDS = 600  # SERVING_BODY_TIMEOUT there: 1 GB from SageMaker's own agent on the instance
DEFAULT_MAX_VIDEO_MB = 1024.0  # an asynchronous request is at most 1 GB
DEFAULT_BATCH = 8  # frames decoded and predicted at once
TRACKERS = {"bytetrack": "bytetrack.yaml", "botsort": "botsort.yaml"}
CHUNK = 1024 * 1024


def is_video(content_type: str | None) -> bool:
    return media_type(content_type) in VIDEO_TYPES


def _number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        raise ServingError(500, f"{name}={text!r} is not a number") from None
    if not value > 0:
        raise ServingError(500, f"{name} must be above 0, got {text!r}")
    return value


def spool_body(environ: dict[str, Any], suffix: str) -> Path:
    """The request body in a temporary file, read in 1 MB chunks; 413 past ``SERVING_MAX_VIDEO_MB``."""
    limit = int(_number(MAX_VIDEO_MB_ENV, DEFAULT_MAX_VIDEO_MB) * 1024 * 1024)
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    expected = None
    if length:
        try:
            expected = int(length)
        except ValueError:
            raise ServingError(400, f"bad Content-Length {length!r}") from None
        if expected > limit:
            raise ServingError(413, f"video of {expected} bytes is over the limit of {limit} bytes "
                               f"({MAX_VIDEO_MB_ENV}): split it")
    stream = environ["wsgi.input"]
    handle, name = tempfile.mkstemp(prefix="serve-video-", suffix=suffix)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            while expected is None or size < expected:
                try:
                    chunk = stream.read(CHUNK if expected is None else min(CHUNK, expected - size))
                except TimeoutError:  # the server's read deadline (SERVING_BODY_TIMEOUT)
                    raise ServingError(408, f"the video did not arrive within the server's time ({BODY_TIMEOUT_ENV}; "
                                       f"{size} bytes came): send it without pausing") from None
                except Exception as err:  # the HTTP parser on the body's framing (a bad chunk, a cut body)
                    raise ServingError(400, f"the video could not be read after {size} bytes "
                                       f"({type(err).__name__}: {err})") from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ServingError(413, f"video over the limit of {limit} bytes ({MAX_VIDEO_MB_ENV}): split it")
                out.write(chunk)
        if not size:
            raise ServingError(400, "the body is empty: send the bytes of the video")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def parse_attributes(header: str | None, defaults: Thresholds, model_dir: Path) -> tuple[Thresholds, str | None]:
    """Thresholds, and the tracker's YAML when ``track=true``; ``tracker=`` names it."""
    rest, track, tracker = [], False, "bytetrack"
    for pair in (header or "").replace(";", ",").split(","):
        key, _, value = pair.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "track":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ServingError(400, f"{CUSTOM_ATTRIBUTES}: track must be true or false, got {value!r}")
            track = value.lower() in ("true", "1")
        elif key == "tracker":
            tracker = value
        elif pair.strip():
            rest.append(pair)
    thresholds = parse_custom_attributes(",".join(rest), defaults)
    if not track:
        return thresholds, None
    if tracker in TRACKERS:
        return thresholds, TRACKERS[tracker]
    shipped = model_dir / f"{tracker}.yaml"
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tracker) and shipped.is_file():
        return thresholds, str(shipped)
    raise ServingError(400, f"{CUSTOM_ATTRIBUTES}: tracker {tracker!r} is neither {' nor '.join(TRACKERS)} nor a "
                       f"<name>.yaml in the model folder")


class Video:
    """An opened video: frame count, rate and size, and its frames as RGB arrays, a batch at a time."""

    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        import cv2

        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise ServingError(400, "the body is not a video OpenCV can read (mp4, mov, avi, mkv, webm): "
                               "check the file and its Content-Type")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0) or 25.0
        self.count = max(0, int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))  # 0: not known up front
        width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            self.close()
            raise ServingError(413, f"video frames of {width}x{height} pixels are over the limit of {max_pixels} "
                               "pixels (SERVING_MAX_MEGAPIXELS); resize the video first")
        # frames decoded at once: at most the batch, and at most the pixels a worker holds decoded at once
        self.per_batch = max(1, max_pixels // max(1, width * height))

    def batches(self, size: int, *, first: int | None = None) -> Iterator[list[Any]]:
        """Lists of up to ``size`` RGB frames (the first of ``first`` frames), read as they are needed."""
        import cv2

        batch: list[Any] = []
        want = first or size
        while True:
            ok, frame = self.capture.read()
            if not ok:
                break
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(batch) == want:
                yield batch
                batch, want = [], size
        if batch:
            yield batch

    def close(self) -> None:
        self.capture.release()


class SpooledBody:
    """A response body in a temporary file: ``len()`` for Content-Length, iterated in chunks, deleted on close
    (the WSGI server calls ``close``)."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="serve-answer-", suffix=".jsonl")
        self.path = Path(name)
        self.file = os.fdopen(handle, "w+b")

    def write_line(self, doc: dict[str, Any]) -> None:
        self.file.write(json.dumps(doc).encode() + b"\n")

    def __len__(self) -> int:
        return self.file.tell() if not self.file.closed else 0

    def __iter__(self) -> Iterator[bytes]:
        self.file.flush()
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


def _frame_line(predictor: Any, index: int, fps: float, image: Any, found: list[Any]) -> dict[str, Any]:
    """One frame's line; ``found`` holds Detections, or (Detection, track id) pairs when tracking."""
    tracked = bool(found) and isinstance(found[0], tuple)
    result = image_result(predictor, image, [d[0] for d in found] if tracked else found)
    if tracked:
        for detection, (_, track_id) in zip(result["detections"], found, strict=True):
            detection["track_id"] = track_id
    return {"frame": index, "time": round(index / fps, 3), **result}


def tracking_refused(served: str) -> ServingError:
    """track=true on a model ultralytics' trackers cannot follow (an ONNX export); in the serving variant, which has
    no ultralytics, the fix is the full image."""
    where = (f"serve best.pt with {variant.FULL_IMAGE}, which has ultralytics" if variant.serve_only()
             else "serve best.pt (SERVING_WEIGHTS unset)")
    return ServingError(400, f"track=true needs a model ultralytics' trackers can follow (YOLO best.pt); this "
                        f"endpoint serves {served}: send the video without track=true, or {where}")


def _too_long(frames: int, per_frame: float, budget: float) -> ServingError:
    return ServingError(413, f"a video of {frames} frames takes about {frames * per_frame:.0f} s here "
                        f"({per_frame:.3f} s a frame), over this endpoint's {budget:.0f} s per invocation "
                        f"({INVOCATION_SECONDS_ENV}; a real-time SageMaker call has 60 s): send it to an "
                        "asynchronous endpoint (Endpoint.predict_async, python -m sdk invoke --async) or a batch "
                        "transform, or cut it shorter")


def invoke(app: Any, environ: dict[str, Any]) -> tuple[int, Any, str]:
    """``App.invoke`` for a video body: (200, SpooledBody of JSON lines, jsonlines type)."""
    started = time.monotonic()
    budget = _number(INVOCATION_SECONDS_ENV, DEFAULT_INVOCATION_SECONDS)
    batch = int(_number(BATCH_ENV, DEFAULT_BATCH))
    path = spool_body(environ, VIDEO_TYPES[media_type(environ.get("CONTENT_TYPE"))])
    answer = SpooledBody()
    video = None
    try:
        if app.predictor is None:
            app.wait_loaded(timeout=50)
        predictor = app.predictor
        if predictor is None:
            raise ServingError(503, f"not ready: {app.load_error or 'the model is still loading'}")
        thresholds, tracker = parse_attributes(environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"),
                                               predictor.defaults, app.model_dir)
        session = None
        if tracker is not None:
            if not callable(getattr(predictor, "tracking", None)):
                raise tracking_refused(predictor.name)
            session = predictor.tracking(tracker)
        video = Video(path, app.limits.max_pixels)
        index = 0
        for frames in video.batches(min(batch, video.per_batch), first=1):  # the first frame alone: it times the rest
            tick = time.monotonic()
            with app._predict_lock:
                found = session.track(frames, thresholds) if session else predictor.predict(frames, thresholds)
            if index == 0 and video.count > 1:
                per_frame = time.monotonic() - tick
                if per_frame * (video.count - 1) > budget - (time.monotonic() - started):
                    raise _too_long(video.count, per_frame, budget)
            for image, detections in zip(frames, found, strict=True):
                answer.write_line(_frame_line(predictor, index, video.fps, image, detections))
                index += 1
            if time.monotonic() - started > budget:
                raise _too_long(max(video.count, index), (time.monotonic() - started) / index, budget)
        if not index:
            raise ServingError(400, "the video holds no frames OpenCV can decode")
        return 200, answer, JSONLINES[0]
    except BaseException:
        answer.close()
        raise
    finally:
        if video is not None:
            video.close()
        path.unlink(missing_ok=True)

