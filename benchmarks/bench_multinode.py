"""Scaling across hosts: one host on one core against two hosts on one core each, the same global batch.

    python benchmarks/bench_multinode.py [--epochs 3] [--images 64] [--imgsz 128] [--batch 16]

Baseline: one `python -m container train` (one host, gloo not used) pinned to core 0 (`taskset -c 0`).
Ours: two `python -m container train` processes, hosts 127.0.0.1 and localhost on loopback, pinned to
cores 0 and 1, training one model together (torchrun + gloo), `batch` the same global batch.
Each process gets OMP_NUM_THREADS=1 so that a core is a core in both runs.
Throughput: training images per second from the leader's results.csv `time` column, epochs after the
first (warm-up and start-up excluded). Goal (issue 15): ratio >= 1.7.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from container.local import TRAIN_COMMAND, build_tree, train_environ
from container.synthetic import make_shapes


def images_per_second(results_csv: Path, images: int) -> float:
    times = [float(r["time"]) for r in csv.DictReader(results_csv.open())]
    return images * (len(times) - 1) / (times[-1] - times[0])


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core), *TRAIN_COMMAND]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs taskset and two cores")

    work = Path(tempfile.mkdtemp(prefix="bench-multinode-"))
    data = make_shapes(work / "data", train=args.images, val=max(4, args.images // 4), size=args.imgsz)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hps = {"model": "yolo11n.yaml", "epochs": str(args.epochs), "imgsz": str(args.imgsz), "batch": str(args.batch),
           "workers": "0", "plots": "false", "progress_interval": "0", "seed": "0", "dist_port": str(port)}
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    one = build_tree(work / "one", {"train": data}, hps)
    subprocess.run(pinned(0), env=train_environ(one, env=env), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    single = images_per_second(one / "model" / "results.csv", args.images)

    hosts = ("127.0.0.1", "localhost")
    bases = {h: build_tree(work / h, {"train": data}, hps, hosts=hosts, current_host=h, interface="lo") for h in hosts}
    procs = [subprocess.Popen(pinned(core), env=train_environ(bases[h], env=env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for core, h in enumerate(hosts)]
    if any(p.wait() for p in procs):
        sys.exit(f"the two-host run failed; trees in {work}")
    double = images_per_second(bases[hosts[0]] / "model" / "results.csv", args.images)

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"data: {args.images} train images {args.imgsz}px, {args.epochs} epochs, global batch {args.batch}")
    print(f"one host, one core:            {single:7.2f} images/s")
    print(f"two hosts, one core each:      {double:7.2f} images/s")
    print(f"ratio (goal >= 1.7):           {double / single:7.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
