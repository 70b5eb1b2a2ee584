"""The request and response contract of ``POST /invocations``, the same for both images.

Requests (``Content-Type``):

* ``image/jpeg``, ``image/png``, ``application/x-image`` (any image Pillow reads): one image, the raw bytes;
* ``application/json``: ``"<base64>"``, ``{"image": "<base64>"}``, ``{"images": [...]}`` or ``[...]`` (a batch);
  base64 may carry a ``data:image/...;base64,`` prefix;
* ``application/jsonlines`` (batch transform with ``SplitType=Line``): one record a line, each a JSON record
  as above (one image); the response has one line per record, in order.

Thresholds: ``X-Amzn-SageMaker-Custom-Attributes: conf=0.4,iou=0.5,max_det=50`` (``;`` separates too);
unknown keys are an error rather than silently ignored (a typo would otherwise change nothing).
A JSON object body may carry the same keys. Defaults come from the model's training (``Predictor.defaults``).

Response, per image: ``{"model", "width", "height", "detections": [{"label", "class_id", "score",
"box": [x1, y1, x2, y2]}]}`` in pixels of the original image; a batch is a JSON list of these.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, Protocol

JSON = "application/json"
JSONLINES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")  # the documented ones; any image/* is read
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_BODY_MB_ENV = "SERVING_MAX_BODY_MB"
MAX_IMAGES_ENV = "SERVING_MAX_IMAGES"
# SageMaker caps a real-time request at 6 MB and a batch transform one at MaxPayloadInMB (<= 100); 20 MB leaves
# room for base64 batches without letting one request hold gigabytes in a worker.
DEFAULT_MAX_BODY_MB = 20.0
DEFAULT_MAX_IMAGES = 64
MAX_PIXELS = 50_000_000  # one image decoded: ~150 MB of RGB; larger is refused (decompression bombs)


class ServingError(Exception):
    """A request the server refuses: ``status`` (4xx) and a message naming the cause and the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Thresholds:
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image


class Predictor(Protocol):
    """What an image's adapter returns from ``load(model_dir)``; one per worker process."""

    name: str  # the model's name in responses (job name, else the weights file)
    names: list[str]  # class names by class id
    defaults: Thresholds  # from the model's training

    def predict(self, images: list[Any], thresholds: Thresholds) -> list[list[Detection]]:
        """Detections for each RGB uint8 array (H, W, 3), in order."""
        ...


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_images: int

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> Limits:
        try:
            mb = float(environ.get(MAX_BODY_MB_ENV) or DEFAULT_MAX_BODY_MB)
            images = int(environ.get(MAX_IMAGES_ENV) or DEFAULT_MAX_IMAGES)
        except ValueError as err:
            raise ValueError(f"{MAX_BODY_MB_ENV} must be a number of MB and {MAX_IMAGES_ENV} an integer: "
                             f"{err}") from err
        return cls(max_body_bytes=int(mb * 1024 * 1024), max_images=images)


# -- thresholds ------------------------------------------------------------------------------------------
_KEYS = {"conf": "conf", "confidence": "conf", "iou": "iou", "max_det": "max_det", "max_detections": "max_det"}


def _set(thresholds: Thresholds, key: str, value: Any, where: str) -> Thresholds:
    field = _KEYS.get(key.strip().lower())
    if field is None:
        raise ServingError(400, f"unknown key {key!r} in {where}; known: conf, iou, max_det")
    try:
        number = int(value) if field == "max_det" else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if field == "max_det" else "a number"
        raise ServingError(400, f"{where}: {field} must be {kind}, got {value!r}") from None
    if field == "max_det" and not 1 <= number <= 10_000:
        raise ServingError(400, f"{where}: max_det must be 1..10000, got {number}")
    if field != "max_det" and not 0.0 <= number <= 1.0:
        raise ServingError(400, f"{where}: {field} must be between 0 and 1, got {number}")
    return replace(thresholds, **{field: number})


def parse_custom_attributes(header: str | None, defaults: Thresholds) -> Thresholds:
    """``conf=0.4,iou=0.5,max_det=50`` (``,`` or ``;`` between pairs) over ``defaults``."""
    thresholds = defaults
    for pair in (header or "").replace(";", ",").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise ServingError(400, f"{CUSTOM_ATTRIBUTES}: {pair.strip()!r} is not key=value "
                               "(example: conf=0.4,iou=0.5,max_det=50)")
        thresholds = _set(thresholds, key, value.strip(), CUSTOM_ATTRIBUTES)
    return thresholds


# -- bodies ----------------------------------------------------------------------------------------------
def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _pil_open() -> Any:
    """Pillow's own ``Image.open``: ultralytics replaces it with one that, on bytes Pillow cannot identify,
    tries to pip-install a HEIF plugin; a garbage request must get a 400, not an install attempt."""
    from PIL import Image

    opener = Image.open
    if getattr(opener, "__module__", "") != "PIL.Image":
        opener = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", opener)
    return opener


def decode_image(data: bytes, where: str = "body") -> Any:
    """RGB uint8 array (H, W, 3) from encoded image bytes; 400 naming the cause otherwise."""
    import numpy as np
    from PIL import Image

    if not data:
        raise ServingError(400, f"{where} is empty: send the bytes of a JPEG or PNG image")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with _pil_open()(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ServingError(413, f"{where}: image of {image.width}x{image.height} pixels is over the limit "
                                   f"of {MAX_PIXELS} pixels; resize it first")
            return np.asarray(image.convert("RGB"))
    except ServingError:
        raise
    except Image.DecompressionBombError as err:
        raise ServingError(413, f"{where}: {err}") from None
    except Exception as err:
        raise ServingError(400, f"{where} is not an image Pillow can read ({type(err).__name__}: {err}); "
                           "send JPEG or PNG bytes") from None


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ServingError(400, f"{where} must be a base64 string of image bytes, got {type(value).__name__}")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ServingError(400, f"{where} is not valid base64 ({err})") from None


def _json_images(doc: Any, where: str, thresholds: Thresholds) -> tuple[list[bytes], bool, Thresholds]:
    """(encoded images, is_batch, thresholds) from a JSON document."""
    if isinstance(doc, str):
        return [_b64(doc, where)], False, thresholds
    if isinstance(doc, list):
        if not doc:
            raise ServingError(400, f"{where} is an empty list: send at least one base64 image")
        return [_b64(item, f"{where}[{i}]") for i, item in enumerate(doc)], True, thresholds
    if isinstance(doc, dict):
        images = [k for k in ("image", "images") if k in doc]
        if len(images) != 1:
            raise ServingError(400, f"{where}: a JSON object needs exactly one of 'image' (base64) or 'images' "
                               f"(a list of base64), got keys {sorted(doc)}")
        for key, value in doc.items():
            if key not in ("image", "images"):
                thresholds = _set(thresholds, key, value, where)
        if images[0] == "image":
            return [_b64(doc["image"], f"{where}.image")], False, thresholds
        if not isinstance(doc["images"], list):
            raise ServingError(400, f"{where}.images must be a list of base64 strings")
        found, _, _ = _json_images(doc["images"], f"{where}.images", thresholds)
        return found, True, thresholds
    raise ServingError(400, f"{where} must be a base64 string, a list of them, or an object with 'image' or "
                       f"'images'; got {type(doc).__name__}")


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ServingError(400, f"{where} is not valid JSON ({err})") from None


@dataclass
class Request:
    """A parsed invocation: the encoded images, how to shape the answer, and the thresholds."""

    images: list[bytes]
    shape: str  # "one", "list" or "lines"
    thresholds: Thresholds
    counts: list[int] | None = None  # per jsonlines record: how many images it holds


def parse_request(body: bytes, content_type: str | None, thresholds: Thresholds, limits: Limits) -> Request:
    kind = media_type(content_type)
    if kind in IMAGE_TYPES or kind.startswith("image/"):
        request = Request([body], "one", thresholds)
    elif kind == JSON or kind.endswith("+json"):
        images, batch, thresholds = _json_images(_parse_json(body, "JSON body"), "JSON body", thresholds)
        request = Request(images, "list" if batch else "one", thresholds)
    elif kind in JSONLINES:
        lines = [line for line in body.splitlines() if line.strip()]
        if not lines:
            raise ServingError(400, "jsonlines body holds no records: one JSON record (a base64 image) per line")
        images, counts = [], []
        for i, line in enumerate(lines, 1):
            found, _, _ = _json_images(_parse_json(line, f"line {i}"), f"line {i}", thresholds)
            images += found
            counts.append(len(found))
        request = Request(images, "lines", thresholds, counts)
    elif not kind:
        raise ServingError(415, "no Content-Type: send image/jpeg, image/png, application/x-image, "
                           "application/json or application/jsonlines")
    else:
        raise ServingError(415, f"Content-Type {kind!r} is not served; send image/jpeg, image/png, "
                           "application/x-image, application/json (base64) or application/jsonlines")
    if len(request.images) > limits.max_images:
        raise ServingError(413, f"{len(request.images)} images in one request; at most {limits.max_images} "
                           f"({MAX_IMAGES_ENV}): split the batch")
    return request


# -- responses -------------------------------------------------------------------------------------------
def image_result(predictor: Predictor, image: Any, detections: list[Detection]) -> dict[str, Any]:
    height, width = image.shape[:2]
    return {"model": predictor.name, "width": int(width), "height": int(height), "detections": [
        {"label": predictor.names[d.class_id] if 0 <= d.class_id < len(predictor.names) else str(d.class_id),
         "class_id": int(d.class_id), "score": round(float(d.score), 5),
         "box": [round(float(v), 2) for v in d.box]} for d in detections]}


def render(request: Request, results: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The response body and its content type for a request's per-image results."""
    if request.shape == "one":
        return json.dumps(results[0]).encode(), JSON
    if request.shape == "list":
        return json.dumps(results).encode(), JSON
    lines, start = [], 0
    for count in request.counts or []:
        chunk = results[start:start + count]
        start += count
        lines.append(json.dumps(chunk[0] if count == 1 else chunk))
    return ("\n".join(lines) + "\n").encode(), JSONLINES[0]


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()
