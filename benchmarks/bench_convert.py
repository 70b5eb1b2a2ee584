"""Dataset conversion: ours against globox and a pandas-style script, and TFRecord writing against a raw copy.

    python benchmarks/bench_convert.py [--images 10000] [--boxes 3]

Generates N small distinct JPEGs with Pascal VOC XML beside them (sizes in the XML, 1-5 boxes each,
3 classes) and the same dataset as one COCO JSON. Each case runs in a fresh process; CPU time
(user + sys of that process and of the worker processes it waited for) is what is compared, wall time is
printed too.

* VOC -> YOLO txt: ours (`read` + write labels, as `convert` does without copying images), globox
  (`AnnotationSet.from_pascal_voc(...).save_yolo_darknet(...)`), a pandas-style script like the
  seed's (xml -> DataFrame -> groupby -> txt), and a bare ElementTree loop (the floor).
* COCO -> YOLO txt: ours, globox.
* -> TFRecord: ours (tf.Example per image, the image bytes inside; ~150 MB shards written by one process
  per CPU), ours in one process, against reading the same JPEG files and writing their bytes to one file
  in one process (the raw copy). Wall time is compared: the raw copy waits on the disk, ours on the CPU.
  10,000 images (the default) make 4 shards; under 150 MB of JPEGs is one shard, one process.

Goals (issue "Datasets in any format"): < 5 s CPU per 10,000 VOC files; TFRecord >= 0.7 of the raw copy.
Needs the bench extra: pip install -c constraints.txt -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["car", "person", "dog"]

# Our readers, then YOLO label lines written as container.annotations.writers.write_yolo writes them
WRITE_LABELS = """
ids = {n: i for i, n in enumerate(ann.names)}
OUT.mkdir(parents=True, exist_ok=True)
for item in ann.items:
    w, h = item.width, item.height
    # item.name is the image's path relative to the dataset root ("voc/img_00000.jpg" from the COCO file)
    (OUT / (item.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".txt")).write_text("".join(
        f"{ids[b.label]} {(b.xmin + b.xmax) / 2 / w:.6f} {(b.ymin + b.ymax) / 2 / h:.6f} "
        f"{(b.xmax - b.xmin) / w:.6f} {(b.ymax - b.ymin) / h:.6f}\\n" for b in item.boxes))
"""

CASES = {
    "voc_ours": """
from container.annotations.readers import read
ann = read(SRC / "voc", "voc", names=CLASSES)
""" + WRITE_LABELS,
    "voc_ours_full_convert": """
from container.annotations import convert
convert(SRC / "voc", "yolo", OUT, fmt="voc", names=CLASSES, verify_images=False, log=lambda s: None)
""",
    "voc_globox": """
from globox import AnnotationSet
AnnotationSet.from_pascal_voc(SRC / "voc").save_yolo_darknet(OUT, label_to_id={n: i for i, n in enumerate(CLASSES)})
""",
    "voc_pandas": """
import glob, xml.etree.ElementTree as ET
import pandas as pd
rows = []
for xml_file in glob.glob(str(SRC / "voc" / "*.xml")):
    tree = ET.parse(xml_file).getroot()
    for member in tree.findall("object"):
        rows.append((tree.find("filename").text, int(tree.find("size")[0].text), int(tree.find("size")[1].text),
                     member[0].text, int(float(member.find("bndbox")[0].text)),
                     int(float(member.find("bndbox")[1].text)),
                     int(float(member.find("bndbox")[2].text)), int(float(member.find("bndbox")[3].text))))
df = pd.DataFrame(rows, columns=["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
df["cls"] = df["class"].map({n: i for i, n in enumerate(CLASSES)})
df["cx"] = (df.xmin + df.xmax) / 2 / df.width
df["cy"] = (df.ymin + df.ymax) / 2 / df.height
df["w"] = (df.xmax - df.xmin) / df.width
df["h"] = (df.ymax - df.ymin) / df.height
OUT.mkdir(parents=True, exist_ok=True)
for filename, group in df.groupby("filename"):
    with open(OUT / (filename.rsplit(".", 1)[0] + ".txt"), "w") as f:
        for r in group.itertuples():
            f.write(f"{r.cls} {r.cx:.6f} {r.cy:.6f} {r.w:.6f} {r.h:.6f}\\n")
""",
    "voc_bare_elementtree": """
import os, xml.etree.ElementTree as ET
ids = {n: i for i, n in enumerate(CLASSES)}
OUT.mkdir(parents=True, exist_ok=True)
for name in os.listdir(SRC / "voc"):
    if not name.endswith(".xml"):
        continue
    root = ET.parse(SRC / "voc" / name).getroot()
    w, h = float(root.findtext("size/width")), float(root.findtext("size/height"))
    lines = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        lines.append(f"{ids[obj.findtext('name')]} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\\n")
    (OUT / (name[:-4] + ".txt")).write_text("".join(lines))
""",
    "coco_ours": """
from container.annotations.readers import read
ann = read(SRC / "coco.json", "coco")
""" + WRITE_LABELS,
    "coco_globox": """
from globox import AnnotationSet
AnnotationSet.from_coco(SRC / "coco.json").save_yolo_darknet(OUT, label_to_id={n: i for i, n in enumerate(CLASSES)})
""",
    "tfrecord_ours": """
from container.annotations.readers import read
from container.annotations.writers import write_tfrecord
ann = read(SRC / "voc", "voc", names=CLASSES)
t0 = time.perf_counter(); c0 = cpu()  # writing only, like the raw copy
write_tfrecord(ann, OUT, {"train": ann.items})
""",
    "tfrecord_ours_one_process": """
from container.annotations.readers import read
from container.annotations.writers import write_tfrecord
ann = read(SRC / "voc", "voc", names=CLASSES)
t0 = time.perf_counter(); c0 = cpu()
write_tfrecord(ann, OUT, {"train": ann.items}, workers=1)
""",
    "tfrecord_raw_copy": """
import os
OUT.mkdir(parents=True, exist_ok=True)
with open(OUT / "raw.bin", "wb") as out:
    for name in sorted(os.listdir(SRC / "voc")):
        if name.endswith(".jpg"):
            with open(SRC / "voc" / name, "rb") as f:
                out.write(f.read())
""",
}


def generate(root: Path, n: int, image_size: tuple[int, int], seed: int = 0) -> None:
    from PIL import Image

    rng = random.Random(seed)
    w0, h0 = image_size
    voc = root / "voc"
    voc.mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}
    for i in range(n):
        name = f"img_{i:05d}.jpg"
        if w0 <= 64:
            Image.new("RGB", (w0, h0), (i % 256, (i // 256) % 256, rng.randrange(256))).save(voc / name, quality=90)
        else:  # photo-like bytes: smooth noise, JPEG quality 85 (tens of kB, like a real 640x480 photo)
            noise = Image.effect_noise((w0 // 8, h0 // 8), 48 + i % 32).resize((w0, h0), Image.Resampling.BILINEAR)
            Image.merge("RGB", (noise, noise.rotate(90, expand=False), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
                        ).save(voc / name, quality=85)
        width, height = rng.choice([(640, 480), (1280, 720), (800, 600)])
        objects = []
        coco["images"].append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for _ in range(rng.randint(1, 5)):
            x1, y1 = rng.randrange(width - 50), rng.randrange(height - 50)
            x2, y2 = rng.randrange(x1 + 10, width), rng.randrange(y1 + 10, height)
            label = rng.choice(CLASSES)
            objects.append(f"<object><name>{label}</name><pose>Unspecified</pose><truncated>0</truncated>"
                           f"<difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                           f"<ymax>{y2}</ymax></bndbox></object>")
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1,
                                        "category_id": CLASSES.index(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        (voc / f"img_{i:05d}.xml").write_text(
            f"<annotation><folder>voc</folder><filename>{name}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{''.join(objects)}</annotation>")
    (root / "coco.json").write_text(json.dumps(coco))


def run_case(name: str, src: Path, out: Path) -> dict:
    prelude = (f"import sys, time, os; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path\n"
               f"SRC = Path({str(src)!r}); OUT = Path({str(out)!r}); CLASSES = {CLASSES!r}\n"
               "def cpu():  # this process and the worker processes it waited for\n"
               "    t = os.times(); return t.user + t.system + t.children_user + t.children_system\n"
               "t0 = time.perf_counter(); c0 = cpu()\n")
    code = prelude + CASES[name] + ("\nimport json; print(json.dumps({'cpu': cpu() - c0, "
                                    "'wall': time.perf_counter() - t0}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return {"cpu_s": round(timing["cpu"], 2), "wall_s": round(timing["wall"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--image-size", default="640x480", help="WxH of the generated JPEGs (48x32: tiny files)")
    args = parser.parse_args()
    image_size = tuple(int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        started = time.perf_counter()
        generate(src, args.images, image_size)
        jpeg_bytes = sum(p.stat().st_size for p in (src / "voc").glob("*.jpg"))
        print(f"generated {args.images} images + VOC XML + COCO JSON in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        results = {}
        for name in CASES:
            results[name] = run_case(name, src, Path(tmp) / "out" / name)
            print(f"{name}: {results[name]}", file=sys.stderr)
        for _ in range(2):  # the TFRecord cases are short and I/O-bound: alternate, keep the best of 3
            for name in ("tfrecord_raw_copy", "tfrecord_ours", "tfrecord_ours_one_process"):
                again = run_case(name, src, Path(tmp) / "out" / name)
                if again.get("wall_s", 1e9) < results[name].get("wall_s", 1e9):
                    results[name] = again
        print(f"tfrecord, best of 3: {results['tfrecord_ours']} (one process: {results['tfrecord_ours_one_process']}) "
              f"vs {results['tfrecord_raw_copy']}", file=sys.stderr)
        shards = len(list((Path(tmp) / "out" / "tfrecord_ours").glob("train-*.tfrecord")))
        labels = {n: len(list((Path(tmp) / "out" / n).rglob("*.txt"))) for n in CASES if n.startswith(("voc", "coco"))}
    cpu = {k: v.get("cpu_s") for k, v in results.items()}
    ratio = {}
    if cpu.get("voc_globox"):
        ratio["voc_globox_over_ours"] = round(cpu["voc_globox"] / cpu["voc_ours"], 1)
    if cpu.get("voc_pandas"):
        ratio["voc_pandas_over_ours"] = round(cpu["voc_pandas"] / cpu["voc_ours"], 1)
    if cpu.get("coco_globox"):
        ratio["coco_globox_over_ours"] = round(cpu["coco_globox"] / cpu["coco_ours"], 1)
    ratio["tfrecord_speed_vs_raw_copy"] = round(results["tfrecord_raw_copy"]["wall_s"]
                                                / results["tfrecord_ours"]["wall_s"], 2)
    ratio["tfrecord_one_process_speed_vs_raw_copy"] = round(results["tfrecord_raw_copy"]["wall_s"]
                                                            / results["tfrecord_ours_one_process"]["wall_s"], 2)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "images": args.images, "image_size": args.image_size, "tfrecord_shards": shards,
        "mean_jpeg_kb": round(jpeg_bytes / args.images / 1024, 1),
        "results": results, "label_files_written": labels, "ratios": ratio,
        "goals": {"voc_under_5s_cpu_per_10k": cpu["voc_ours"] * 10000 / args.images < 5,
                  "tfrecord_at_least_0.7_of_raw_copy": ratio["tfrecord_speed_vs_raw_copy"] >= 0.7},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
