"""Decode once at the size training needs: small copies of the large images, in scratch space.

Why: ultralytics' ``BaseDataset.load_image`` decodes an image at full size every time it is drawn
(every epoch), then scales its long side to ``imgsz`` (``cv2.INTER_LINEAR``). A 12-megapixel JPEG
costs about 100 ms of CPU to decode for a 640-px training image; with few CPUs per GPU that decode
is what the GPU waits on (issue 17, docs/input-pipeline.md).

What :func:`apply` does, before the first epoch: every listed image whose long side is at least
``MIN_RATIO`` x imgsz is decoded once - JPEGs with libjpeg's DCT scaling (OpenCV's
``IMREAD_REDUCED_COLOR_2/4/8``, the strongest reduction that still leaves at least the target size),
the same EXIF rotation OpenCV applies for ultralytics - and resized with ``cv2.INTER_AREA`` to exactly
the size ``load_image`` would give it (long side ``imgsz``, the other ``min(ceil(side * r), imgsz)``).
The copy is written losslessly into a tree under the cache folder that mirrors the listed paths, each
label file linked beside its copy (ultralytics' ``/images/`` -> ``/labels/`` rule), and the data YAML's
``train``/``val`` lists are pointed at that tree. ultralytics then finds ``r == 1`` and resizes nothing:
same images, same sizes, same normalized boxes, the same augmentations; pixel values differ only as
INTER_AREA from a DCT-reduced decode differs from INTER_LINEAR from a full decode.

Format: BMP (decoding is a copy) when the whole cache fits on the disk, else PNG (lossless, about half
the size, slower to decode); images that fit in neither keep their originals. Nothing is written next
to the data: channels may be read-only.

Resumes: ``manifest.json`` maps each copy to a key of its source's content (size and the first and last
64 KiB, hashed), its target size and format; copies whose key matches are reused, others rebuilt.
The work runs in threads: OpenCV's decode and resize, file reads and hashing release the GIL, so
threads use every CPU without a process start-up or pickling per image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from PIL import Image

CACHE_VERSION = 1  # bump when the resizing changes: every copy is rebuilt
MIN_RATIO = 1.5  # long side / imgsz from which an image is cached; below, a copy saves little decode time
# Formats ultralytics' imread decodes with plain cv2.imdecode (TIFF, HEIC, AVIF take other paths): only
# these are cached, so a copy decodes exactly as ultralytics would decode the original.
CV2_SUFFIXES = frozenset({".jpg", ".jpeg", ".mpo", ".png", ".bmp", ".webp"})
REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
FORMATS = {"bmp": (".bmp", []), "png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])}  # PNG level 1: fast encode
FINGERPRINT_BYTES = 64 * 1024
RESERVE_MIN = 1 << 30  # bytes the cache leaves free on its disk: at least 1 GiB ...
RESERVE_FRACTION = 0.05  # ... or 5 % of the disk, for checkpoints and logs
PROGRESS_SECONDS = 10.0
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
SOURCES_KEY = "image_cache_sources"  # in a rewritten data YAML: the lists it listed before (ultralytics ignores it)
TREE = "tree"


@dataclass
class Item:
    """One listed image: where it is, how large, and where its copy goes."""

    source: Path
    size: tuple[int, int] = (0, 0)  # (width, height) as stored; the decoder may rotate it (EXIF)
    fingerprint: str = ""
    copy: Path | None = None  # None: read the original
    target: tuple[int, int] = (0, 0)
    key: str = ""
    bytes: int = 0


@dataclass
class Summary:
    """What :func:`apply` did, for the log, the benchmark and the tests."""

    images: int = 0
    cached: int = 0
    built: int = 0
    reused: int = 0
    over_budget: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    format: str = ""
    bytes: int = 0
    seconds: float = 0.0
    data_yaml: Path | None = None


# -- geometry --------------------------------------------------------------------------------------
def target_size(width: int, height: int, imgsz: int) -> tuple[int, int]:
    """(w, h) that ultralytics' ``load_image`` (rect_mode, long side) resizes a ``width x height`` image to."""
    r = imgsz / max(height, width)
    return min(math.ceil(width * r), imgsz), min(math.ceil(height * r), imgsz)


def reduction(width: int, height: int, target: tuple[int, int]) -> int:
    """The largest libjpeg scale denominator (8, 4, 2) whose output (ceil(side / f)) still covers ``target``."""
    long_t, short_t = max(target), min(target)
    long_s, short_s = max(width, height), min(width, height)
    for factor in (8, 4, 2):
        if math.ceil(long_s / factor) >= long_t and math.ceil(short_s / factor) >= short_t:
            return factor
    return 1


def encoded_size(fmt: str, width: int, height: int) -> int:
    """Bytes of the copy: exact for BMP (rows padded to 4 bytes), an upper bound for PNG (deflate of raw)."""
    raw = ((width * 3 + 3) // 4 * 4) * height
    return raw + 54 if fmt == "bmp" else raw + raw // 100 + 1024


# -- per image (run in threads) --------------------------------------------------------------------
def _probe(path: Path) -> tuple[tuple[int, int], str]:
    """Stored size and content fingerprint (size + first and last 64 KiB) of one image; raises if unreadable."""
    with Image.open(path) as im:
        size = im.size
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        length = os.fstat(fh.fileno()).st_size
        digest.update(str(length).encode())
        digest.update(fh.read(FINGERPRINT_BYTES))
        if length > 2 * FINGERPRINT_BYTES:
            fh.seek(-FINGERPRINT_BYTES, os.SEEK_END)
            digest.update(fh.read(FINGERPRINT_BYTES))
    return size, digest.hexdigest()


def _decode(data: np.ndarray, flags: int) -> np.ndarray:
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ValueError("OpenCV cannot decode it")
    return image


def decode_resized(path: Path, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """The image as ultralytics' imread would give it (BGR, EXIF-upright), resized to ``target`` (INTER_AREA).

    ``size`` and ``target`` are in stored orientation; when the decoder rotates the image (EXIF), the
    result is rotated too, as ultralytics would see it.
    """
    data = np.fromfile(path, np.uint8)
    is_jpeg = data[:3].tobytes() == b"\xff\xd8\xff"
    factor = reduction(*size, target) if is_jpeg else 1
    image = _decode(data, REDUCED[factor] if factor > 1 else cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    tw, th = target
    if tw != th and (width >= height) != (tw >= th):  # the decoder applied an EXIF rotation of 90 degrees
        tw, th = th, tw
    if width < tw or height < th:  # a reduced decode smaller than expected: decode at full size instead
        image = _decode(data, cv2.IMREAD_COLOR)
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


def _build(item: Item, fmt: str) -> int:
    """Write the copy of one image (atomically); return its size in bytes."""
    assert item.copy is not None
    image = decode_resized(item.source, item.size, item.target)
    suffix, params = FORMATS[fmt]
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {suffix}")
    item.copy.parent.mkdir(parents=True, exist_ok=True)
    partial = item.copy.with_name(item.copy.name + f".partial-{os.getpid()}")
    encoded.tofile(partial)
    os.replace(partial, item.copy)
    return int(encoded.size)


# -- the dataset's lists ---------------------------------------------------------------------------
def _read_list(path: Path) -> list[Path]:
    """Image paths of an ultralytics ``*.txt`` list (relative entries are relative to the list's folder)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            p = Path(line)
            out.append(p if p.is_absolute() else (path.parent / p))
    return out


def _lists(data: dict[str, Any], root: Path) -> dict[str, Path]:
    """The splits whose value is one ``.txt`` list (what our dataset step writes); others are left alone.

    A YAML this module rewrote names the lists it replaced under ``SOURCES_KEY``: those are read again.
    """
    before = data.get(SOURCES_KEY)
    if not isinstance(before, dict):
        before = {}
    found = {}
    for split in SPLITS:
        value = before.get(split, data.get(split))
        if isinstance(value, str) and value.endswith(".txt"):
            path = Path(value) if Path(value).is_absolute() else root / value
            if path.is_file():
                found[split] = path
    return found


def _copy_path(source: Path, root: Path, tree: Path, suffix: str) -> Path:
    """The copy's place: the listed path's place under ``root`` re-rooted at ``tree``, new suffix."""
    try:
        rel = source.relative_to(root)
    except ValueError:
        rel = Path("abs", *source.parts[1:])
    return (tree / rel).with_suffix(suffix)


def _label_of(image: Path) -> Path:
    """ultralytics' own rule, so the copy's label sits where ultralytics will look for it."""
    from ultralytics.data.utils import img2label_paths

    return Path(img2label_paths([str(image)])[0])


def _link_label(source: Path, copy: Path) -> None:
    label = _label_of(source)
    if not label.exists():
        return  # a background image: no label file, no link
    link = _label_of(copy)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(label.resolve())


# -- the manifest ----------------------------------------------------------------------------------
def _load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """``{copy path: {"key": ..., "bytes": ...}}``; empty when missing, damaged or of another version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("copies"), dict):
        return {}
    return data["copies"]


def _save_manifest(path: Path, copies: dict[str, dict[str, Any]]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"version": CACHE_VERSION, "copies": copies}), encoding="utf-8")
    os.replace(partial, path)


def free_bytes(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the disk holding ``path``."""
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def _write_yaml(path: Path, data: dict[str, Any], lists: dict[str, str], sources: dict[str, str] | None = None) -> None:
    """The data YAML with these lists (atomically); ``sources``: the lists they stand for, if not themselves."""
    if not sources and SOURCES_KEY not in data:
        return  # never rewritten: nothing to restore
    data = {**data, **lists}
    data.pop(SOURCES_KEY, None)
    if sources:
        data[SOURCES_KEY] = sources
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(partial, path)


# -- the whole job ---------------------------------------------------------------------------------
def _parallel(fn: Callable[[Item], Any], items: Iterable[Item], threads: int, *,
              on_done: Callable[[Item, Future], bool], progress: Callable[[int], None]) -> None:
    """Run ``fn`` over ``items`` with a bounded number in flight; ``on_done`` False stops submitting."""
    pending: dict[Future, Item] = {}
    source = iter(items)
    done = 0
    last = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="image-cache") as pool:
        try:
            going = True
            while True:
                while going and len(pending) < 2 * threads:
                    item = next(source, None)
                    if item is None:
                        going = False
                        break
                    pending[pool.submit(fn, item)] = item
                if not pending:
                    break
                finished, _ = wait(pending, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    going = on_done(pending.pop(future), future) and going
                    done += 1
                if time.monotonic() - last >= PROGRESS_SECONDS:
                    progress(done)
                    last = time.monotonic()
        finally:  # a stop (SIGTERM raises here): nothing new starts, the few in flight finish
            for future in pending:
                future.cancel()


def apply(data_yaml: Path, *, imgsz: int, cache_dir: Path, threads: int, log: Callable[[str], None] = print,
          enabled: bool = True) -> Summary:
    """Cache the large images the data YAML lists and point it at the copies; see the module docstring.

    ``data_yaml``: ultralytics' data YAML whose ``train``/``val`` are ``*.txt`` lists (what the dataset step
    writes); it is rewritten in place, so a resumed run finds the same path. ``imgsz``: the size
    ultralytics trains at (after its own stride rounding). ``threads``: the CPUs to use.

    The steps: the images sized and fingerprinted, the format and disk budget chosen (copies reused or
    planned), the missing copies built, then the labels linked and the data YAML pointed at the copies.
    """
    summary = Summary(data_yaml=data_yaml)
    start = time.monotonic()
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    root = Path(data.get("path") or data_yaml.parent)
    manifest_path = cache_dir / MANIFEST
    lists = _lists(data, root)
    if not enabled:
        _write_yaml(data_yaml, data, {s: str(p) for s, p in lists.items()})
        log("image cache: off (hyperparameter image_cache=false); every epoch decodes the original images")
        return summary
    copies = _load_manifest(manifest_path)
    if not lists:
        log("image cache: the data YAML lists no *.txt image lists; images are read as they are")
        return summary
    listed = {split: _read_list(path) for split, path in lists.items()}
    items = {p: Item(source=p) for paths in listed.values() for p in paths}
    summary.images = len(items)
    threads = max(1, threads)

    _size_images(items, threads, log)
    large = [it for it in items.values() if max(it.size) >= MIN_RATIO * imgsz]
    if not large:
        _write_yaml(data_yaml, data, {s: str(p) for s, p in lists.items()})
        log(f"image cache: no image is {MIN_RATIO}x imgsz={imgsz} or larger; images are read as they are")
        return summary
    fmt, reserve = _choose_format(large, len(items), copies, cache_dir, imgsz, log)
    summary.format = fmt
    todo = _plan_copies(large, copies, root, cache_dir / TREE, fmt, summary)
    rate = _build_missing(todo, copies, fmt, reserve, cache_dir, manifest_path, imgsz, threads, summary, log)
    _point_at_copies(data_yaml, data, lists, listed, items, large, cache_dir)

    summary.cached = sum(it.copy is not None for it in large)
    summary.bytes = sum(it.bytes for it in large if it.copy is not None)
    summary.seconds = time.monotonic() - start
    _report(summary, len(items), imgsz, rate, cache_dir, log)
    return summary


def _size_images(items: dict[Path, Item], threads: int, log: Callable[[str], None]) -> None:
    """Sizes and fingerprints: headers and 128 KiB per image, in parallel; an unreadable image is sized (0, 0)."""
    def probe(item: Item) -> None:
        if item.source.suffix.lower() in CV2_SUFFIXES:
            item.size, item.fingerprint = _probe(item.source)

    def probed(item: Item, future: Future) -> bool:
        if future.exception() is not None:
            item.size = (0, 0)  # unreadable here: ultralytics' own check reports it
        return True

    _parallel(probe, items.values(), threads, on_done=probed, progress=lambda n: log(
        f"image cache: sizing images {n:,}/{len(items):,}"))


def _choose_format(large: list[Item], total: int, copies: dict[str, dict[str, Any]], cache_dir: Path, imgsz: int,
                   log: Callable[[str], None]) -> tuple[str, int]:
    """(format, bytes kept free): BMP when every large image's copy fits on the disk (the present copies' room
    counts), else PNG. Sets each large image's target size."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    held = sum(int(c.get("bytes", 0)) for c in copies.values())
    free, disk = free_bytes(cache_dir)
    reserve = max(RESERVE_MIN, int(RESERVE_FRACTION * disk))
    for it in large:
        it.target = target_size(*it.size, imgsz)
    need_bmp = sum(encoded_size("bmp", *it.target) for it in large)
    fmt = "bmp" if need_bmp <= free + held - reserve else "png"
    log(f"image cache: {len(large):,} of {total:,} images are {MIN_RATIO}x imgsz={imgsz} or larger; "
        f"as BMP they need {_mib(need_bmp)}; disk at {cache_dir}: {_mib(free)} free, {_mib(reserve)} kept free"
        + ("" if fmt == "bmp" else "; BMP does not fit: PNG (smaller, slower to decode)"))
    return fmt, reserve


def _plan_copies(large: list[Item], copies: dict[str, dict[str, Any]], root: Path, tree: Path, fmt: str,
                 summary: Summary) -> list[Item]:
    """Each large image's copy path and key; copies the manifest holds for the same key are reused, others (and
    copies no image needs now) removed. Returns the images whose copy is to be built."""
    suffix = FORMATS[fmt][0]
    taken: set[Path] = set()
    todo: list[Item] = []
    for it in large:
        copy = _copy_path(it.source, root, tree, suffix)
        if copy in taken:  # a.jpg and a.png side by side: the second keeps its original
            continue
        taken.add(copy)
        it.copy = copy
        it.key = f"{it.fingerprint}:{it.target[0]}x{it.target[1]}:{fmt}:v{CACHE_VERSION}"
        known = copies.get(str(copy))
        if known and known.get("key") == it.key and copy.is_file() and copy.stat().st_size == known.get("bytes"):
            it.bytes = int(known["bytes"])
            summary.reused += 1
        else:
            if copies.pop(str(copy), None) is not None:
                copy.unlink(missing_ok=True)  # another source, size or format: rebuilt below
            todo.append(it)
    for stale in [c for c in copies if Path(c) not in taken]:  # images no longer listed, another format
        Path(stale).unlink(missing_ok=True)
        del copies[stale]
    return todo


def _build_missing(todo: list[Item], copies: dict[str, dict[str, Any]], fmt: str, reserve: int, cache_dir: Path,
                   manifest_path: Path, imgsz: int, threads: int, summary: Summary,
                   log: Callable[[str], None]) -> float:
    """Build the copies in ``todo`` within the disk budget (those past it keep their originals), the manifest saved
    as they come and at the end (a stop keeps what is done). Returns the images built per second."""
    free, _ = free_bytes(cache_dir)
    room = free - reserve
    in_flight = 0
    written = 0
    build_start = time.monotonic()

    def admitted() -> Iterable[Item]:
        nonlocal in_flight
        for it in todo:
            estimate = encoded_size(fmt, *it.target)
            if written + in_flight + estimate > room:
                summary.over_budget += 1
                it.copy = None
                continue
            in_flight += estimate
            yield it

    def built(item: Item, future: Future) -> bool:
        nonlocal in_flight, written
        in_flight -= encoded_size(fmt, *item.target)
        error = future.exception()
        if error is not None:
            summary.failed[item.source.name] = f"{type(error).__name__}: {error}"
            item.copy = None
            return True
        item.bytes = future.result()
        written += item.bytes
        copies[str(item.copy)] = {"key": item.key, "bytes": item.bytes}
        summary.built += 1
        return True

    def progress(n: int) -> None:
        rate = n / max(time.monotonic() - build_start, 1e-9)
        left = (len(todo) - n) / rate if rate else float("nan")
        log(f"image cache: {n:,}/{len(todo):,} images decoded and resized ({n / max(len(todo), 1):.0%}), "
            f"{rate:.1f} images/s, about {left:.0f} s left")
        _save_manifest(manifest_path, copies)  # a stop after this keeps what is done

    if todo:
        log(f"image cache: decoding {len(todo):,} images once at {imgsz} px with {threads} threads"
            + (f" ({summary.reused:,} reused from an earlier run)" if summary.reused else ""))
    try:
        _parallel(lambda it: _build(it, fmt), admitted(), threads, on_done=built, progress=progress)
    finally:
        _save_manifest(manifest_path, copies)
    return summary.built / max(time.monotonic() - build_start, 1e-9)


def _point_at_copies(data_yaml: Path, data: dict[str, Any], lists: dict[str, Path], listed: dict[str, list[Path]],
                     items: dict[Path, Item], large: list[Item], cache_dir: Path) -> None:
    """Label links beside the copies, a list per split naming each copy (or its original), and the data YAML
    pointed at those lists (the lists they replace kept under ``SOURCES_KEY``)."""
    for it in large:
        if it.copy is not None:
            _link_label(it.source, it.copy)
    ours = {}
    for split in lists:
        ours[split] = str(cache_dir / f"{split}.txt")
        Path(ours[split]).write_text("".join(f"{items[p].copy or p}\n" for p in listed[split]), encoding="utf-8")
    _write_yaml(data_yaml, data, ours, sources={split: str(path) for split, path in lists.items()})


def _report(summary: Summary, total: int, imgsz: int, rate: float, cache_dir: Path,
            log: Callable[[str], None]) -> None:
    log(f"image cache: {summary.cached:,} of {total:,} images read from copies at {imgsz} px "
        f"({summary.built:,} built at {rate:.1f} images/s, {summary.reused:,} reused), {_mib(summary.bytes)} as "
        f"{summary.format.upper()} in {cache_dir}; {summary.seconds:.1f} s")
    if summary.over_budget:
        log(f"WARNING image cache: the disk holds no more; {summary.over_budget:,} large images are decoded at full "
            f"size every epoch (free space at {cache_dir}, or a larger volume, would cache them)")
    if summary.failed:
        examples = "; ".join(f"{k}: {v}" for k, v in list(summary.failed.items())[:3])
        log(f"WARNING image cache: {len(summary.failed)} image(s) not cached, read as they are ({examples})")


def training_imgsz(model: Any, kwargs: dict[str, Any]) -> int:
    """The image size ultralytics will train at: the job's (or a resumed checkpoint's, or the default), rounded
    up to the model's stride as ``BaseTrainer`` does (``check_imgsz(..., stride=gs, floor=gs, max_dim=1)``)."""
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.checks import check_imgsz

    imgsz = kwargs.get("imgsz")
    if imgsz is None and kwargs.get("resume"):
        imgsz = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz")
    if imgsz is None:
        imgsz = DEFAULT_CFG.imgsz
    stride = getattr(getattr(model, "model", None), "stride", None)
    gs = max(int(stride.max()) if stride is not None else 32, 32)
    return int(check_imgsz(imgsz, stride=gs, floor=gs, max_dim=1))
