"""The one-call conversion: read any format, check, leave out what cannot be trained on, split, write."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from container.annotations.check import Report, check
from container.annotations.paths import IMG_SUFFIXES, dataset_root
from container.annotations.readers import read
from container.annotations.split import split
from container.annotations.types import Annotations, Box, Item
from container.annotations.writers import WRITERS
from container.failure import UserError


def in_shard(key: str, index: int, count: int) -> bool:
    """Whether the image ``key`` belongs to shard ``index`` of ``count``: a stable hash (not Python's
    ``hash``, which changes per process), so every machine agrees without talking to the others."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count == index


def _keep_shard(ann: Annotations, shard: tuple[int, int], select: Callable[[Item], bool] | None) -> None:
    """Keep this shard's items, and the reader's notes that concern them (notes about no item: shard 0)."""
    index, count = shard
    ann.items = [item for item in ann.items if (select(item) if select else in_shard(item.name, index, count))]
    kept = {id(item) for item in ann.items}
    ann.issues = [issue for issue in ann.issues if (id(issue[3]) in kept if issue[3] is not None else index == 0)]


def _trained(box: Box, keep_crowd: bool, keep_difficult: bool) -> bool:
    return (keep_crowd or not box.crowd) and (keep_difficult or not box.difficult)


def _refuse_filled(out: Path) -> None:
    """A conversion writes into a new or empty folder. Into an earlier conversion's, the new labels would sit
    beside the earlier images of the same names (an image already there is never overwritten), every pair
    mismatched; and deleting what is there could delete a user's files. So it is refused, nothing written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out} is a file: give a folder (new or empty) to convert into")
    if out.is_dir():
        held = sorted(p.name for p in out.iterdir())
        if held:
            shown = ", ".join(held[:5]) + (f", ... ({len(held)} entries)" if len(held) > 5 else "")
            raise UserError(f"output folder {out} already holds files ({shown}): an earlier conversion's images "
                            "would stay beside this one's labels. Convert into a new or empty folder (or move "
                            "those files away first); nothing was written")


def _refuse_inside(src: Path, out: Path) -> None:
    """The output folder must lie outside the dataset: inside it, the converted files become part of the source
    (a second annotation format beside the first, which every later read of the folder refuses)."""
    base = dataset_root(src).resolve() if src.exists() else None
    if base is not None and (out.resolve() == base or base in out.resolve().parents):
        raise UserError(f"output folder {out} is inside the dataset folder {base}: the converted files would "
                        "become part of the dataset. Convert into a folder outside it; nothing was written")


def convert(src: str | Path, to: str, out: str | Path, *, fmt: str = "auto", ratios: Sequence[float] | None = None,
            seed: int = 0, names: list[str] | None = None, strict: bool = False, verify_images: bool = True,
            images: bool = True, keep_crowd: bool = False, keep_difficult: bool = False,
            shard: tuple[int, int] | None = None, select: Callable[[Item], bool] | None = None,
            progress: Callable[[int], None] | None = None, log: Callable[[str], None] = print,
            links_out_ok: bool = False) -> tuple[Annotations, Report]:
    """Read ``src`` (any format), check it, split it (``ratios``; else the source's own splits), write ``to``.

    Images with a problem are left out (``strict``: an error instead) and counted in the report; crowd
    and difficult boxes are left out unless ``keep_crowd``/``keep_difficult``. An unsplit source without
    ``ratios`` is written as one ``train`` split (the log says so). ``images=False`` converts the
    annotations alone: no image is looked up or copied (sizes from the annotations).

    ``shard=(index, count)``: convert only the images whose key (path relative to the root) hashes to
    ``index`` of ``count``, as one of ``count`` machines does (``container/processing.py``); the shards'
    outputs put together are the whole conversion, no image twice, none missed. Give ``names`` (or use a
    format with its own class list) so every shard numbers the classes alike. ``select`` replaces the hash
    as the rule for which images are this shard's (``container/processing.py``: the images this machine
    received); whatever the rule, a reader's note about an image goes with the image, and a note about no
    image in particular is made by shard 0 alone, so the shards' reports add up to the whole one.
    ``links_out_ok``: see :func:`read` (a link out of ``src`` is refused unless this program made the tree)."""
    if to not in WRITERS:
        raise UserError(f"cannot write {to!r}; writable formats: {', '.join(WRITERS)}")
    if shard is None and not str(src).startswith("s3://"):
        _refuse_inside(Path(src), Path(out))
    if to != "tfrecord" and shard is None:  # TFRecords replace an earlier conversion's shards whole or refuse
        _refuse_filled(Path(out))  # (write_tfrecord); a shard's names are its own, beside the other machines' ones
    ann = read(src, fmt, names=names, links_out_ok=links_out_ok)
    if not ann.items:
        raise UserError(f"{src}: no training images found: the annotations name no image that is there. Put the "
                        f"images beside their annotations (image types: {', '.join(sorted(IMG_SUFFIXES))})")
    if shard is not None:
        _keep_shard(ann, shard, select)
    report = check(ann, names=names, verify_images=verify_images and images, images=images, keep_crowd=keep_crowd,
                   keep_difficult=keep_difficult, strays=shard is None, progress=progress)
    log(report.text())
    if not report.ok and strict:
        raise UserError(f"{src}: the dataset has problems (strict):\n{report.text()}")
    good = [item for item in ann.items if id(item) not in report.left_out]
    if not good and shard is None:
        raise UserError(f"{src}: no usable images ({report.text()})")
    if not good:  # one machine's share can be empty (few images, many machines): the others may have them
        log("this shard has no usable images of its own")
    if report.left_out:
        log(f"left out {len(report.left_out)} of {len(ann.items)} images (see the problems above)")
    if not (keep_crowd and keep_difficult):
        for item in good:
            if any(b.crowd or b.difficult for b in item.boxes):
                item.boxes = [b for b in item.boxes if _trained(b, keep_crowd, keep_difficult)]
    if names is None:  # classes no box uses any more stay: ids must not shift between runs
        extra = [label for label in ann.boxes_per_class() if label not in ann.names]
        ann.names = list(ann.names) + extra
    if ratios:
        splits = split(good, ratios, seed=seed)
    else:
        splits = defaultdict(list)
        for item in good:
            splits[item.split or "train"].append(item)
        if set(splits) == {"train"} and not any(item.split for item in good):
            log(f"the source has no train/val split: all {len(good)} images written as 'train' "
                "(give ratios, e.g. --split 0.8,0.2, to write a val split too)")
    sharded = {"shard": shard} if shard is not None else {}
    WRITERS[to](ann, Path(out), dict(splits), progress=progress or (lambda _: None), images=images, **sharded)
    return ann, report
