"""YOLO26's NMS-free head against its NMS path: validation mAP and serving latency per image, A/B in one run.

    python benchmarks/bench_nms_free.py [--model-dir DIR] [--epochs 20] [--imgsz 128] [--images 200]

Without ``--model-dir`` it trains yolo26n from its YAML on generated shapes through the image's own ``train``.
Then, on the validation split:

* mAP50-95 and mAP50 from ``YOLO.val`` with ``nms=False`` (the one-to-one head, no NMS) and without (the
  one-to-many head and NMS, ultralytics 8.4's default);
* latency per image through the serving adapter (container/yolo/serve.py), one image at a time, already
  decoded: ``best.pt`` with ``SERVING_NMS=false`` (NMS-free) and ``=true`` (NMS, the default), and two ONNX
  exports (``nms=False``: end to end; the default: the raw head, NMS in NumPy) with onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train(root: Path, epochs: int, imgsz: int, images: int) -> tuple[Path, Path]:
    from container import local
    from container.synthetic import make_shapes

    shapes = make_shapes(root / "shapes", train=images, val=max(8, images // 4), size=imgsz)
    base = local.build_tree(root / "opt_ml", {"train": shapes},
                            {"model": "yolo26n.yaml", "epochs": str(epochs), "imgsz": str(imgsz), "batch": "16",
                             "workers": "0", "plots": "false"})
    started = time.monotonic()
    result = local.run_train(base, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=7200)
    if result.returncode:
        sys.exit(f"training failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    print(f"trained yolo26n for {epochs} epochs at {imgsz} px on {images} images in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return base / "model", shapes


def latency(predictor, arrays, thresholds) -> tuple[float, float]:
    for array in arrays[:3]:
        predictor.predict([array], thresholds)
    times = []
    for array in arrays:
        start = time.perf_counter()
        predictor.predict([array], thresholds)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a YOLO26 model folder")
    parser.add_argument("--data", type=Path, help="with --model-dir: the dataset's data.yaml")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--images", type=int, default=200, help="training images (validation: a quarter)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image
    from ultralytics import YOLO

    from container.serving.protocol import Thresholds
    from container.yolo import serve

    tmp = Path(tempfile.mkdtemp(prefix="bench-nms-free-"))
    if args.model_dir:
        model_dir, data = args.model_dir, args.data
    else:
        model_dir, shapes = train(tmp, args.epochs, args.imgsz, args.images)
        data = tmp / "val.yaml"  # the generated tree's data.yaml holds the names only
        data.write_text(f"path: {shapes}\ntrain: images/train\nval: images/val\nnames: [rectangle, ellipse]\n")
    best = model_dir / "best.pt"
    print("| path | mAP50-95 | mAP50 |\n| --- | ---: | ---: |")
    for label, options in (("one-to-many head + NMS (default)", {}), ("one-to-one head, nms=False", {"nms": False})):
        metrics = YOLO(str(best)).val(data=str(data), imgsz=args.imgsz, batch=16, workers=0, plots=False,
                                      verbose=False, **options)
        print(f"| {label} | {metrics.box.map:.4f} | {metrics.box.map50:.4f} |", flush=True)

    import yaml

    spec = yaml.safe_load(Path(data).read_text())
    val_dir = Path(spec.get("path") or Path(data).parent) / spec["val"]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(val_dir.iterdir())]
    arrays = (arrays * (60 // len(arrays) + 1))[:60]
    thresholds = Thresholds(conf=0.25, iou=0.7, max_det=300)
    onnx = {}
    for name, options in (("end2end", {"nms": False}), ("nms", {})):
        exported = Path(YOLO(str(best)).export(format="onnx", imgsz=args.imgsz, **options))
        (tmp / name).mkdir(exist_ok=True)
        onnx[name] = exported.rename(tmp / name / "best.onnx")
    rows = []
    for label, env, weights in (("best.pt, NMS-free (SERVING_NMS=false)", "false", best),
                                ("best.pt, NMS (SERVING_NMS=true, the default)", "true", best),
                                ("ONNX end to end (export nms=False)", "true", onnx["end2end"]),
                                ("ONNX raw head, NMS in NumPy (export default)", "true", onnx["nms"])):
        os.environ[serve.NMS_ENV] = env
        predictor = serve.load_weights(model_dir, weights)
        p50, p95 = latency(predictor, arrays, thresholds)
        rows.append(f"| {label} | {p50:.1f} | {p95:.1f} |")
    print(f"\n{len(arrays)} validation images at {args.imgsz} px, one at a time, decoded; ms per image\n")
    print("| serving path | p50 | p95 |\n| --- | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
