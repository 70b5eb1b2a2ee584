"""A video through ``serve``: one request (what an asynchronous endpoint or a batch transform sends) against
frame-by-frame real-time calls, A/B in one run, and the worker's peak memory for a short and a long video.

    python benchmarks/bench_video.py [--model-dir DIR] [--seconds 30] [--fps 15] [--width 640 --height 480]

``python -m container serve`` with one worker on 127.0.0.1 (``SERVING_WEIGHTS`` as ``--weights``, the invocation
budget raised to an hour as ``deploy(asynchronous=...)`` does). One request: the whole MP4 as ``video/mp4``, JSON
lines back. Frame by frame: the client decodes the same MP4 with OpenCV and sends each frame as a JPEG (quality
95) to ``/invocations``, one after another. The S3 hops of an asynchronous endpoint are not here (no AWS):
they add two object transfers per request, not per frame. Peak memory is the worker's ``VmHWM`` after a video
a third as long, then after the full one: a worker whose memory grew with the video would show it.
Without ``--model-dir`` it trains yolo11n for one epoch at ``--imgsz`` on generated shapes (bench_serve.py's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    for i in range(int(seconds * fps)):
        frame = background.copy()
        x = (i * 7) % (width - width // 4)
        cv2.rectangle(frame, (x, height // 4), (x + width // 5, height // 2), (40, 40, 230), -1)
        cv2.ellipse(frame, (width - x - 40, 3 * height // 4), (50, 30), 0, 0, 360, (230, 60, 40), -1)
        writer.write(frame)
    writer.release()
    return path


def worker_peak_kb(server_pid: int) -> int:
    """The largest VmHWM among the server's child processes (the gunicorn worker)."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(server_pid) and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]))
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a YOLO model folder (with exports/best.onnx for onnx)")
    parser.add_argument("--weights", default="onnx", help="SERVING_WEIGHTS: onnx (default) or best.pt")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    import cv2

    from benchmarks.bench_serve import train
    from sdk.serving.hosting import LocalServer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train(args.imgsz, Path(tmp))
        long = make_video(Path(tmp) / "long.mp4", args.seconds, args.fps, args.width, args.height)
        short = make_video(Path(tmp) / "short.mp4", args.seconds / 3, args.fps, args.width, args.height)
        frames = int(args.seconds * args.fps)
        megabytes = long.stat().st_size / 1e6
        server = LocalServer(model_dir, workers=1, environment={"SERVING_WEIGHTS": args.weights,
                                                                "SERVING_INVOCATION_SECONDS": "3600",
                                                                "SERVING_BODY_TIMEOUT": "600"})
        server.start(timeout=600)
        try:
            assert server.process is not None
            status, answer, _ = server.invoke(short.read_bytes(), "video/mp4", timeout=3600)  # warm up
            assert status == 200, answer[:300]
            short_peak = worker_peak_kb(server.process.pid)

            start = time.perf_counter()
            status, answer, _ = server.invoke(long.read_bytes(), "video/mp4", timeout=3600)
            one = time.perf_counter() - start
            assert status == 200 and len(answer.splitlines()) == frames, answer[:300]
            long_peak = worker_peak_kb(server.process.pid)

            capture = cv2.VideoCapture(str(long))
            start = time.perf_counter()
            sent = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
                status, answer, _ = server.invoke(jpeg.tobytes(), "image/jpeg")
                assert status == 200, answer[:300]
                sent += 1
            each = time.perf_counter() - start
            capture.release()
        finally:
            server.stop()
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}; {args.weights} at imgsz "
          f"{args.imgsz}; a {args.seconds:.0f} s video, {frames} frames of {args.width}x{args.height}, "
          f"{megabytes:.1f} MB; 1 worker\n")
    print("| how | seconds | frames/s |\n| --- | ---: | ---: |")
    print(f"| one request, video/mp4 in, JSON lines out | {one:.1f} | {frames / one:.1f} |")
    print(f"| frame by frame, {sent} JPEG requests | {each:.1f} | {sent / each:.1f} |")
    print(f"\nworker peak memory (VmHWM): {short_peak / 1024:.0f} MiB after a {args.seconds / 3:.0f} s video, "
          f"{long_peak / 1024:.0f} MiB after the {args.seconds:.0f} s one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
