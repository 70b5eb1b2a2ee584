"""Seed 004's comparison: train a few configurations, then rank them by mAP and speed, with a plot.

    python examples/leaderboard.py [--out demo-output/leaderboard]     # local mode: runs here
    python -m sdk leaderboard JOB JOB ...                               # SageMaker jobs

Writes leaderboard.csv, leaderboard.json and leaderboard.png (mAP50-95 against ms per image).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdk
from container.synthetic import make_shapes
from sdk.leaderboard import leaderboard


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output") / "leaderboard")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    data = make_shapes(args.out / "shapes", train=64, val=16, size=128, seed=1)
    jobs = []
    for model, imgsz in (("yolo11n.yaml", 96), ("yolo11n.yaml", 128), ("yolov8n.yaml", 96), ("yolov8n.yaml", 128)):
        job = sdk.launch_job(instance_type="local", image="yolo", train=data, logs=False,
                             base_job_name=f"lb-{model.split('.')[0]}-{imgsz}",
                             hyperparameters={"model": model, "epochs": args.epochs, "imgsz": imgsz, "batch": 16,
                                              "workers": 0, "plots": False})
        print(f"{job.name}: {job.status}")
        jobs.append(job.name)
    board = leaderboard(jobs, local=True, images=data / "images" / "val", out=args.out)
    print(board.text())
    print(f"\n{board.csv}\n{board.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
