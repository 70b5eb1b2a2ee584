"""The WSGI application behind ``IMAGE serve``: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

A plain WSGI callable (no web framework: two routes do not need one, and the images stay small). The model
is loaded once per worker process, in a background thread started by :meth:`App.start_loading`, so that
``/ping`` answers at once while weights load: 503 until the model is ready, 200 after, 500 if loading failed
(the reason is in the body and the log). Errors a client caused are 4xx JSON naming the cause; anything else
is a 500 JSON naming the exception, never an HTML page.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from container.serving import video
from container.serving.protocol import (
    JSON,
    Limits,
    ModelLoadError,
    Predictor,
    ServingError,
    check_accept,
    decode_image,
    error_body,
    image_result,
    image_size,
    parse_custom_attributes,
    parse_request,
    pixel_groups,
    render,
)

Loader = Callable[[Path], Predictor]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
            408: "Request Timeout", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 503: "Service Unavailable"}
BODY_CHUNK = 1024 * 1024


def log(msg: str) -> None:
    print(f"[serve] {msg}", file=sys.stderr, flush=True)


class App:
    """One per worker process. ``App(loader, model_dir)``, then ``start_loading()`` (or ``load()``)."""

    def __init__(self, loader: Loader, model_dir: Path, *, limits: Limits | None = None,
                 max_concurrent_transforms: int = 1) -> None:
        self.loader = loader
        self.model_dir = Path(model_dir)
        self.limits = limits or Limits.from_env()
        self.max_concurrent_transforms = max_concurrent_transforms
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self._loaded = threading.Event()
        # One request's decoding and prediction at a time per worker: the frameworks already use every core
        # given to the worker (intra-op threads), models are not all thread-safe, and the pixels decoded at
        # once (Limits.max_pixels) hold per worker, not per thread. Concurrency comes from workers.
        self._predict_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------------
    def load(self) -> None:
        started = time.monotonic()
        try:
            self.predictor = self.loader(self.model_dir)
            log(f"model {self.predictor.name} loaded from {self.model_dir} in {time.monotonic() - started:.1f}s "
                f"on {getattr(self.predictor, 'device', 'an unnamed device')}; classes {self.predictor.names}; "
                f"defaults {self.predictor.defaults}")
        except ModelLoadError as err:
            self.load_error = str(err)
            log(f"ERROR loading the model from {self.model_dir}: {self.load_error}\n{traceback.format_exc()}")
        except Exception as err:
            self.load_error = f"{self.model_dir}: {type(err).__name__}: {err}"
            log(f"ERROR loading the model from {self.model_dir}: {self.load_error}\n{traceback.format_exc()}")
        finally:
            self._loaded.set()

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="load-model", daemon=True)
        thread.start()
        return thread

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._loaded.wait(timeout)

    # -- WSGI --------------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/ping":
                status, body, ctype = self.ping()
            elif path == "/invocations":
                if method != "POST":
                    raise ServingError(405, "/invocations takes POST")
                check_accept(environ.get("HTTP_ACCEPT"))
                status, body, ctype = self.invoke(environ)
            elif path == "/execution-parameters":
                status, body, ctype = 200, json.dumps(self.execution_parameters()).encode(), JSON
            else:
                raise ServingError(404, f"no route {path!r}: GET /ping, POST /invocations")
        except ServingError as err:
            status, body, ctype = err.status, error_body(err.status, str(err)), JSON
        except Exception as err:
            log(f"ERROR {method} {path}: {type(err).__name__}: {err}\n{traceback.format_exc()}")
            status, body, ctype = 500, error_body(500, f"{type(err).__name__}: {err}"), JSON
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, '')}".rstrip(), headers)
        return [body] if isinstance(body, bytes) else body  # a video's answer: a spooled file, streamed

    def ping(self) -> tuple[int, bytes, str]:
        if self.predictor is not None:
            return 200, b"", JSON
        if self.load_error:
            return 500, error_body(500, f"the model could not be loaded: {self.load_error}"), JSON
        return 503, error_body(503, "the model is still loading"), JSON

    def execution_parameters(self) -> dict[str, Any]:
        """What batch transform asks for before it starts (its MaxPayloadInMB is capped at 100)."""
        mb = max(1, min(100, self.limits.max_body_bytes // (1024 * 1024)))
        return {"MaxConcurrentTransforms": self.max_concurrent_transforms, "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": mb}

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        limit = self.limits.max_body_bytes
        length = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        size = limit + 1  # chunked: read one byte past the limit to know it was passed
        if length.strip():
            try:
                size = int(length)
            except ValueError:
                raise ServingError(400, f"bad Content-Length {length!r}") from None
            if size > limit:
                raise ServingError(413, f"body of {size} bytes is over the limit of {limit} bytes "
                                   "(SERVING_MAX_BODY_MB): send fewer or smaller images per request")
        parts, got = [], 0
        try:
            while got < size:
                part = stream.read(min(BODY_CHUNK, size - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except TimeoutError:  # the server's read deadline (SERVING_BODY_TIMEOUT) passed
            raise ServingError(408, f"the body did not arrive within {self.limits.body_timeout:g} s "
                               f"(SERVING_BODY_TIMEOUT; {got} bytes came): send it without pausing") from None
        except Exception as err:  # the server's HTTP parser on the body's framing (a bad chunk size, a cut body)
            raise ServingError(400, f"the body could not be read after {got} bytes ({type(err).__name__}: {err}): "
                               "send it with a Content-Length, or as valid chunked encoding") from None
        if got > limit:
            raise ServingError(413, f"body is over the limit of {limit} bytes (SERVING_MAX_BODY_MB)")
        return b"".join(parts)

    def invoke(self, environ: dict[str, Any]) -> tuple[int, Any, str]:
        if video.is_video(environ.get("CONTENT_TYPE")):  # streamed to disk, frames a batch at a time
            return video.invoke(self, environ)
        body = self._read_body(environ)
        if self.predictor is None:
            self.wait_loaded(timeout=50)  # an early request waits for the model rather than failing at once
        predictor = self.predictor
        if predictor is None:
            if self.load_error:
                return 500, error_body(500, f"the model could not be loaded: {self.load_error}"), JSON
            return 503, error_body(503, "not ready: the model is still loading; retry"), JSON
        thresholds = parse_custom_attributes(environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"),
                                             predictor.defaults)
        request = parse_request(body, environ.get("CONTENT_TYPE"), thresholds, self.limits)
        del body
        names = ["body"] if request.shape == "one" and len(request.images) == 1 else \
            [f"image {i}" for i in range(len(request.images))]
        max_pixels = self.limits.max_pixels
        # Every image's size from its header first (nothing decoded): a request that cannot fit is refused
        # before any work. Then decode and predict a group of images at a time, at most max_pixels in all.
        sizes = [image_size(data, name, max_pixels) for data, name in zip(request.images, names, strict=True)]
        results: list[dict[str, Any]] = []
        for group in pixel_groups(sizes, max_pixels):
            with self._predict_lock:
                images = [decode_image(request.images[i], names[i], max_pixels) for i in group]
                detections = predictor.predict(images, request.thresholds)
                results += [image_result(predictor, image, found)
                            for image, found in zip(images, detections, strict=False)]
                del images, detections
        body, ctype = render(request, results)
        return 200, body, ctype
