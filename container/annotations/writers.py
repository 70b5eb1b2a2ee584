"""Writers: a YOLO tree, COCO JSON, TFRecords (TF Object Detection keys) and label maps.

Ids: YOLO classes are 0-based; COCO category ids, TFRecord ``image/object/class/label`` and label
maps are 1-based (0 is the background in the TF Object Detection convention). Every writer takes
``images=False`` to write the annotations alone (the images stay where they are, e.g. in S3), except
TFRecord, which holds the image bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import yaml

from container.annotations.labelmap import write_label_map
from container.annotations.tfrecord import od_example_parts, write_records
from container.annotations.types import Annotations, Item
from container.failure import UserError

Progress = Callable[[int], None]


def _noop(_: int) -> None:
    pass


def _size(item: Item) -> tuple[int, int]:
    if item.width and item.height:
        return item.width, item.height
    from PIL import Image

    with Image.open(item.path) as im:
        item.width, item.height = im.size
    return item.width, item.height


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _unique_names(items: list[Item], shard: tuple[int, int] | None = None) -> list[str]:
    """A flat file name per image: its own, prefixed with its folders only where names collide
    (``cam1/0001.jpg`` and ``cam2/0001.jpg`` become ``cam1__0001.jpg`` and ``cam2__0001.jpg``).
    String operations only: a million Path objects cost seconds. A shard of a conversion run on several
    machines cannot see the others' names: there every name keeps its folders."""
    if shard is not None:
        return [item.name.replace("\\", "/").replace("/", "__").lstrip("._") for item in items]
    bases = [item.name.replace("\\", "/").rsplit("/", 1)[-1] for item in items]
    counts = Counter(bases)
    return [base if counts[base] == 1 else item.name.replace("\\", "/").replace("/", "__").lstrip("._")
            for item, base in zip(items, bases, strict=False)]


def _host(shard: tuple[int, int] | None) -> str:
    """``-host1of4`` in the names of single files a shard writes, so shards never overwrite each other."""
    return f"-host{shard[0]}of{shard[1]}" if shard is not None else ""


def _link_images(folder: Path, items: list[Item], images: bool = True,
                 shard: tuple[int, int] | None = None) -> list[str]:
    """Hard-link (else copy) each image into ``folder`` under a flat unique name; the names, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = _unique_names(items, shard)
    if not images:
        return names
    for item, name in zip(items, names, strict=False):
        if not (folder / name).exists():
            _link(item.path, folder / name)
    return names


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _write_small(path: str, data: bytes) -> None:
    """One small file (a YOLO label: a million of them at scale) with three system calls and no Python file
    object. Threads writing them did not help here (benchmarks/bench_scale.py: creating a file is kernel time,
    and two cores are busy with it and the formatting already)."""
    fd = os.open(path, _CREATE, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_yolo(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
               images: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """``out/images/<split>/``, ``out/labels/<split>/`` and ``out/data.yaml``; images hard-linked."""
    ids = {name: i for i, name in enumerate(ann.names)}
    line = "%d %.6f %.6f %.6f %.6f\n"
    for split, items in splits.items():
        labels = out / "labels" / split
        labels.mkdir(parents=True, exist_ok=True)
        folder = str(labels)  # plain strings in the loop: it runs a million times
        for item, name in zip(items, _link_images(out / "images" / split, items, images, shard), strict=False):
            width, height = _size(item)
            text = "".join([line % (ids[b.label], (b.xmin + b.xmax) / 2 / width, (b.ymin + b.ymax) / 2 / height,
                                    (b.xmax - b.xmin) / width, (b.ymax - b.ymin) / height) for b in item.boxes])
            _write_small(f"{folder}/{name.rsplit('.', 1)[0]}.txt", text.encode())
            progress(1)
    data = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(ann.names),
            "names": dict(enumerate(ann.names))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def coco_dict(ann: Annotations, items: list[Item], *, progress: Progress = _noop) -> dict:
    cats = [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(ann.names)]
    ids = {n: i + 1 for i, n in enumerate(ann.names)}
    images, annotations = [], []
    for image_id, (item, name) in enumerate(zip(items, _unique_names(items), strict=False), 1):
        width, height = _size(item)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for b in item.boxes:
            w, h = b.xmax - b.xmin, b.ymax - b.ymin
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[b.label],
                                "bbox": [round(b.xmin, 3), round(b.ymin, 3), round(w, 3), round(h, 3)],
                                "area": round(w * h, 3), "iscrowd": int(b.crowd)})
        progress(1)
    return {"images": images, "annotations": annotations, "categories": cats}


def write_coco(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
               images: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """``out/<split>.json`` and ``out/images/<split>/`` (hard links) per split."""
    for split, items in splits.items():
        _link_images(out / "images" / split, items, images, shard)
        (out / f"{split}{_host(shard)}.json").write_text(json.dumps(coco_dict(ann, items, progress=progress)),
                                                        encoding="utf-8")
    return out


def tf_example(item: Item, ids: Mapping[str, int], source_id: str, filename: str,
               data: bytes) -> tuple[list[bytes], int]:
    """The record of ``item``; ``data``: its image's bytes (read ahead: :func:`_read_ahead`)."""
    width, height = _size(item)
    boxes = item.boxes

    def clip(v: float) -> float:
        return v if 0.0 <= v <= 1.0 else 1.0 if v > 1.0 else 0.0  # NaN: 0, as min(1, max(0, v)) gave

    return od_example_parts(
        encoded=data,
        fmt=b"png" if item.path.suffix.lower() == ".png" else b"jpeg",
        filename=filename.encode(), source_id=source_id.encode(), height=height, width=width,
        xmin=[clip(b.xmin / width) for b in boxes], xmax=[clip(b.xmax / width) for b in boxes],
        ymin=[clip(b.ymin / height) for b in boxes], ymax=[clip(b.ymax / height) for b in boxes],
        labels=[ids[b.label] for b in boxes], texts=[b.label.encode() for b in boxes], areas=[b.area for b in boxes],
        crowd=[int(b.crowd) for b in boxes])


def _read_all(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def _read_ahead(pool: ThreadPoolExecutor, items: list[Item], chunk: int = 32, window: int = 4) -> Iterator[bytes]:
    """The images' bytes, in order, read by ``pool`` up to ``window`` chunks ahead: reading a file is a system
    call that releases the GIL, so it runs on another core while this thread encodes and checksums records
    (``benchmarks/bench_convert.py``: TFRecords against a raw copy of the JPEGs). Memory: ``chunk * window``
    images at most."""
    pending: deque[Future[list[bytes]]] = deque()
    starts = iter(range(0, len(items), chunk))
    for start in starts:
        pending.append(pool.submit(_read_all, [item.path for item in items[start:start + chunk]]))
        if len(pending) >= window:
            break
    while pending:
        done = pending.popleft().result()
        start = next(starts, None)
        if start is not None:
            pending.append(pool.submit(_read_all, [item.path for item in items[start:start + chunk]]))
        yield from done


SHARD_BYTES = 150 * 1024 * 1024  # TFRecord shards of ~150 MB: big enough to stream, small enough to interleave


def shard_names(split: str, count: int, shard: tuple[int, int] | None = None) -> list[str]:
    """``train-00000-of-00003.tfrecord`` ...: the names Model Garden's input reader globs with ``train-*``;
    written by machine 2 of 4 of a processing job, ``train-host2of4-00000-of-00003.tfrecord``."""
    host = f"host{shard[0]}of{shard[1]}-" if shard is not None else ""
    return [f"{split}-{host}{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]


def write_tfrecord(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
                   images: bool = True, shard: tuple[int, int] | None = None,
                   shard_bytes: int = SHARD_BYTES) -> Path:
    """``out/<split>-NNNNN-of-MMMMM.tfrecord`` shards of ``shard_bytes`` (plus at most one image) each, and
    the label maps. One pass: a shard is closed when it is full, and the names get their count at the end."""
    if not images:
        raise UserError("TFRecords hold the image bytes: convert --to tfrecord needs the images")
    out.mkdir(parents=True, exist_ok=True)
    ids = {n: i + 1 for i, n in enumerate(ann.names)}
    source_id = 0
    with ThreadPoolExecutor(1, thread_name_prefix="tfrecord-read") as pool:
        for split, items in splits.items():
            partial: list[Path] = []
            fh, size = None, 0
            try:
                for item, name, data in zip(items, _unique_names(items, shard), _read_ahead(pool, items),
                                            strict=False):
                    if fh is None or size >= shard_bytes:
                        if fh is not None:
                            fh.close()
                        partial.append(out / f"{split}-{len(partial):05d}.tfrecord.partial")
                        fh, size = open(partial[-1], "wb", buffering=1 << 20), 0  # noqa: SIM115 - closed when full
                    source_id += 1
                    record = tf_example(item, ids, str(source_id), name, data)
                    write_records(fh, [record])
                    size += record[1] + 16
                    progress(1)
            finally:
                if fh is not None:
                    fh.close()
            if fh is None:  # an empty split still gets its (empty) shard: a reader's pattern must match something
                partial.append(out / f"{split}-{len(partial):05d}.tfrecord.partial")
                partial[-1].write_bytes(b"")
            for path, final in zip(partial, shard_names(split, len(partial), shard), strict=False):
                path.replace(out / final)
    write_label_map(ann.names, out)
    return out


def write_voc(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
              images: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """labelImg's layout: ``out/<split>/<image>`` with a Pascal VOC ``<image stem>.xml`` beside each."""
    from xml.sax.saxutils import escape

    for split, items in splits.items():
        for item, name in zip(items, _link_images(out / split, items, images, shard), strict=False):
            width, height = _size(item)
            objects = "".join(
                f"<object><name>{escape(b.label)}</name><difficult>{int(b.difficult)}</difficult>"
                f"<bndbox><xmin>{b.xmin:.1f}</xmin>"
                f"<ymin>{b.ymin:.1f}</ymin><xmax>{b.xmax:.1f}</xmax><ymax>{b.ymax:.1f}</ymax></bndbox></object>"
                for b in item.boxes)
            xml = (f"<annotation><folder>{split}</folder><filename>{escape(name)}</filename><size><width>{width}"
                   f"</width><height>{height}</height><depth>3</depth></size>{objects}</annotation>\n")
            (out / split / Path(name).with_suffix(".xml")).write_text(xml, encoding="utf-8")
            progress(1)
    return out


def write_csv(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
              images: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """The seed's ``filename,width,height,class,xmin,ymin,xmax,ymax``: ``out/<split>_labels.csv`` + images."""
    import csv

    for split, items in splits.items():
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{split}{_host(shard)}_labels.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
            for item, name in zip(items, _link_images(out / split, items, images, shard), strict=False):
                width, height = _size(item)
                for b in item.boxes:
                    writer.writerow([name, width, height, b.label, f"{b.xmin:.1f}", f"{b.ymin:.1f}",
                                     f"{b.xmax:.1f}", f"{b.ymax:.1f}"])
                progress(1)
    return out


def write_groundtruth(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *,
                      progress: Progress = _noop, images: bool = True, shard: tuple[int, int] | None = None,
                      job: str = "labels",
                      bucket: str = "bucket") -> Path:
    """A Ground Truth bounding-box output manifest per split (``out/<split>.manifest``) + images."""
    class_map = {str(i): n for i, n in enumerate(ann.names)}
    ids = {n: i for i, n in enumerate(ann.names)}
    for split, items in splits.items():
        lines = []
        for item, name in zip(items, _link_images(out / split, items, images, shard), strict=False):
            width, height = _size(item)
            lines.append(json.dumps({
                "source-ref": f"s3://{bucket}/{split}/{name}",
                job: {"image_size": [{"width": width, "height": height, "depth": 3}],
                      "annotations": [{"class_id": ids[b.label], "left": round(b.xmin), "top": round(b.ymin),
                                       "width": round(b.xmax - b.xmin), "height": round(b.ymax - b.ymin)}
                                      for b in item.boxes]},
                f"{job}-metadata": {"objects": [{"confidence": 0} for _ in item.boxes], "class-map": class_map,
                                    "type": "groundtruth/object-detection", "human-annotated": "yes",
                                    "job-name": f"labeling-job/{job}"},
            }))
            progress(1)
        (out / f"{split}{_host(shard)}.manifest").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


WRITERS = {"yolo": write_yolo, "coco": write_coco, "tfrecord": write_tfrecord, "voc": write_voc, "csv": write_csv,
           "groundtruth": write_groundtruth}
