"""Run an exported TFLite detector on an image and draw its boxes: what the seed did on a Raspberry Pi.

    python -m sdk.edge model/model.tflite photo.jpg --labels model/label_map.csv --out boxes.jpg
    python -m container.edge ...     (the same, inside the TensorFlow image)

This module lives on the image side because the TF image runs each TFLite export once with it before the
export counts (``container/tfod/export.py``), and the images never import the SDK; ``sdk.edge`` re-exports it,
so the SDK and a device use the very same code.

It needs only NumPy, Pillow and the LiteRT interpreter (``pip install ai-edge-litert``; on a Pi
``tflite-runtime`` works too), so this one file can be copied to the device. The model is the
TensorFlow image's ``model.tflite`` / ``model_float.tflite`` / ``model_int8.tflite``: a [1, H, W, 3]
RGB input normalized as Model Garden trains it (``(pixel - mean) / std``, ImageNet's mean and std:
:func:`normalize`; ``--no-normalize`` for a model that takes raw 0-255 pixels), and TFLite's detection
post-processing outputs ``detection_boxes`` ([ymin, xmin, ymax, xmax] in input pixels),
``detection_classes`` (1 = first label), ``detection_scores`` and ``num_detections``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # official.vision.ops.preprocess_ops
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

__all__ = ["Detection", "detect", "draw", "main", "normalize", "open_interpreter", "read_labels", "run"]


@dataclass(frozen=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels


def _litert() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter  # older Raspberry Pi OS images
        except ImportError:
            raise SystemExit("the LiteRT interpreter is not installed: pip install ai-edge-litert") from None
    return interpreter


def open_interpreter(path: str | Path, *, xnnpack: bool | None = None, threads: int | None = None) -> Any:
    """A signature runner for the model. LiteRT's XNNPACK delegate (its fast path) is used for float models;
    a quantized model (int8 tensors anywhere, even behind a float input, as Model Garden's ``int8`` export)
    runs without it unless ``xnnpack=True``: XNNPACK corrupts the heap on Model Garden's int8 detection
    post-processing (``free(): double free``, SIGABRT, seen with LiteRT 2.3.0)."""
    litert = _litert()
    path = str(path)
    plain = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if xnnpack is None:
        probe = litert.Interpreter(model_path=path, experimental_op_resolver_type=plain)
        xnnpack = not any(getattr(t["dtype"], "__name__", str(t["dtype"])) in ("int8", "uint8")
                          for t in probe.get_tensor_details())
    resolver = litert.OpResolverType.AUTO if xnnpack else plain
    return litert.Interpreter(model_path=path, num_threads=threads,
                              experimental_op_resolver_type=resolver).get_signature_runner()


def normalize(pixels: Any) -> Any:
    """0-255 RGB pixels as Model Garden's models see them: ``(pixel - mean) / std``, float32."""
    import numpy as np

    mean, std = np.asarray(MEAN_RGB, np.float32), np.asarray(STDDEV_RGB, np.float32)
    return ((np.asarray(pixels, np.float32) - mean) / std).astype(np.float32)


def run(runner: Any, pixels: Any) -> dict[str, Any]:
    """Run once on ``pixels`` (a [1, H, W, 3] array, as the model takes it), quantizing the input if it wants."""
    import numpy as np

    ((name, detail),) = runner.get_input_details().items()
    if detail["dtype"] != pixels.dtype:
        scale, zero = detail.get("quantization", (0.0, 0))
        if scale:
            info = np.iinfo(detail["dtype"])
            pixels = np.clip(np.round(pixels / scale + zero), info.min, info.max)
        pixels = pixels.astype(detail["dtype"])
    return runner(**{name: pixels})


def read_labels(path: str | Path | None) -> list[str]:
    """Class names from the image's label_map.csv (``id,name``), or a file of one name per line."""
    if path is None:
        return []
    names: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        cid, sep, name = line.partition(",")
        if line.strip():
            names[int(cid) if sep else n] = (name if sep else line).strip()
    return [names[i] for i in sorted(names)]


def detect(runner: Any, image: Any, labels: list[str], threshold: float = 0.3, *,
           normalized: bool = True) -> list[Detection]:
    """Detections in ``image`` (a PIL image) at or above ``threshold``, in its own pixel coordinates."""
    import numpy as np

    (detail,) = runner.get_input_details().values()
    height, width = int(detail["shape"][1]), int(detail["shape"][2])
    pixels = np.asarray(image.convert("RGB").resize((width, height)), np.float32)[np.newaxis]
    out = run(runner, normalize(pixels) if normalized else pixels)
    count = int(np.asarray(out["num_detections"]).reshape(-1)[0])
    sx, sy = image.width / width, image.height / height
    found = []
    for box, cls, score in zip(out["detection_boxes"][0][:count], out["detection_classes"][0][:count],
                               out["detection_scores"][0][:count], strict=False):
        if score < threshold:
            continue
        y1, x1, y2, x2 = (float(v) for v in box)
        cid = int(cls)
        label = labels[cid - 1] if 0 < cid <= len(labels) else str(cid)
        found.append(Detection(label, cid, float(score), (x1 * sx, y1 * sy, x2 * sx, y2 * sy)))
    return found


def draw(image: Any, detections: list[Detection]) -> Any:
    """A copy of ``image`` with each detection's box and ``label score`` drawn on it."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    for d in detections:
        pen.rectangle(d.box, outline=(255, 0, 0), width=2)
        pen.text((d.box[0] + 2, d.box[1] + 1), f"{d.label} {d.score:.2f}", fill=(255, 0, 0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk.edge", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a .tflite file exported by the TensorFlow image")
    parser.add_argument("images", nargs="+", help="images to run it on")
    parser.add_argument("--labels", help="label_map.csv from the model folder (default: beside the model)")
    parser.add_argument("--threshold", type=float, default=0.3, help="lowest score kept (default 0.3)")
    parser.add_argument("--out", help="where to write the drawn image (a folder when several images are given)")
    parser.add_argument("--no-normalize", action="store_true", help="the model takes raw 0-255 pixels")
    parser.add_argument("--no-xnnpack", action="store_true",
                        help="run without LiteRT's XNNPACK delegate (quantized models never use it)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: LiteRT's)")
    args = parser.parse_args(argv)
    from PIL import Image, UnidentifiedImageError

    model = Path(args.model)
    if not model.is_file():
        print(f"error: no model file {model}", file=sys.stderr)
        return 2
    beside = model.parent / "label_map.csv"
    labels_path = args.labels or (beside if beside.is_file() else None)
    labels = read_labels(labels_path)
    try:
        runner = open_interpreter(model, xnnpack=False if args.no_xnnpack else None, threads=args.threads)
    except ValueError as err:
        print(f"error: {model} is not a TFLite model LiteRT can load: {err}", file=sys.stderr)
        return 2
    for src in map(Path, args.images):
        try:
            image = Image.open(src)
            image.load()
        except (OSError, UnidentifiedImageError) as err:
            print(f"error: cannot read image {src}: {err}", file=sys.stderr)
            return 2
        found = detect(runner, image, labels, args.threshold, normalized=not args.no_normalize)
        print(f"{src}: {len(found)} detection(s)")
        for d in found:
            print(f"  {d.label} {d.score:.2f} [{', '.join(f'{v:.0f}' for v in d.box)}]")
        if args.out:
            target = Path(args.out)
            if len(args.images) > 1 or target.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                target = target / f"{src.stem}_boxes.jpg"
            draw(image, found).save(target)
            print(f"  drawn to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
