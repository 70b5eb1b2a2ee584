"""On-device speed of the TensorFlow image's exports: int8 TFLite against the float TFLite (baseline).

    python benchmarks/bench_tflite.py MODEL_DIR [--images DIR] [--count 50] [--threads 1]

MODEL_DIR is a model folder of the TensorFlow image trained with ``quantize=true`` (model_float.tflite and
model_int8.tflite). Both run through ``sdk.edge`` (LiteRT with its XNNPACK delegate, as on a Raspberry Pi),
on the same images, one thread by default.
Prints milliseconds per image (median, end to end: resize, normalize, infer, read the outputs), the
file sizes, and the ratios int8/float.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def time_model(path: Path, images: list[Path], threads: int) -> float:
    from PIL import Image

    from sdk import edge

    runner = edge.open_interpreter(path, threads=threads)
    loaded = [Image.open(p).convert("RGB") for p in images]
    for image in loaded[:3]:
        edge.detect(runner, image, [])
    times = []
    for image in loaded:
        start = time.perf_counter()
        edge.detect(runner, image, [])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--images", type=Path, help="images to run on (default: 50 generated 320 px scenes)")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    float_model, int8_model = args.model_dir / "model_float.tflite", args.model_dir / "model_int8.tflite"
    for path in (float_model, int8_model):
        if not path.is_file():
            print(f"error: {path} is missing (train with quantize=true)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        else:
            from container.synthetic import make_shapes

            root = make_shapes(Path(tmp) / "shapes", train=args.count, val=0, size=320)
            images = sorted((root / "images" / "train").iterdir())
        images = images[:args.count]
        base = time_model(float_model, images, args.threads)
        ours = time_model(int8_model, images, args.threads)
    size_f, size_q = float_model.stat().st_size / 2**20, int8_model.stat().st_size / 2**20
    print(f"images: {len(images)}, threads: {args.threads}")
    print(f"float TFLite (baseline): {base:8.2f} ms/image  {size_f:6.2f} MB")
    print(f"int8 TFLite:             {ours:8.2f} ms/image  {size_q:6.2f} MB")
    print(f"int8/float: time {ours / base:.2f}x, size {size_q / size_f:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
