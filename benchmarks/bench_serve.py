"""Serving latency and throughput: ``serve`` (best.pt and the ONNX export) against plain ultralytics ``predict()``.

    python benchmarks/bench_serve.py [--model-dir DIR] [--imgsz 320] [--requests 60] [--clients 4]

Baseline: ``YOLO("best.pt").predict(image)`` in one process, one image at a time, the images already decoded
(no HTTP, no JPEG decoding): the floor a server can approach. Ours: ``python -m container serve`` (gunicorn,
the worker count it picks for this machine) over HTTP on 127.0.0.1, JPEG bodies, one client at a time, then
``--clients`` clients at once. Prints p50/p95 latency (ms), throughput (images/s), and ratios to the baseline.
Without ``--model-dir`` it trains yolo11n for one epoch at ``--imgsz`` on generated shapes (the weights' values
do not change the work done; the size does). TF SavedModel: ``--tf-model-dir`` (served with ``.venv-tf``).

``--images FULL SERVE`` (built images, e.g. ``localhost/sm-yolo:test localhost/sm-yolo:test-serve``): the full image
against its serving variant as SageMaker starts them (``IMAGE serve``, the model mounted at /opt/ml/model, host
network), ``--starts`` times each, alternating: cold start (``run`` to the first 200 from ``/invocations``, the
median) and single-client latency after it. Baseline: the full image serving best.pt (its default); then the full
image serving the ONNX export, then the variant (which serves the ONNX export). Image sizes from the engine.
The video A/B (one request against frame-by-frame calls) is ``benchmarks/bench_video.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, latencies: list[float], wall: float, images: int, base: float | None) -> str:
    p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
    rate = images / wall
    ratio = f"{rate / base:5.2f}x" if base else "  -  "
    return f"| {label:<38} | {p50:8.1f} | {p95:8.1f} | {rate:7.1f} | {ratio} |"


def train(imgsz: int, root: Path) -> Path:
    from container import local
    from container.synthetic import make_shapes

    shapes = make_shapes(root / "shapes", train=16, val=4, size=imgsz)
    base = local.build_tree(root / "opt_ml", {"train": shapes},
                            {"model": "yolo11n.yaml", "epochs": "1", "imgsz": str(imgsz), "batch": "8", "workers": "0",
                             "plots": "false", "export": "onnx"})
    result = local.run_train(base, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=1800)
    if result.returncode:
        sys.exit(f"training failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return base / "model"


def make_images(count: int, width: int, height: int) -> list[bytes]:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        ImageDraw.Draw(image).ellipse([width // 4, height // 4, width // 2 + i % 50, height // 2], fill=(200, 40, 40))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def baseline(model_dir: Path, images: list[bytes], imgsz: int) -> tuple[list[float], float]:
    import numpy as np
    from PIL import Image
    from ultralytics import YOLO

    model = YOLO(str(model_dir / "best.pt"))
    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))[..., ::-1] for b in images]
    for array in arrays[:3]:
        model.predict(array, imgsz=imgsz, verbose=False)
    latencies = []
    start = time.perf_counter()
    for array in arrays:
        t = time.perf_counter()
        model.predict(array, imgsz=imgsz, verbose=False)
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - start


def served(model_dir: Path, images: list[bytes], clients: int, env: dict[str, str],
           python: str | None = None) -> tuple[tuple[list[float], float], tuple[list[float], float], str]:
    from sdk.serving.hosting import LocalServer

    server = LocalServer(model_dir, environment=env)
    if python:  # another interpreter (the TF one): run its serve directly
        server.command = lambda: [python, "-m", "container", "serve", "--model-dir", str(server.model_dir),
                                  "--host", "127.0.0.1"]
        server.environment["SAGEMAKER_BIND_TO_PORT"] = str(server.port)
    server.start(timeout=600)
    try:
        def one(body: bytes) -> float:
            t = time.perf_counter()
            status, answer, _ = server.invoke(body, "image/jpeg")
            assert status == 200, answer[:300]
            return time.perf_counter() - t

        for body in images[:4]:
            one(body)
        start = time.perf_counter()
        sequential = [one(body) for body in images]
        seq = (sequential, time.perf_counter() - start)
        with ThreadPoolExecutor(clients) as pool:
            start = time.perf_counter()
            together = list(pool.map(one, images))
            par = (together, time.perf_counter() - start)
        lines = server.log().splitlines()
        workers = next((line.split("; ")[1].split(":")[0] for line in lines if "worker(s)" in line), "?")
        return seq, par, workers
    finally:
        server.stop()


def images_ab(full: str, variant: str, model_dir: Path, images: list[bytes], starts: int) -> None:
    """Cold start and one client's latency: the full image (best.pt, then ONNX) against the serving variant."""
    import statistics
    import subprocess
    import uuid

    import requests

    from sdk.serving.hosting import free_port
    from tests.images.engine import find_engine

    engine = find_engine()
    assert engine is not None, "no container engine answers"

    def size(tag: str) -> float:
        return int(engine.run("image", "inspect", "-f", "{{.Size}}", tag, capture_output=True).stdout) / 1e9

    def once(tag: str, env: dict[str, str]) -> tuple[float, list[float]]:
        port, name = free_port(), f"bench-serve-{uuid.uuid4().hex[:8]}"
        flags = [x for k, v in {**env, "SAGEMAKER_BIND_TO_PORT": str(port)}.items() for x in ("-e", f"{k}={v}")]
        url = f"http://127.0.0.1:{port}/invocations"
        t = time.perf_counter()
        engine.run("run", "-d", "--name", name, "--network", "host", *flags, "-v", f"{model_dir}:/opt/ml/model:ro",
                   tag, "serve", capture_output=True)
        try:
            while True:
                try:
                    if requests.post(url, data=images[0], headers={"Content-Type": "image/jpeg"},
                                     timeout=30).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                state = engine.run("inspect", "-f", "{{.State.Running}}", name, check=False, capture_output=True)
                if state.stdout.strip() != "true":
                    raise RuntimeError(engine.run("logs", name, check=False, capture_output=True).stderr[-2000:])
                time.sleep(0.05)
            cold = time.perf_counter() - t
            latencies = []
            for body in images:
                t = time.perf_counter()
                assert requests.post(url, data=body, headers={"Content-Type": "image/jpeg"}, timeout=60).ok
                latencies.append(time.perf_counter() - t)
            return cold, latencies
        finally:
            subprocess.run(engine.cmd("rm", "-f", name), capture_output=True)

    runs = [("full image, best.pt (baseline)", full, {}), ("full image, ONNX", full, {"SERVING_WEIGHTS": "onnx"}),
            ("serving variant, ONNX", variant, {})]
    colds: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    lats: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    for _ in range(starts):  # alternating, so that a burst of load elsewhere touches every row alike
        for label, tag, env in runs:
            cold, latencies = once(tag, env)
            colds[label].append(cold)
            lats[label].extend(latencies)
    base_cold = statistics.median(colds[runs[0][0]])
    base_p50 = percentile(lats[runs[0][0]], 0.5)
    print(f"\n{starts} cold start(s) each, {len(images)} requests after each, one client")
    print("| image, weights | size GB | cold start s (median) | vs baseline | p50 ms | p95 ms | p50 vs baseline |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, tag, _ in runs:
        cold, p50 = statistics.median(colds[label]), percentile(lats[label], 0.5)
        print(f"| {label} | {size(tag):.2f} | {cold:.1f} | {cold / base_cold:.2f}x | {p50 * 1000:.1f} | "
              f"{percentile(lats[label], 0.95) * 1000:.1f} | {p50 / base_p50:.2f}x |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a YOLO model folder with exports/best.onnx")
    parser.add_argument("--tf-model-dir", type=Path, help="a TF model folder with a SavedModel (<n>/)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--images", nargs=2, metavar=("FULL", "SERVE"), help="built images: full and serving variant")
    parser.add_argument("--starts", type=int, default=3, help="--images: cold starts of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train(args.imgsz, Path(tmp))
        images = make_images(args.requests, args.width, args.height)
        if args.images:
            print(f"machine: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}; JPEGs of {args.width}x"
                  f"{args.height}, model imgsz {args.imgsz}")
            images_ab(*args.images, model_dir, images, args.starts)
            return 0
        import torch

        print(f"machine: {os.cpu_count()} CPU(s), torch {torch.__version__}; {len(images)} JPEG requests of "
              f"{args.width}x{args.height}, model imgsz {args.imgsz}, {args.clients} concurrent clients")
        print("| run | p50 ms | p95 ms | img/s | vs baseline |\n| --- | --- | --- | --- | --- |")
        lat, wall = baseline(model_dir, images, args.imgsz)
        base = len(images) / wall
        print(summary("ultralytics predict(), in process (baseline)", lat, wall, len(images), None), flush=True)
        runs = [("serve best.pt", {}, None), ("serve ONNX", {"SERVING_WEIGHTS": "onnx"}, None)]
        if args.tf_model_dir:
            runs.append(("serve TF SavedModel", {}, str(ROOT / ".venv-tf" / "bin" / "python")))
        for label, env, python in runs:
            directory = args.tf_model_dir if python else model_dir
            seq, par, workers = served(directory, images, args.clients, env, python)
            print(summary(f"{label}, 1 client ({workers})", *seq, len(images), base), flush=True)
            print(summary(f"{label}, {args.clients} clients", *par, len(images), base), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
