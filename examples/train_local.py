"""The main job, locally: generate a small shapes dataset and train YOLO on it as SageMaker would.

    python examples/train_local.py [--out demo-output] [--epochs 3]

No AWS, no downloads. Leaves demo-output/model.tar.gz (best.pt, last.pt, best.onnx, metrics.json...).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from container import local
from container.synthetic import make_shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    data = make_shapes(args.out / "shapes", train=48, val=12, size=128, seed=0)
    return local.main(["--train", str(data), "--out", str(args.out),
                       "--hp", "model=yolo11n.yaml", "--hp", f"epochs={args.epochs}", "--hp", "imgsz=128",
                       "--hp", "batch=16", "--hp", "workers=0", "--hp", "export=onnx"])


if __name__ == "__main__":
    sys.exit(main())
