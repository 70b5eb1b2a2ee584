"""``serve``: gunicorn with SageMaker's hosting settings, each worker running :class:`container.serving.app.App`.

Why gunicorn (gthread workers) and a bare WSGI app rather than uvicorn and an ASGI framework: inference is
CPU- or GPU-bound, so concurrency has to come from processes (one model each), which gunicorn's pre-fork
master manages (restarts a worker that dies, SIGTERM drains in-flight requests); a few threads per worker
keep ``/ping`` answering while that worker predicts or loads; async I/O would buy nothing, and WSGI needs
no framework in the image (gunicorn itself is pure Python, one dependency). AWS's own model servers for
bring-your-own containers use gunicorn the same way.

Settings: port ``SAGEMAKER_BIND_TO_PORT`` (default 8080); workers from :mod:`container.serving.resources`;
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (default 120 s) before a stuck worker is restarted; SIGTERM gives
in-flight requests 25 s (SageMaker sends SIGKILL 30 s after SIGTERM). The worker class is gthread's, with
header gathering in its event loop, /ping on its own threads and read deadlines: :mod:`container.serving.worker`.
Every variable is checked here, before gunicorn starts (a bad one is a UserError naming it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from container.contract import BASE_DIR_ENV, SAGEMAKER, Layout
from container.failure import UserError
from container.serving import resources
from container.serving.protocol import Limits

PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080
TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
DEFAULT_TIMEOUT = 120
# gunicorn's gthread worker, gathering headers in its event loop and answering /ping on its own threads
WORKER_CLASS = "container.serving.worker.ServingWorker"
ADAPTERS = {"yolo": "container.yolo.serve", "tfod": "container.tfod.serve"}
THREADS_PER_WORKER = 4  # HTTP threads: /ping and queued requests while one predicts


def default_model_dir() -> Path:
    return Layout.from_environ().model


def adapter(image: str) -> ModuleType:
    if image not in ADAPTERS:
        raise UserError(f"no serving adapter for image {image!r}; known: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[image])


def detect_image(model_dir: Path) -> str:
    """Which image wrote this model folder (outside a container nothing else says so)."""
    if (model_dir / "best.pt").is_file() or (model_dir / "data.yaml").is_file():
        return "yolo"
    if any(model_dir.glob("[0-9]*/saved_model.pb")) or (model_dir / "label_map.csv").is_file():
        return "tfod"
    raise UserError(f"{model_dir} holds neither a YOLO model (best.pt, data.yaml) nor a TF SavedModel "
                    f"(<n>/saved_model.pb); it holds: "
                    f"{', '.join(sorted(p.name for p in model_dir.iterdir())) or 'nothing'}. "
                    f"Point --model-dir (or {SAGEMAKER.model}) at the unpacked model.tar.gz of a training job")


def resolve(model_dir: Path, image: str | None) -> tuple[ModuleType, Path]:
    """The adapter and the weights it will load; UserError naming the fix when the folder is not servable."""
    if not model_dir.is_dir():
        raise UserError(f"model folder {model_dir} does not exist: SageMaker unpacks model.tar.gz there; "
                        "outside a container pass --model-dir")
    module = adapter(image or detect_image(model_dir))
    return module, module.check(model_dir)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def worker_timeout(environ: Any = os.environ) -> int:
    """Seconds before gunicorn restarts a worker that stopped answering its master; ValueError naming the
    variable when it is not a whole number of seconds of at least 1."""
    raw = (environ.get(TIMEOUT_ENV) or "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not usable: it takes a whole number of seconds, 1 or more "
                         f"(default {DEFAULT_TIMEOUT}); set it to such a value or unset it")
    return int(raw)


def settings(environ: Any = os.environ) -> tuple[Limits, int]:
    """Every serving variable read and checked before gunicorn starts: a bad value is a UserError naming the
    variable (inside a worker it would stop gunicorn with exit 3 and a traceback per worker)."""
    try:
        return Limits.from_env(environ), worker_timeout(environ)
    except ValueError as err:
        raise UserError(str(err)) from None


def check_temp_dir() -> None:
    """gunicorn's arbiter makes a temporary file per worker: with no writable temporary folder (a read-only root
    file system without a tmpfs) it died with a traceback; this says what to mount instead."""
    import tempfile

    try:
        tempfile.gettempdir()
    except FileNotFoundError as err:
        raise UserError(f"no writable temporary folder ({err}): gunicorn needs one for its workers. With a read-only "
                        "root file system mount one (docker run --tmpfs /tmp; podman's --read-only mounts it unless "
                        "--read-only-tmpfs=false) or set TMPDIR to a writable folder") from None


def run_gunicorn(module: ModuleType, model_dir: Path, *, host: str, port: int, plan: resources.Plan,
                 limits: Limits, timeout: int) -> None:
    from gunicorn.app.base import BaseApplication

    from container.serving.app import App

    given = dict(os.environ)  # the container's CUDA_VISIBLE_DEVICES, before any worker narrows its own

    def pick_gpu(arbiter: Any, worker: Any) -> None:
        worker.gpu = resources.gpu_for((getattr(w, "gpu", -1) for w in arbiter.WORKERS.values()), plan.gpus)

    def use_gpu(arbiter: Any, worker: Any) -> None:
        device = resources.visible_device(worker.gpu, given)
        os.environ[resources.GPU_ENV] = device
        print(f"[serve] worker {os.getpid()} on GPU {device} ({resources.GPU_ENV}={device})", file=sys.stderr,
              flush=True)

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {"bind": f"{host}:{port}", "workers": plan.workers, "worker_class": WORKER_CLASS,
                       "threads": THREADS_PER_WORKER, "timeout": timeout,
                       "graceful_timeout": 25, "keepalive": 60, "preload_app": False,
                       "errorlog": "-", "loglevel": "info", "accesslog": None, "proc_name": "serve",
                       "control_socket_disable": True}  # gunicorn 27's admin socket: unused, and one path per user
            if plan.gpus:  # each worker on its own GPU: chosen in the arbiter, set in the worker before it loads
                options.update(pre_fork=pick_gpu, post_fork=use_gpu)
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:  # in each worker, after the fork: one model per worker
            app = App(module.load, model_dir, limits=limits, max_concurrent_transforms=plan.workers)
            app.start_loading()
            return app

    Server().run()


def _port(raw: str | None, name: str) -> int:
    text = (raw or "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"{name}={raw!r} is not a port: it takes a whole number 1..65535")
    return int(text)


def serve(argv: list[str] | None = None, *, image: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve", description="Answer SageMaker's GET /ping and POST /invocations "
                                     f"with the model in {SAGEMAKER.model} (as training wrote it).")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help=f"the unpacked model.tar.gz (default: ${BASE_DIR_ENV}/model, else {SAGEMAKER.model})")
    parser.add_argument("--port", type=int, default=None, help=f"default ${PORT_ENV}, else {DEFAULT_PORT}")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: fit the machine)")
    parser.add_argument("--weights", default=None,
                        help="YOLO: best.pt (default), onnx, or a file in the model folder "
                             f"(env {resources.WEIGHTS_ENV})")
    parser.add_argument("--image", choices=sorted(ADAPTERS), default=image,
                        help="which adapter (default: this image's, else detected from the folder)")
    args = parser.parse_args(argv)
    limits, timeout = settings()
    port_from = ("--port", str(args.port)) if args.port is not None else (PORT_ENV, os.environ.get(PORT_ENV))
    port = _port(port_from[1], port_from[0])
    if args.weights:
        os.environ[resources.WEIGHTS_ENV] = args.weights
    if args.workers:
        os.environ[resources.WORKERS_ENV[0]] = str(args.workers)
    model_dir = (args.model_dir or default_model_dir()).resolve()
    module, weights = resolve(model_dir, args.image)
    check_temp_dir()
    from container.contract import count_gpus

    gpus = resources.usable_gpus(count_gpus())
    try:
        plan = resources.plan_workers(cpus=resources.cpu_count(), memory=resources.memory_bytes(),
                                      weights_bytes=_size(weights), gpus=gpus)
    except ValueError as err:
        raise UserError(str(err)) from None
    os.environ[resources.THREADS_ENV] = str(plan.threads)
    device = f"{gpus} GPU(s)" if gpus else "CPU (nvidia-smi finds no GPU)"  # each worker's load line names its own
    print(f"[serve] device: {device}; {module.__name__.split('.')[1]} model {weights} on port {port}; {plan.why}; "
          f"{plan.threads} inference thread(s) per worker; per request at most {limits.max_body_bytes} bytes, "
          f"{limits.max_images} images, {limits.max_pixels / 1e6:g} megapixels decoded at once; "
          f"{limits.header_timeout:g} s for headers, {limits.body_timeout:g} s for the body",
          file=sys.stderr, flush=True)
    run_gunicorn(module, model_dir, host=args.host, port=port, plan=plan, limits=limits, timeout=timeout)
    return 0
