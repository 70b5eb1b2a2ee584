"""Hosting on this machine, and the request encoding every endpoint handle shares.

* :func:`encode_inputs`: an image path, a folder, bytes, a PIL image, a NumPy array, or a list of them, to the
  body and ``Content-Type`` the serving contract takes (``docs/serving.md``);
* :class:`LocalServer`: the real ``serve`` on a free port of 127.0.0.1, as a process (``python -m container
  serve``) or in docker/podman when an image is given; ``deploy(instance_type="local")`` uses it, and so does
  the test suite's SageMaker hosting double;
* :func:`transform_objects`: what batch transform does with one input object (split by line or not, one
  request per record or per object, output ``<key>.out``), for local transforms and the double.

No boto3 import here: an S3 client is passed in where one is needed.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from container.contract import SAGEMAKER
from container.serving.protocol import CUSTOM_ATTRIBUTES
from container.serving.resources import WORKERS_ENV
from container.serving.video import VIDEO_TYPES
from sdk._errors import ConfigurationError, InvocationError, SDKError

IMAGE_SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "application/x-image",
                  ".webp": "application/x-image", ".tif": "application/x-image", ".tiff": "application/x-image"}


VIDEO_SUFFIXES: dict[str, str] = {}
for _kind, _suffix in VIDEO_TYPES.items():
    VIDEO_SUFFIXES.setdefault(_suffix, _kind)  # .avi: video/x-msvideo, the registered type


def content_type_of(name: str) -> str:
    """The Content-Type a file is sent with: its image type, its video type, else ``application/x-image``."""
    suffix = Path(name).suffix.lower()
    return VIDEO_SUFFIXES.get(suffix) or IMAGE_SUFFIXES.get(suffix, "application/x-image")


def _image_bytes(item: Any) -> tuple[bytes, str]:
    if isinstance(item, (str, Path)):
        path = Path(item).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"image {path} does not exist")
        return path.read_bytes(), content_type_of(path.name)
    if isinstance(item, (bytes, bytearray)):
        return bytes(item), "application/x-image"
    from PIL import Image

    if not isinstance(item, Image.Image):
        if type(item).__module__ == "numpy":
            item = Image.fromarray(item)  # RGB, as Pillow reads it
        else:
            raise ConfigurationError(f"cannot send {type(item).__name__} as an image: give a path, bytes, a PIL "
                                     "image or an RGB NumPy array")
    buffer = io.BytesIO()
    item.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue(), "image/png"


def expand(images: Any) -> Any:
    """A folder becomes the sorted list of its images; anything else is left as it is."""
    if isinstance(images, (str, Path)) and Path(images).expanduser().is_dir():
        found = sorted(p for p in Path(images).expanduser().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigurationError(f"folder {images} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    return images


def encode_inputs(images: Any) -> tuple[bytes, str, bool]:
    """``(body, content_type, is_batch)``: one image as its own bytes, a list as a JSON batch of base64."""
    images = expand(images)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ConfigurationError("no images to send: the list is empty")
        encoded = [base64.b64encode(_image_bytes(item)[0]).decode() for item in images]
        return json.dumps({"images": encoded}).encode(), "application/json", True
    body, content_type = _image_bytes(images)
    return body, content_type, False


def custom_attributes(conf: float | None, iou: float | None, max_det: int | None) -> str:
    pairs = [f"{k}={v}" for k, v in (("conf", conf), ("iou", iou), ("max_det", max_det)) if v is not None]
    return ",".join(pairs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, bytes, str]:
    """``(status, body, content_type)``; HTTP errors are answers here, not exceptions."""
    import urllib.error
    import urllib.request

    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def decode_answer(status: int, body: bytes, content_type: str) -> Any:
    if status >= 400:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace")[:500]
        raise InvocationError(f"the model server answered {status}: {message}", status=status)
    if "jsonlines" in content_type:
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    return json.loads(body)


class LocalServer:
    """``serve`` on 127.0.0.1: ``python -m container serve`` (no container engine needed), or ``image`` in
    docker/podman with the model folder mounted read-only at ``contract.SAGEMAKER.model``, as SageMaker runs it."""

    def __init__(self, model_dir: str | Path, *, image: str | None = None, engine: str | None = None,
                 port: int | None = None, workers: int | None = None, environment: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.model_dir = Path(model_dir).resolve()
        if not self.model_dir.is_dir():
            raise ConfigurationError(f"model folder {self.model_dir} does not exist")
        self.image = image
        self.engine = engine
        self.port = port or free_port()
        self.workers = workers
        self.environment = dict(environment or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="sm-serve-")) / "serve.log"
        self.process: subprocess.Popen | None = None
        self.container: str | None = None

    def command(self) -> list[str]:
        env = {**self.environment, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        if self.workers:
            env[WORKERS_ENV[0]] = str(self.workers)
        if self.image:
            from sdk.jobs.local import find_engine

            self.engine = find_engine(self.engine)
            self.container = f"sm-serve-{uuid.uuid4().hex[:8]}"
            flags = [f"--env={k}={v}" for k, v in env.items()]
            # host network: the port is this machine's, as SAGEMAKER_BIND_TO_PORT says
            return [self.engine, "run", "--rm", "--name", self.container, "--network", "host",
                    "-v", f"{self.model_dir}:{SAGEMAKER.model}:ro", *flags, self.image, "serve"]
        self.environment.update(env)
        return [sys.executable, "-m", "container", "serve", "--model-dir", str(self.model_dir), "--host", "127.0.0.1"]

    def start(self, *, timeout: float = 300) -> LocalServer:
        import container

        cmd = self.command()
        env = {**os.environ, **self.environment}
        # the container package this SDK came with, wherever it is imported from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(container.__file__).parents[1]),
                                                          env.get("PYTHONPATH")]))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        atexit.register(self.stop)  # a session that ends without delete() leaves no server behind
        try:
            self.wait_ready(timeout)
        except BaseException:  # Ctrl-C while the model loads included: the server must not outlive the call
            self.stop()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                # exit 2: serve refused its input (a folder that holds no model, a bad setting), a user error
                error = ConfigurationError if self.process.returncode == 2 else SDKError
                raise error(f"serve exited with code {self.process.returncode} before it was ready:\n"
                            + self.log()[-3000:])
            try:
                status, body, _ = http(f"{self.url}/ping", timeout=5)
            except OSError:  # urllib's URLError included: not listening yet
                status, body = 0, b""
            if status == 200:
                return
            if status == 500:
                self.stop()
                reason = body.decode(errors='replace')
                raise SDKError(f"serve could not load the model: {reason}\n" + self.log()[-2000:])
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"serve not ready after {timeout:.0f} s:\n" + self.log()[-3000:])
            time.sleep(0.3)

    def invoke(self, body: bytes, content_type: str, *, attributes: str = "", accept: str = "application/json",
               timeout: float = 60) -> tuple[int, bytes, str]:
        headers = {"Content-Type": content_type, "Accept": accept}
        if attributes:
            headers[CUSTOM_ATTRIBUTES] = attributes
        return http(f"{self.url}/invocations", body=body, headers=headers, timeout=timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (what SageMaker sends), then SIGKILL after ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is not None:
            if not self.container:  # the master is gone; anything left of its group goes too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            return
        if self.container and self.engine:
            subprocess.run([self.engine, "stop", "-t", str(int(timeout)), self.container], check=False,
                           capture_output=True)
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            if not self.container:  # gunicorn's workers, should any outlive their master: its session's group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def split_records(data: bytes, split_type: str | None) -> list[bytes]:
    """``SplitType=Line``: one record per non-empty line; otherwise the whole object is one record."""
    if split_type == "Line":
        return [line for line in data.splitlines() if line.strip()]
    return [data]


def pack_records(records: list[bytes], max_payload: int) -> list[bytes]:
    """``BatchStrategy=MultiRecord``: as many lines as fit in ``max_payload`` bytes per request, as SageMaker packs
    them; a record longer than that alone (SageMaker fails the job on it; the server answers 413)."""
    requests: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for record in records:
        if batch and size + len(record) + 1 > max_payload:
            requests.append(b"\n".join(batch) + b"\n")
            batch, size = [], 0
        batch.append(record)
        size += len(record) + 1
    if batch:
        requests.append(b"\n".join(batch) + b"\n")
    return requests


def transform_objects(keys: list[str], read: Callable[[str], bytes], write: Callable[[str, bytes], None],
                      invoke: Callable[[bytes, str], tuple[int, bytes, str]], *, content_type: str,
                      split_type: str | None, batch_strategy: str | None, max_payload_mb: int = 6) -> list[str]:
    """Batch transform over ``keys``: each object's records to the server, ``<key>.out`` written with the answers
    (one line per record when split by line). Returns the failures, ``"key: reason"``; stops at none."""
    failures = []
    for key in keys:
        records = split_records(read(key), split_type)
        if batch_strategy == "MultiRecord" and split_type == "Line":
            requests = pack_records(records, max_payload_mb * 2**20)
        else:
            requests = records
        answers = []
        for body in requests:
            status, answer, _ = invoke(body, content_type)
            if status >= 400:
                failures.append(f"{key}: {status} {answer.decode(errors='replace')[:300]}")
                break
            answers.append(answer.rstrip(b"\n"))
        else:
            write(key + ".out", b"\n".join(answers) + (b"\n" if split_type == "Line" else b""))
    return failures
