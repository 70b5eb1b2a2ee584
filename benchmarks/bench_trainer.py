"""Our YOLO trainer against plain ultralytics: same data, same arguments, one run.

    python benchmarks/bench_trainer.py [--epochs 3] [--images 64] [--imgsz 128] [--repeats 1]

Baseline: `YOLO(model).train(...)` in a fresh process (what a hand-made script does).
Ours: `python -m container train` on an /opt/ml tree (what the image does).
Throughput: training images per second over the epochs, from ultralytics' own results.csv `time`
column (training and validation, no start-up). Start-up: process wall time minus that.
Goals (issue "The spine"): throughput ratio >= 0.98, start-up <= 3 s extra.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from container.local import TRAIN_COMMAND, build_tree, train_environ
from container.synthetic import make_shapes


def train_seconds(results_csv: Path) -> float:
    rows = list(csv.DictReader(results_csv.open()))
    return float(rows[-1]["time"])


def run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="", help="'' = ultralytics' choice, 'cpu', '0', ...")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    data = make_shapes(work / "data", train=args.images, val=max(4, args.images // 4), size=args.imgsz)
    (work / "plain.yaml").write_text(json.dumps({"path": str(data), "train": "images/train", "val": "images/val",
                                                 "names": {0: "rectangle", 1: "ellipse"}}))
    common = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "workers": 0, "plots": False,
              "seed": 0, "deterministic": True, **({"device": args.device} if args.device else {})}
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "PYTHONPATH": str(ROOT)}
    results = {"plain": [], "ours": []}
    for r in range(args.repeats):
        plain_dir = work / f"plain{r}"
        code = (f"from ultralytics import YOLO; YOLO('yolo11n.yaml').train(data={str(work / 'plain.yaml')!r}, "
                f"project={str(work)!r}, name='plain{r}', exist_ok=True, **{common!r})")
        wall = run([sys.executable, "-c", code], env)
        results["plain"].append((wall, train_seconds(plain_dir / "results.csv")))

        base = build_tree(work / f"ours{r}" / "opt_ml", {"train": data},
                          {"model": "yolo11n.yaml", "progress_interval": "0", **{k: str(v) for k, v in common.items()}})
        wall = run(list(TRAIN_COMMAND), train_environ(base, env=env))
        results["ours"].append((wall, train_seconds(base / "model" / "results.csv")))

    n_img = args.images * args.epochs
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"data: {args.images} train images {args.imgsz}px, {args.epochs} epochs, batch {args.batch}, "
          f"{args.repeats} repeat(s)")
    summary = {}
    for name, runs in results.items():
        wall = min(w for w, _ in runs)
        train = min(t for _, t in runs)
        summary[name] = (wall, train, n_img / train, wall - train)
        print(f"{name:>6}: wall {wall:6.1f} s  train {train:6.1f} s  {n_img / train:7.1f} img/s  "
              f"start-up+teardown {wall - train:5.1f} s")
    ratio = summary["ours"][2] / summary["plain"][2]
    extra = summary["ours"][3] - summary["plain"][3]
    print(f"throughput ratio ours/plain: {ratio:.3f} (goal >= 0.98)")
    print(f"start-up difference ours-plain: {extra:+.1f} s (goal <= 3 s; ours includes the dataset check and "
          "the model folder)")


if __name__ == "__main__":
    main()
