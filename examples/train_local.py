"""The main job, locally: generate a small shapes dataset and train YOLO on it as SageMaker would.

    python examples/train_local.py [--out demo-output] [--epochs 15]

No AWS, no downloads. Trains yolo11n from its YAML (random weights: nothing is fetched) on 160
generated 96 px images through the image's own `train` entry, then shows that the model learned:
the final mAP, and the trained model's boxes drawn on the validation images it never trained on.

Leaves demo-output/model.tar.gz (best.pt, last.pt, exports/best.onnx, metrics.json, ...) and
demo-output/predictions/*.jpg (drawn 480 px wide, each box's label whole). About a minute or two on a
laptop's CPU.
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


SHOWN_PX = 480  # the demo's 96 px images drawn at this size: a box's label needs room to be read


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
        boxes = [(tuple(map(float, xyxy)), result.names[int(c)], float(p))
                 for xyxy, c, p in zip(result.boxes.xyxy.tolist(), result.boxes.cls.tolist(),
                                       result.boxes.conf.tolist(), strict=True)]
        draw(Path(result.path), boxes, dest / Path(result.path).name)
    print(f"{found} detections on {len(sources)} validation images (confidence >= 0.25); "
          f"drawn {SHOWN_PX} px wide in {dest}/ — open a few to see what the model learned")
    return 0


def draw(image: Path, boxes: list[tuple[tuple[float, float, float, float], str, float]], dest: Path,
         width: int = SHOWN_PX) -> list[tuple[int, int, int, int]]:
    """``image`` enlarged to ``width`` px with each box and its ``label score`` drawn whole inside the picture
    (above the box where there is room, else inside it); returns the label rectangles drawn."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.open(image).convert("RGB")
    scale = width / picture.width
    picture = picture.resize((width, round(picture.height * scale)), Image.Resampling.LANCZOS)
    canvas = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, width // 30))
    labels = []
    for (x0, y0, x1, y1), name, score in boxes:
        box = [round(v * scale) for v in (x0, y0, x1, y1)]
        canvas.rectangle(box, outline=(255, 40, 40), width=max(2, width // 160))
        text = f"{name} {score:.2f}"
        left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
        w, h = right - left + 6, bottom - top + 4
        x = min(max(box[0], 0), max(picture.width - w, 0))
        y = box[1] - h if box[1] - h >= 0 else min(max(box[1], 0), max(picture.height - h, 0))
        canvas.rectangle([x, y, x + w, y + h], fill=(255, 40, 40))
        canvas.text((x + 3 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
        labels.append((x, y, x + w, y + h))
    picture.save(dest)
    return labels


if __name__ == "__main__":
    sys.exit(main())
