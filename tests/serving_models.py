"""A YOLO model trained once per test session for the serving tests (in process, image, SDK).

Training takes ~15 s (yolo11n from its YAML, 64 px, 1 epoch, ONNX export). Several test modules need it,
so it is kept under the session's base temp folder and trained by the first module that asks, under a lock
(pytest-xdist workers share the base folder's parent).
"""

from __future__ import annotations

import fcntl
import io
import subprocess
from pathlib import Path

from container import local
from container.synthetic import make_shapes
from tests.conftest import FAST, ROOT

SERVE_HPS = {**FAST, "epochs": "1", "export": "onnx"}


def yolo_model_dir(tmp_path_factory) -> Path:
    """``opt_ml/model`` of a finished training job (best.pt, exports/best.onnx, data.yaml, args.yaml, ...)."""
    root = tmp_path_factory.getbasetemp() / "serving-yolo"
    root.mkdir(exist_ok=True)
    model = root / "opt_ml" / "model"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model / "metrics.json").is_file():
            shapes = make_shapes(root / "shapes", train=16, val=4, size=64)
            base = local.build_tree(root / "opt_ml", {"train": shapes}, SERVE_HPS)
            result = local.run_train(base, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                                     timeout=600)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return model


def model_tarball(model_dir: Path, dest: Path) -> Path:
    """model.tar.gz as SageMaker writes it: the folder's content at the archive's root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-czf", str(dest), "-C", str(model_dir), "."], check=True)
    return dest


def image_bytes(width: int = 100, height: int = 70, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A shapes-like picture (a filled rectangle on noise) of the given size, encoded."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    ImageDraw.Draw(image).rectangle([width // 5, height // 5, width // 2, height // 2], fill=(250, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def video_bytes(frames: int = 6, width: int = 96, height: int = 64, suffix: str = ".mp4") -> bytes:
    """A short video (OpenCV's mp4v, or MJPG for .avi): a red rectangle moving right over a grey field."""
    import tempfile

    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip{suffix}"
        fourcc = cv2.VideoWriter.fourcc(*("MJPG" if suffix == ".avi" else "mp4v"))
        writer = cv2.VideoWriter(str(path), fourcc, 10.0, (width, height))
        for i in range(frames):
            frame = np.full((height, width, 3), 90, np.uint8)
            x = 4 + i * 3
            cv2.rectangle(frame, (x, height // 4), (x + width // 3, 3 * height // 4), (30, 30, 250), -1)
            writer.write(frame)
        writer.release()
        return path.read_bytes()
