"""Writers: a YOLO tree, COCO JSON, TFRecords (TF Object Detection keys) and label maps.

Ids: YOLO classes are 0-based; COCO category ids, TFRecord ``image/object/class/label`` and label
maps are 1-based (0 is the background in the TF Object Detection convention). Every writer takes
``images=False`` to write the annotations alone (the images stay where they are, e.g. in S3), except
TFRecord, which holds the image bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import as_completed
from pathlib import Path
from signal import SIG_DFL

import yaml

from container.annotations.labelmap import write_label_map
from container.annotations.tfrecord import od_example_parts, write_records
from container.annotations.types import Annotations, Item
from container.annotations.upright import record_image, upright_size
from container.failure import UserError

Progress = Callable[[int], None]


def _noop(_: int) -> None:
    pass


def _size(item: Item) -> tuple[int, int]:
    if item.width and item.height:
        return item.width, item.height
    from PIL import Image

    with Image.open(item.file) as im:
        item.width, item.height = upright_size(im)
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
        return [_fit(item.name.replace("\\", "/").replace("/", "__").lstrip("._"), item.name) for item in items]
    bases = [item.name.replace("\\", "/").rsplit("/", 1)[-1] for item in items]
    counts = Counter(bases)
    return [_fit(base if counts[base] == 1 else item.name.replace("\\", "/").replace("/", "__").lstrip("._"),
                 item.name) for item, base in zip(items, bases, strict=False)]


NAME_MAX = 255  # bytes in one file name (ext4, xfs, overlayfs): a longer one is ENAMETOOLONG


def _fit(flat: str, key: str) -> str:
    """``flat`` when a file system can hold it; else its tail (suffix kept) after a hash of the image's ``key``:
    folders flattened into one name (``cam1__0001.jpg``) can pass 255 bytes where no single folder did."""
    if len(flat.encode("utf-8", "surrogateescape")) <= NAME_MAX:
        return flat
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
    tail = flat
    while len(tail.encode("utf-8", "surrogateescape")) > NAME_MAX - len(digest) - 2:
        tail = tail[1:]
    return f"{digest}__{tail}"


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
            _link(item.file, folder / name)
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
    images: list[dict] = []
    annotations: list[dict] = []
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


def _unit(values: list[float]) -> list[float]:
    """``values`` clipped to [0, 1] (NaN: 0, as ``min(1, max(0, v))`` gave); as they are when already inside,
    which the readers' checks make the rule: then three C calls, no Python per value."""
    total = sum(values)
    if total == total and (not values or (min(values) >= 0.0 and max(values) <= 1.0)):
        return values
    return [v if 0.0 <= v <= 1.0 else 1.0 if v > 1.0 else 0.0 for v in values]


def tf_example(item: Item, ids: Mapping[str, int], source_id: str, filename: str,
               data: bytes) -> tuple[list[bytes], int]:
    """The record of ``item``; ``data``: its image's bytes (re-encoded where TensorFlow would not see what the
    boxes are drawn on, :func:`upright.record_image`)."""
    width, height = _size(item)
    boxes = item.boxes
    data, fmt = record_image(data)
    return od_example_parts(
        encoded=data,
        fmt=fmt,
        filename=filename.encode(), source_id=source_id.encode(), height=height, width=width,
        xmin=_unit([b.xmin / width for b in boxes]), xmax=_unit([b.xmax / width for b in boxes]),
        ymin=_unit([b.ymin / height for b in boxes]), ymax=_unit([b.ymax / height for b in boxes]),
        labels=[ids[b.label] for b in boxes], texts=[b.label.encode() for b in boxes], areas=[b.area for b in boxes],
        crowd=[int(b.crowd) for b in boxes])


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    data = os.read(fd, size) if size else b""
    while size and (more := os.read(fd, 1 << 20)):  # a file that grew since: all of it
        data += more
    return data


def _image_bytes(paths: list[Path], ahead: int = 16) -> Iterator[bytes]:
    """The files' bytes, in order, one image in memory at a time. The next ``ahead`` files are opened early
    and the kernel is asked to read them (``posix_fadvise(WILLNEED)``), so a cold disk or a network mount
    reads ahead while this process encodes; no thread (bytes read on one thread and freed on another
    never reuse memory: every image then costs fresh pages, measured at 4x the read itself)."""
    opened: deque[tuple[int, Path]] = deque()
    pending = iter(paths)
    willneed = getattr(os, "POSIX_FADV_WILLNEED", None)

    def open_next() -> None:
        path = next(pending, None)
        if path is not None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                raise _vanished(path, e) from e
            opened.append((fd, path))
            if willneed is not None:
                os.posix_fadvise(fd, 0, 0, willneed)

    try:
        for _ in range(ahead):
            open_next()
        while opened:
            fd, path = opened.popleft()
            try:
                data = _read_fd(fd)
            except OSError as e:
                raise UserError(f"cannot read image {path}: {e.strerror}; replace it with an image file, or "
                                "remove it and its annotation") from e
            finally:
                os.close(fd)
            if not data:  # emptied since the check (or never checked: verify_images=False)
                raise UserError(f"image {path} is empty (0 bytes): replace it with the image, or remove it and its "
                                "annotation")
            open_next()
            yield data
    finally:
        for fd, _ in opened:
            os.close(fd)


def _vanished(path: Path, error: OSError) -> UserError:
    return UserError(f"cannot read image {path}: {error.strerror}; it was there when the conversion started: is "
                     "another program changing the dataset?")


SHARD_BYTES = 150 * 1024 * 1024  # TFRecord shards of ~150 MB: big enough to stream, small enough to interleave


def shard_names(split: str, count: int, shard: tuple[int, int] | None = None) -> list[str]:
    """``train-00000-of-00003.tfrecord`` ...: the names Model Garden's input reader globs with ``train-*``;
    written by machine 2 of 4 of a processing job, ``train-host2of4-00000-of-00003.tfrecord``."""
    host = f"host{shard[0]}of{shard[1]}-" if shard is not None else ""
    return [f"{split}-{host}{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]


def _shard_plan(items: list[Item], shard_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each shard: consecutive images, a shard closed once its images' bytes reach
    ``shard_bytes`` (so a shard holds ``shard_bytes`` plus at most one image, and a few hundred bytes of
    keys per image). Planned from the files' sizes before anything is written, so every shard's name, and
    its first ``source_id``, is known up front and shards can be written side by side."""
    plan, start, size = [], 0, 0
    for i, item in enumerate(items):
        try:
            size += os.stat(item.file).st_size
        except OSError as e:  # gone since the check
            raise _vanished(item.file, e) from e
        if size >= shard_bytes:
            plan.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(items) or not plan:
        plan.append((start, len(items)))
    return plan


_Task = tuple[Path, list[Item], list[str], dict[str, int], int, int]  # _write_shard's arguments


PARTIAL = ".partial"  # a shard being written: never a dataset's file (readers of *.tfrecord* skip it)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def _source_ids(first: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The first ``image/source_id`` of a shard whose first image is this conversion's ``first``-th, and the
    step between ids. Model Garden's COCO evaluation takes the (numeric) source id as the image id, so ids
    must be unique across everything a job reads: machine ``i`` of ``n`` in a Processing job numbers its
    images ``i + 1, i + 1 + n, i + 1 + 2n, ...``; one machine ``1, 2, 3, ...``."""
    index, count = shard or (0, 1)
    return (first - 1) * count + index + 1, count


def _write_shard(path: Path, items: list[Item], names: list[str], ids: Mapping[str, int], first_id: int,
                 step: int = 1, progress: Progress = _noop) -> int:
    """One shard, written as ``path`` + ``.partial`` (:func:`write_tfrecord` renames it once every shard is
    whole); ``progress(1)`` per image. A top-level function: it runs in a worker process too (there the
    parent counts whole shards)."""
    partial = _partial(path)
    try:
        with open(partial, "wb", buffering=1 << 20) as fh:
            for k, (item, name, data) in enumerate(
                    zip(items, names, _image_bytes([item.file for item in items]), strict=False)):
                write_records(fh, [tf_example(item, ids, str(first_id + k * step), name, data)])
                progress(1)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return len(items)


def _workers(tasks: int, workers: int | None) -> int:
    """How many processes write shards: ``workers`` (default: the CPUs this process may use), at most one per
    shard, and one where processes cannot be forked (macOS, Windows: see :func:`_write_in_processes`)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods() or sys.platform != "linux":
        return 1
    if workers is None:
        workers = len(os.sched_getaffinity(0))
    return max(1, min(workers, tasks))


def write_tfrecord(ann: Annotations, out: Path, splits: Mapping[str, list[Item]], *, progress: Progress = _noop,
                   images: bool = True, shard: tuple[int, int] | None = None,
                   shard_bytes: int = SHARD_BYTES, workers: int | None = None) -> Path:
    """``out/<split>-NNNNN-of-MMMMM.tfrecord`` shards of about ``shard_bytes`` each, and the label maps.

    Shards are planned from the images' sizes first (:func:`_shard_plan`), then written by ``workers``
    processes (default: one per CPU, at most one per shard) side by side: encoding and checksumming are
    Python and C under one interpreter lock, so processes, not threads, are what keeps up with a raw copy
    of the JPEGs (``benchmarks/bench_convert.py``). The bytes do not depend on the number of workers.

    All or nothing: the shards are renamed into place only once every one is whole, so a failed or stopped
    conversion leaves none of its files, and the shards of an earlier conversion into ``out`` as they were
    (never a mix of the two for a reader's ``train-*``)."""
    if not images:
        raise UserError("TFRecords hold the image bytes: convert --to tfrecord needs the images")
    out.mkdir(parents=True, exist_ok=True)
    ids = {n: i + 1 for i, n in enumerate(ann.names)}
    tasks: list[_Task] = []
    first_id = 1
    for split, items in splits.items():
        names = _unique_names(items, shard)
        plan = _shard_plan(items, shard_bytes)
        for (start, end), final in zip(plan, shard_names(split, len(plan), shard), strict=True):
            tasks.append((out / final, items[start:end], names[start:end], ids, *_source_ids(first_id + start, shard)))
        first_id += len(items)
    _refuse_other_shards(out, splits, shard, {task[0].name for task in tasks})
    try:
        with _sigterm_exits():
            count = _workers(len(tasks), workers)
            if count == 1 or not _write_in_processes(tasks, count, progress):
                for task in tasks:
                    _write_shard(*task, progress=progress)
    except BaseException:
        for task in tasks:  # every worker has ended: nothing writes these any more
            _partial(task[0]).unlink(missing_ok=True)
        raise
    for task in tasks:
        _partial(task[0]).replace(task[0])
    write_label_map(ann.names, out)
    return out


def _refuse_other_shards(out: Path, splits: Mapping[str, list[Item]], shard: tuple[int, int] | None,
                         ours: set[str]) -> None:
    """A UserError naming the shards (and ``.partial`` files) of an earlier conversion in ``out`` that this one
    would not replace (another shard count): a reader of ``train-*`` would take them with the new ones."""
    patterns = [shard_names(split, 1, shard)[0].replace("00000-of-00001", "?????-of-?????") for split in splits]
    others = sorted(p.name for pattern in patterns for suffix in ("", PARTIAL) for p in out.glob(pattern + suffix)
                    if p.name.removesuffix(PARTIAL) not in ours)  # our own .partial: replaced
    if others:
        raise UserError(f"{out} holds TFRecord shards of an earlier conversion ({', '.join(others[:4])}"
                        f"{', ...' if len(others) > 4 else ''}) that a reader would take together with this one's "
                        "(another shard count): remove them, or convert into an empty folder")


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While shards are written, a SIGTERM whose default action would end this process at once (``kill PID``;
    no handler of the caller's) ends it through :func:`write_tfrecord`'s clean-up instead: ``SystemExit(143)``,
    the status a shell reports for SIGTERM. A caller's own handler (the training image's) is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != SIG_DFL:
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, SIG_DFL)


_INHERITED: list[_Task] = []  # a forked worker's tasks, received at the fork: never pickled


def _inherit(tasks: list[_Task], parent: int) -> None:
    """A worker's start: its tasks, which came with the fork. SIGTERM gets its default action back: the pool
    ends the other workers with it when one died, and a handler inherited from the caller (the training
    image's raises an exception) would keep them taking shards instead. And the worker ends with its parent
    (``PR_SET_PDEATHSIG``): killed, the parent can no longer clean up, and a worker must not write on alone."""
    _INHERITED[:] = tasks
    signal.signal(signal.SIGTERM, SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):  # Linux's prctl: the only place workers are forked
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent was gone before prctl
        os._exit(1)


def _write_inherited(index: int) -> int:
    return _write_shard(*_INHERITED[index])


def _write_in_processes(tasks: list[_Task], count: int, progress: Progress) -> bool:
    """Each shard written by one of ``count`` worker processes. The first failure cancels the shards not
    started and waits for the running ones (every worker has ended when this returns or raises), then is
    raised. False, having written nothing, where no process pool can be made (no ``/dev/shm`` for its
    locks, say).

    Workers are forked, not spawned: a spawned worker first re-runs the caller's ``__main__`` script, and a
    notebook's or a script's top-level code (launching a job, say) must never run twice. A forked worker
    runs :func:`_write_shard` alone (files, ``struct``, CRC32C): none of the locks a parent's other threads
    may hold at the fork (a notebook kernel's, a progress bar's). The tasks reach the workers with the fork
    (pickling a million ``Item`` objects cost more than writing their records), the pipe carries indexes."""
    import ctypes  # noqa: F401 - for _inherit, imported before the fork: a worker must not wait on an import lock
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"), initializer=_inherit,
                                   initargs=(tasks, os.getpid()))
    except (OSError, ImportError, NotImplementedError):
        return False
    with pool:
        futures = [pool.submit(_write_inherited, i) for i in range(len(tasks))]
        try:
            for future in as_completed(futures):
                progress(future.result())
        except BrokenProcessPool as e:
            raise RuntimeError(f"a process writing TFRecord shards into {tasks[0][0].parent} died (killed for "
                               "memory?); nothing of this conversion is kept: run it again, or with workers=1 to "
                               "write in this process") from e
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return True


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
