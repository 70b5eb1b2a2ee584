"""Serving latency and throughput: ``serve`` (best.pt and the ONNX export) against plain ultralytics ``predict()``.

    python benchmarks/bench_serve.py [--model-dir DIR] [--imgsz 320] [--requests 60] [--clients 4]

Baseline: ``YOLO("best.pt").predict(image)`` in one process, one image at a time, the images already decoded
(no HTTP, no JPEG decoding): the floor a server can approach. Ours: ``python -m container serve`` (gunicorn,
the worker count it picks for this machine) over HTTP on 127.0.0.1, JPEG bodies, one client at a time, then
``--clients`` clients at once. Prints p50/p95 latency (ms), throughput (images/s), and ratios to the baseline.
Without ``--model-dir`` it trains yolo11n for one epoch at ``--imgsz`` on generated shapes (the weights' values
do not change the work done; the size does). TF SavedModel: ``--tf-model-dir`` (served with ``.venv-tf``).
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
    from sdk._hosting import LocalServer

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a YOLO model folder with exports/best.onnx")
    parser.add_argument("--tf-model-dir", type=Path, help="a TF model folder with a SavedModel (<n>/)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train(args.imgsz, Path(tmp))
        images = make_images(args.requests, args.width, args.height)
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
