"""How conversion grows with the dataset: seconds and peak memory at 10k, 100k, 1M images.

    python benchmarks/bench_scale.py                       # COCO 10k/100k/1M, VOC 10k/100k
    python benchmarks/bench_scale.py --coco 10000 --voc 10000 1000000

COCO: one JSON of N images and 3N boxes -> YOLO label files. VOC: N XML files -> YOLO label files. Both
with ``images=False`` (``--annotations-only``): the annotations are what is measured; no image file is
generated (a million JPEGs would measure the disk). Each conversion runs in its own process; its peak
RSS is read from ``getrusage`` there. The baseline printed beside ours is ``json.load`` of the same COCO
file alone (what the converter did before it streamed): its memory is the number to beat.
Goal (issue 13): 1M COCO annotations -> YOLO labels under 2 minutes and under 2 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["car", "person", "dog"]

CONVERT = """
from container.annotations import convert
convert(SRC, "yolo", OUT, fmt=FMT, names=CLASSES, images=False, verify_images=False, log=lambda s: None)
"""
JSON_LOAD = """
import json
with open(SRC, encoding="utf-8") as fh:
    data = json.load(fh)
"""


def write_coco(path: Path, n: int, seed: int = 0) -> int:
    """COCO JSON with ``n`` images and 3n boxes, written in pieces (the generator must not need the memory
    the converter is measured on)."""
    rng = random.Random(seed)
    boxes = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"info": {"description": "bench_scale"}, "images": [')
        fh.write(",".join(json.dumps({"id": i + 1, "file_name": f"images/{i // 1000:04d}/{i:07d}.jpg",
                                      "width": 640, "height": 480}) for i in range(n)))
        fh.write('], "annotations": [')
        for start in range(0, n, 10000):
            parts = []
            for i in range(start, min(n, start + 10000)):
                for _ in range(3):
                    boxes += 1
                    x, y = rng.randrange(600), rng.randrange(440)
                    parts.append(json.dumps({"id": boxes, "image_id": i + 1, "category_id": rng.randrange(3) + 1,
                                             "bbox": [x, y, rng.randrange(5, 40), rng.randrange(5, 40)],
                                             "area": 100.0, "iscrowd": 0}))
            fh.write(("," if start else "") + ",".join(parts))
        fh.write('], "categories": ' + json.dumps([{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]) + "}")
    return boxes


def write_voc(folder: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        sub = folder / f"{i // 10000:03d}"
        if i % 10000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        objects = "".join(
            f"<object><name>{rng.choice(CLASSES)}</name><difficult>0</difficult><bndbox><xmin>{x}</xmin>"
            f"<ymin>{y}</ymin><xmax>{x + 30}</xmax><ymax>{y + 20}</ymax></bndbox></object>"
            for x, y in ((rng.randrange(600), rng.randrange(450)) for _ in range(3)))
        (sub / f"{i:07d}.xml").write_text(
            f"<annotation><filename>{i:07d}.jpg</filename><size><width>640</width><height>480</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def measure(code: str, src: Path, out: Path, fmt: str) -> dict:
    prelude = (f"import sys, time, resource; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path\n"
               f"SRC = Path({str(src)!r}); OUT = Path({str(out)!r}); FMT = {fmt!r}; CLASSES = {CLASSES!r}\n"
               "t0 = time.perf_counter(); c0 = time.process_time()\n")
    tail = ("\nimport json; print(json.dumps({'s': time.perf_counter() - t0, 'cpu': time.process_time() - c0, "
            "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    result = subprocess.run([sys.executable, "-c", prelude + code + tail], capture_output=True, text=True, check=False)
    if result.returncode:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    found = json.loads(result.stdout.strip().splitlines()[-1])
    # cpu_seconds beside wall seconds: on a shared machine the wall clock measures the neighbours too
    return {"seconds": round(found["s"], 1), "cpu_seconds": round(found["cpu"], 1),
            "peak_rss_mb": round(found["rss_mb"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coco", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--voc", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--tmp", default=None, help="scratch folder (default: the system's)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.coco:
            src = Path(tmp) / f"coco-{n}.json"
            started = time.perf_counter()
            boxes = write_coco(src, n)
            print(f"generated COCO {n} images, {boxes} boxes, {src.stat().st_size / 2**20:.0f} MB in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
            ours = measure(CONVERT, src, Path(tmp) / "out", "coco")
            written = sum(len(files) for _, _, files in os.walk(Path(tmp) / "out" / "labels"))
            baseline = measure(JSON_LOAD, src, Path(tmp) / "none", "coco")
            rows.append({"format": "coco", "images": n, "boxes": boxes, "ours": ours,
                         "json_load_alone": baseline, "label_files": written})
            print(json.dumps(rows[-1]), file=sys.stderr)
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            src.unlink()
        for n in args.voc:
            src = Path(tmp) / f"voc-{n}"
            started = time.perf_counter()
            write_voc(src, n)
            print(f"generated VOC {n} files in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            ours = measure(CONVERT, src, Path(tmp) / "out", "voc")
            written = sum(len(files) for _, _, files in os.walk(Path(tmp) / "out" / "labels"))
            rows.append({"format": "voc", "images": n, "boxes": 3 * n, "ours": ours, "label_files": written})
            print(json.dumps(rows[-1]), file=sys.stderr)
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            shutil.rmtree(src, ignore_errors=True)
    growth = {}
    for fmt in ("coco", "voc"):
        done = [r for r in rows if r["format"] == fmt and "seconds" in r["ours"]]
        if len(done) >= 2:
            a, b = done[0], done[-1]
            growth[fmt] = {"images_ratio": b["images"] / a["images"],
                           "seconds_ratio": round(b["ours"]["seconds"] / max(a["ours"]["seconds"], 0.01), 1)}
    million = next((r for r in rows if r["format"] == "coco" and r["images"] == 1_000_000 and "seconds" in r["ours"]),
                   None)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": [round(v, 1) for v in os.getloadavg()],  # a shared machine: read the rows with it
        "rows": rows, "growth": growth,
        "goal_1M_coco_under_120s_and_2GB": None if million is None else
        million["ours"]["seconds"] < 120 and million["ours"]["peak_rss_mb"] < 2048,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
