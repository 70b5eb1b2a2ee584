"""The main job, locally: generate a small shapes dataset and train YOLO on it as SageMaker would.

    python examples/train_local.py [--out demo-output] [--epochs 15]

No AWS, no downloads. Trains yolo11n from its YAML (random weights: nothing is fetched) on 160
generated 96 px images through the image's own `train` entry, then shows that the model learned:
the final mAP, and the trained model's boxes drawn on the validation images it never trained on.

Leaves demo-output/model.tar.gz (best.pt, last.pt, exports/best.onnx, metrics.json, ...) and
demo-output/predictions/*.jpg. About a minute or two on a laptop's CPU.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from container import local
from container.synthetic import make_shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    data = make_shapes(args.out / "shapes", train=160, val=32, size=96, seed=0)
    rc = local.main(["--train", str(data), "--out", str(args.out),
                     "--hp", "model=yolo11n.yaml", "--hp", f"epochs={args.epochs}", "--hp", "imgsz=96",
                     "--hp", "batch=16", "--hp", "workers=0", "--hp", "warmup_epochs=1", "--hp", "export=onnx"])
    if rc != 0:
        return rc
    return show(args.out / "opt_ml" / "model", data / "images" / "val", args.out / "predictions")


def show(model_dir: Path, images: Path, dest: Path) -> int:
    """The final metrics, and the model's detections drawn on the validation images."""
    from ultralytics import YOLO

    final = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))["final"]
    print("\nfinal evaluation of best.pt on the validation images: "
          + ", ".join(f"{k} {v:.3f}" for k, v in final.items()))
    dest.mkdir(parents=True, exist_ok=True)
    model = YOLO(str(model_dir / "best.pt"))
    found = 0
    sources = sorted(images.glob("*.jpg"))
    for result in model.predict([str(p) for p in sources], imgsz=96, conf=0.25, verbose=False):
        found += len(result.boxes)
        result.save(filename=str(dest / Path(result.path).name))
    print(f"{found} detections on {len(sources)} validation images (confidence >= 0.25); "
          f"drawn in {dest}/ — open a few to see what the model learned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
