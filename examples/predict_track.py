"""Seeds 000 and 003: run a trained model on images and a video, and track objects across frames.

    python examples/predict_track.py [--model demo-output/model]    # trains one here first if none is given
    python -m sdk predict MODEL VIDEO --track                          # the same from a shell

Writes annotated images, an annotated video and detections.json (boxes, scores, track ids).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from container import local
from container.synthetic import make_shapes
from sdk.predict import predict


def panning(scene: Path, path: Path, frames: int = 48) -> Path:
    """A video of a scene panning 2 px per frame: every object in it moves."""
    image = cv2.imread(str(scene))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, image.shape[1::-1])
    for i in range(frames):
        writer.write(np.roll(image, 2 * i, axis=1))
    writer.release()
    return path


# ByteTrack with thresholds for a model trained for a minute (its scores are low); keep ultralytics'
# defaults (tracker="bytetrack") for a model trained properly.
LENIENT = """tracker_type: bytetrack
track_high_thresh: 0.05
track_low_thresh: 0.01
new_track_thresh: 0.05
track_buffer: 30
match_thresh: 0.8
fuse_score: false
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a model folder (default: train one here)")
    parser.add_argument("--out", type=Path, default=Path("demo-output") / "predict")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_shapes(args.out / "shapes", train=64, val=8, size=128, seed=1)
    model = args.model
    if model is None:
        code = local.main(["--train", str(data), "--out", str(args.out / "run"), "--hp", "model=yolo11n.yaml",
                           "--hp", f"epochs={args.epochs}", "--hp", "imgsz=128", "--hp", "batch=16",
                           "--hp", "workers=0", "--hp", "plots=false"])
        if code:
            return code
        model = args.out / "run" / "opt_ml" / "model"
    images = predict(model, data / "images" / "val", out=args.out / "images", conf=0.1)
    boxes = sum(len(f['detections']) for f in images.frames)
    print(f"{len(images.frames)} images: {boxes} boxes -> {images.json_path}")
    video = panning(min((data / "images" / "val").iterdir()), args.out / "panning.avi")
    tracker = args.out / "lenient_bytetrack.yaml"
    tracker.write_text(LENIENT)
    tracked = predict(model, video, out=args.out / "video", track=True, tracker=str(tracker), conf=0.05)
    print(json.dumps({"video": str(tracked.outputs[0]), "frames": len(tracked.frames),
                      "tracks": tracked.tracks}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
