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
import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

JSON = "application/json"
JSONLINES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")  # the documented ones; any image/* is read
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_BODY_MB_ENV = "SERVING_MAX_BODY_MB"
MAX_IMAGES_ENV = "SERVING_MAX_IMAGES"
MAX_MEGAPIXELS_ENV = "SERVING_MAX_MEGAPIXELS"
HEADER_TIMEOUT_ENV = "SERVING_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "SERVING_BODY_TIMEOUT"
# SageMaker caps a real-time request at 6 MB and a batch transform one at MaxPayloadInMB (<= 100); 20 MB leaves
# room for base64 batches without letting one request hold gigabytes in a worker.
DEFAULT_MAX_BODY_MB = 20.0
DEFAULT_MAX_IMAGES = 64
# Pixels a worker holds decoded at once, whatever the request: images are decoded and predicted in groups
# that fit (one image over it is refused). 50 MP is ~150 MB as RGB, ~500 MB at the peak of decoding one.
DEFAULT_MAX_MEGAPIXELS = 50.0
MAX_PIXELS = int(DEFAULT_MAX_MEGAPIXELS * 1_000_000)
# A client has this long to send its headers, then this long (in all) for the rest of the request: SageMaker's
# own invocation timeout is 60 s, and a connection that dawdles holds a file descriptor and buffers meanwhile.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0


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

    @classmethod
    def of(cls, class_id: Any, score: Any, box: Iterable[Any]) -> Detection:
        """From a model's numbers (NumPy or Python): the class as an int, the score and four corners as floats."""
        x1, y1, x2, y2 = (float(v) for v in box)
        return cls(int(class_id), float(score), (x1, y1, x2, y2))


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
    """What one request may ask of a worker; ``from_env`` reads the ``SERVING_*`` variables."""

    max_body_bytes: int
    max_images: int
    max_pixels: int = MAX_PIXELS  # decoded at once in a worker
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> Limits:
        """ValueError naming the variable, its value and what it takes, for any value that is not usable."""
        mb = _positive(environ, MAX_BODY_MB_ENV, DEFAULT_MAX_BODY_MB, "a number of MB, above 0")
        images = _positive(environ, MAX_IMAGES_ENV, DEFAULT_MAX_IMAGES, "a whole number of images, 1 or more",
                           integer=True)
        megapixels = _positive(environ, MAX_MEGAPIXELS_ENV, DEFAULT_MAX_MEGAPIXELS, "a number of megapixels, above 0")
        header = _positive(environ, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT, "a number of seconds, above 0")
        body = _positive(environ, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT, "a number of seconds, above 0")
        return cls(max_body_bytes=max(1, int(mb * 1024 * 1024)), max_images=int(images),
                   max_pixels=max(1, int(megapixels * 1_000_000)), header_timeout=header, body_timeout=body)


ENV_MAX = 1e6  # a million MB, images, megapixels or seconds (11 days): past any request; sockets and int() overflow


def _positive(environ: Any, name: str, default: float, takes: str, *, integer: bool = False) -> float:
    raw = environ.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > ENV_MAX:  # 1e308 MB overflowed int() into a traceback
        raise ValueError(f"{name}={raw!r} is not usable: it takes {takes}, at most {ENV_MAX:g} (default "
                         f"{default:g}); set it to such a value or unset it")
    return value


# -- thresholds ------------------------------------------------------------------------------------------
_KEYS = {"conf": "conf", "confidence": "conf", "iou": "iou", "max_det": "max_det", "max_detections": "max_det"}


def _shown(text: str) -> str:
    """A key of the request as an answer names it: cut short (a 3 MB key was echoed whole, a 3 MB answer)."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def _set(thresholds: Thresholds, key: str, value: Any, where: str) -> Thresholds:
    field = _KEYS.get(key.strip().lower())
    if field is None:
        raise ServingError(400, f"unknown key {_shown(key)} in {where}; known: conf, iou, max_det")
    number = _number(value, integer=field == "max_det")
    if number is None:
        kind = "a whole number" if field == "max_det" else "a number"
        raise ServingError(400, f"{where}: {field} must be {kind}, got {value!r}") from None
    if field == "max_det" and not 1 <= number <= 10_000:
        raise ServingError(400, f"{where}: max_det must be 1..10000, got {number}")
    if field != "max_det" and not 0.0 <= number <= 1.0:
        raise ServingError(400, f"{where}: {field} must be between 0 and 1, got {number}")
    if field == "max_det":
        return replace(thresholds, max_det=int(number))
    return replace(thresholds, conf=number) if field == "conf" else replace(thresholds, iou=number)


def _number(value: Any, *, integer: bool) -> float | None:
    """A threshold's value from a header (text) or a JSON body (number); None for anything else. ``true`` is
    not 1.0 and ``1.9`` is not a max_det of 1: a value that is not what it names is refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer over 1e308 in a JSON body
        return None
    if not math.isfinite(number):
        return number if not integer else None  # the range check names nan and inf
    if integer:
        if not number.is_integer():
            return None
        return int(number)
    return number


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


def _too_large(where: str, width: int, height: int, max_pixels: int) -> ServingError:
    return ServingError(413, f"{where}: image of {width}x{height} pixels is over the limit of {max_pixels} pixels "
                        f"a worker decodes at once ({MAX_MEGAPIXELS_ENV}={max_pixels / 1e6:g}); resize it first")


@contextlib.contextmanager
def _opened(data: bytes, where: str, max_pixels: int) -> Iterator[Any]:
    """The image Pillow reads from ``data``, opened (its header read, nothing decoded); 400 if it is not one,
    413 if it is over ``max_pixels``."""
    from PIL import Image

    if not data:
        raise ServingError(400, f"{where} is empty: send the bytes of a JPEG or PNG image")
    Image.MAX_IMAGE_PIXELS = max(max_pixels, MAX_PIXELS)  # Pillow's own bomb check, a second line
    try:
        image = _pil_open()(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ServingError(413, f"{where}: {err}") from None
    except Exception as err:
        raise ServingError(400, f"{where} is not an image Pillow can read ({type(err).__name__}: {err}); "
                           "send JPEG or PNG bytes") from None
    with image:
        if image.width * image.height > max_pixels:
            raise _too_large(where, image.width, image.height, max_pixels)
        yield image


def image_size(data: bytes, where: str = "body", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding it; 400/413 as :func:`decode_image`."""
    with _opened(data, where, max_pixels) as image:
        return int(image.width), int(image.height)


def decode_image(data: bytes, where: str = "body", max_pixels: int = MAX_PIXELS) -> Any:
    """RGB uint8 array (H, W, 3) from encoded image bytes; 400 naming the cause otherwise, 413 over
    ``max_pixels``."""
    import numpy as np

    with _opened(data, where, max_pixels) as image:
        try:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb)
        except ServingError:
            raise
        except Exception as err:
            raise ServingError(400, f"{where} is not an image Pillow can read ({type(err).__name__}: {err}); "
                               "send JPEG or PNG bytes") from None


def pixel_groups(sizes: list[tuple[int, int]], max_pixels: int) -> list[list[int]]:
    """Indices of ``sizes`` ((width, height) each) in order, cut into runs whose pixels add up to at most
    ``max_pixels``: the images a worker decodes and predicts together. Each size must fit alone."""
    groups: list[list[int]] = []
    total = max_pixels + 1
    for i, (width, height) in enumerate(sizes):
        pixels = width * height
        if pixels > max_pixels:
            raise _too_large(f"image {i}", width, height, max_pixels)
        if total + pixels > max_pixels:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += pixels
    return groups


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ServingError(400, f"{where} must be a base64 string of image bytes, got {type(value).__name__}")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        joined = "".join(text.split())  # `base64 photo.jpg` wraps its output every 76 characters
        if joined != text:
            with contextlib.suppress(binascii.Error, ValueError):
                return base64.b64decode(joined, validate=True)
        raise ServingError(400, f"{where} is not valid base64 ({err})") from None


def _json_images(doc: Any, where: str, thresholds: Thresholds, max_images: int) -> tuple[list[bytes], bool,
                                                                                        Thresholds]:
    """(encoded images, is_batch, thresholds) from a JSON document; a list is counted before it is decoded."""
    if isinstance(doc, str):
        return [_b64(doc, where)], False, thresholds
    if isinstance(doc, list):
        if not doc:
            raise ServingError(400, f"{where} is an empty list: send at least one base64 image")
        _count(len(doc), max_images)
        return [_b64(item, f"{where}[{i}]") for i, item in enumerate(doc)], True, thresholds
    if isinstance(doc, dict):
        images = [k for k in ("image", "images") if k in doc]
        if len(images) != 1:
            keys = ", ".join(_shown(k) for k in list(doc)[:10]) + (f" and {len(doc) - 10} more" if len(doc) > 10
                                                                    else "")
            raise ServingError(400, f"{where}: a JSON object needs exactly one of 'image' (base64) or 'images' "
                               f"(a list of base64), got keys {keys or 'none'}")
        for key, value in doc.items():
            if key not in ("image", "images"):
                thresholds = _set(thresholds, key, value, where)
        if images[0] == "image":
            return [_b64(doc["image"], f"{where}.image")], False, thresholds
        if not isinstance(doc["images"], list):
            raise ServingError(400, f"{where}.images must be a list of base64 strings")
        found, _, _ = _json_images(doc["images"], f"{where}.images", thresholds, max_images)
        return found, True, thresholds
    raise ServingError(400, f"{where} must be a base64 string, a list of them, or an object with 'image' or "
                       f"'images'; got {type(doc).__name__}")


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ServingError(400, f"{where} is not valid JSON ({err})") from None
    except RecursionError:  # json's decoder recurses per bracket; Python stops it near its recursion limit
        raise ServingError(400, f"{where} nests lists or objects too deeply to be a request: send "
                           '"<base64>", {"image": "<base64>"} or {"images": ["<base64>", ...]}') from None


@dataclass
class Request:
    """A parsed invocation: the encoded images, how to shape the answer, and the thresholds."""

    images: list[bytes]
    shape: str  # "one", "list" or "lines"
    thresholds: Thresholds
    counts: list[int] | None = None  # per jsonlines record: how many images it holds


def _sized(data: bytes, documents: int, limits: Limits, where: str) -> None:
    """Count before parsing. ``json.loads`` turns 20 MB of ``[[],[],...`` or ``[1.5,1.5,...`` into ten times that
    in Python objects, and recurses once per bracket; a request holds one string per image and a few keys per
    record, so its separators and brackets are few. Base64 has none of these characters."""
    brackets = data.count(b"[") + data.count(b"{")
    separators = data.count(b",") + data.count(b":")  # a data: URI has one of each per image
    if brackets > 4 * documents:
        raise ServingError(400, f"{where} holds {brackets} lists or objects, nested or not: not a request. Send "
                           '"<base64>", {"image": "<base64>"} or {"images": ["<base64>", ...]}')
    if separators > 3 * limits.max_images + 32 * documents:
        raise ServingError(413, f"{where} holds about {separators} items; at most {limits.max_images} images in one "
                           f"request ({MAX_IMAGES_ENV}): split the batch")


def _count(images: int, max_images: int) -> None:
    if images > max_images:
        raise ServingError(413, f"{images} images in one request; at most {max_images} ({MAX_IMAGES_ENV}): "
                           "split the batch")


def parse_request(body: bytes, content_type: str | None, thresholds: Thresholds, limits: Limits) -> Request:
    kind = media_type(content_type)
    if kind in IMAGE_TYPES or kind.startswith("image/"):
        request = Request([body], "one", thresholds)
    elif kind == JSON or kind.endswith("+json"):
        _sized(body, 1, limits, "JSON body")
        images, batch, thresholds = _json_images(_parse_json(body, "JSON body"), "JSON body", thresholds,
                                                 limits.max_images)
        request = Request(images, "list" if batch else "one", thresholds)
    elif kind in JSONLINES:
        newlines = body.count(b"\n")
        if newlines > 2 * limits.max_images + 16:  # before splitting: 20 MB of blank lines are 20M objects
            raise ServingError(413, f"jsonlines body of {newlines} lines; at most {limits.max_images} records "
                               f"({MAX_IMAGES_ENV}): split the batch")
        lines = [line for line in body.splitlines() if line.strip()]
        if not lines:
            raise ServingError(400, "jsonlines body holds no records: one JSON record (a base64 image) per line")
        _count(len(lines), limits.max_images)
        _sized(body, len(lines), limits, "jsonlines body")
        images, counts = [], []
        for i, line in enumerate(lines, 1):
            found, _, _ = _json_images(_parse_json(line, f"line {i}"), f"line {i}", thresholds, limits.max_images)
            images += found
            counts.append(len(found))
        request = Request(images, "lines", thresholds, counts)
    elif not kind:
        raise ServingError(415, "no Content-Type: send image/jpeg, image/png, application/x-image, "
                           "application/json or application/jsonlines")
    else:
        raise ServingError(415, f"Content-Type {kind!r} is not served; send image/jpeg, image/png, "
                           "application/x-image, application/json (base64) or application/jsonlines")
    _count(len(request.images), limits.max_images)
    return request


def check_accept(accept: str | None) -> None:
    """406 unless the ``Accept`` header allows JSON. Every answer is JSON text (a jsonlines answer is JSON
    lines): ``application/json`` and the jsonlines types are taken as the same, which the SDK's batch
    transform (``Accept: application/json`` on jsonlines input) relies on."""
    if not accept or not accept.strip():
        return
    served = {JSON, *JSONLINES, "application/*", "*/*"}
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        quality = next((p.split("=", 1)[1].strip() for p in params if p.lower().startswith("q=")), "1")
        try:
            weight = float(quality)
        except ValueError:
            weight = 1.0
        if kind.lower() in served and weight > 0:
            return
    raise ServingError(406, f"Accept: {accept[:200]!r} allows no type this server answers with; its answers are "
                       f"{JSON} (or {JSONLINES[0]} for {JSONLINES[0]} requests): accept one of them or */*")


class ModelLoadError(Exception):
    """The model's files were found but could not be loaded; the message names the file."""

    def __init__(self, path: Any, err: BaseException) -> None:
        super().__init__(f"{path}: {type(err).__name__}: {str(err).rstrip('. ')}. Serve the model folder a training "
                         "job wrote (its model.tar.gz unpacked, unchanged)")


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
