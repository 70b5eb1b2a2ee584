"""Which files are images, which folder names are splits, and how an annotation's image name is found.

Declared once here and imported everywhere else (the YOLO adapter, the SDK's predict and leaderboard):
a dataset that passes one check must be visible to every reader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# ultralytics' IMG_FORMATS (ultralytics/data/utils.py, 8.4): what its loader trains on. A test compares
# the two, so a new ultralytics that adds a suffix fails loudly rather than hiding images from one side.
IMG_SUFFIXES = frozenset({".avif", ".bmp", ".dng", ".heic", ".heif", ".jp2", ".jpeg", ".jpeg2000", ".jpg", ".mpo",
                          ".png", ".tif", ".tiff", ".webp"})
# Folder and file-name words that mean a split: Roboflow writes valid/, CVAT "Validation", TFDS "validation".
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "eval": "val", "test": "test", "testing": "test"}
SPLIT_NAMES = ("train", "val", "test")
# In a dataset root: image keys (one a line, relative to the root) that belong to the dataset but lie on
# another machine (a Processing machine holds its share of the images: container/processing.py). The index
# knows them, so an annotation names the same key on every machine; no file is there to read.
ELSEWHERE = ".images-elsewhere"


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMG_SUFFIXES


def split_word(word: str) -> str | None:
    """``train``/``val``/``test`` for a folder or subset name (``valid``, ``Validation``), else None."""
    return SPLIT_ALIASES.get(word.strip().lower())


_YEAR = re.compile(r"(?<=[a-z])(19|20)\d\d$", re.IGNORECASE)  # COCO's train2017/, instances_val2014.json


def split_name(name: str) -> str | None:
    """:func:`split_word` of a folder or file-name part, also with a year after the word (``train2017``,
    ``val2014``: COCO's folders, and ultralytics' ``images/train2017``)."""
    return split_word(name) or split_word(_YEAR.sub("", name))


def split_of(path: Path, root: Path) -> str | None:
    """train/val/test from the folders or the file name (``val/``, ``valid_labels.csv``, ``test.json``),
    looking only below ``root``: a folder named ``train`` above the dataset says nothing about it."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    for part in (*rel.parts[:-1], path.stem):
        for token in [part, *re.split(r"[_\-.]", part)]:
            split = split_name(token)
            if split:
                return split
    return None


def walk_files(root: Path, suffixes: tuple[str, ...] | frozenset[str]) -> list[Path]:
    """Files under ``root`` with these suffixes, sorted, hidden folders and files left out (one os.walk)."""
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in suffixes]
    return [Path(f) for f in sorted(found)]


def links_out(root: Path) -> list[str]:
    """The symbolic links under ``root`` (relative paths) whose target lies outside it: a dataset is read only
    from its own folder (a label linked to a credentials file must not reach a report). One ``os.scandir`` walk:
    only links cost a ``realpath``. Links that stay inside are fine (container/walk.py's policy); hidden files
    and folders are no dataset's (no reader opens them) and are not looked at."""
    real_root = os.path.realpath(root)
    found: list[str] = []
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name != ELSEWHERE:  # what no reader reads (a .venv's links)
                continue
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if target != real_root and not target.startswith(real_root.rstrip(os.sep) + os.sep):
                    found.append(os.path.relpath(entry.path, root).replace(os.sep, "/"))
            elif entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return sorted(found)


class ImageIndex:
    """Every image under a dataset root, keyed by its path relative to the root (``cam1/0001.jpg``).

    An annotation names its image in many ways: relative to the annotation file (VOC's ``<filename>``),
    relative to an images folder (COCO's ``file_name``), as an S3 URI (Ground Truth). :meth:`find` takes
    the longest trailing part of that name that names exactly one image, so ``cam1/0001.jpg`` and
    ``cam2/0001.jpg`` stay two images, and a bare ``0001.jpg`` shared by two folders is ambiguous (None)
    rather than silently the first one found. Images listed in ``root/.images-elsewhere`` (``ELSEWHERE``)
    are known too: found by name, their path does not exist here.
    """

    _AMBIGUOUS = ""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.by_rel: set[str] = set()  # relative paths as strings: a million Path objects would cost ~0.5 GB
        self._tails: dict[str, str] = {}  # a shorter trailing part -> the one relative path, or ""
        self._stems: dict[str, str] | None = None  # relative path without suffix -> the image, or "": on demand
        base = str(self.root)
        for dirpath, dirnames, files in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = dirpath[len(base):].lstrip(os.sep).replace(os.sep, "/")
            for name in files:
                if is_image(name) and not name.startswith("."):
                    self._add(f"{rel_dir}/{name}" if rel_dir else name)
        if os.path.isfile(elsewhere := os.path.join(base, ELSEWHERE)):
            with open(elsewhere, encoding="utf-8") as fh:
                for line in fh:
                    if (rel := line.rstrip("\n")) and rel not in self.by_rel:
                        self._add(rel)

    def _add(self, rel: str) -> None:
        self.by_rel.add(rel)
        parts = rel.split("/")
        for i in range(1, len(parts)):
            tail = "/".join(parts[i:])
            self._tails[tail] = rel if tail not in self._tails else self._AMBIGUOUS

    def __len__(self) -> int:
        return len(self.by_rel)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def find(self, name: str, *, near: str = "") -> str | None:
        """The relative path of the image ``name`` means, or None. ``near`` is the folder (relative to the
        root) of the annotation file that names it: ``near/name`` wins over any other match."""
        if not self.by_rel:  # no image here at all (annotations converted alone): nothing to look for
            return None
        name = name.replace("\\", "/")
        if name.startswith("s3://"):
            name = name[5:].split("/", 1)[-1]
        name = name.lstrip("/")
        while name.startswith("./"):
            name = name[2:]
        if near:
            joined = os.path.normpath(f"{near}/{name}").replace(os.sep, "/")
            if joined in self.by_rel:
                return joined
        if name in self.by_rel:
            return name
        parts = name.split("/")
        for i in range(len(parts)):
            tail = "/".join(parts[i:])
            if i and tail in self.by_rel:
                return tail
            found = self._tails.get(tail)
            if found is not None:
                return found or None  # "" = more than one image ends this way
        return None

    def by_stem(self, stem: str) -> str | None:
        """The one image whose relative path without its suffix is ``stem`` (``train/a`` -> ``train/a.JPG``)."""
        if self._stems is None:
            self._stems = {}
            for rel in self.by_rel:
                key = os.path.splitext(rel)[0]
                self._stems[key] = rel if key not in self._stems else self._AMBIGUOUS
        return self._stems.get(stem) or None

    def locate(self, name: str, near: str = "", *, stem: str | None = None) -> tuple[str, Path | None]:
        """An item's key and path: the image's relative path when found, else the name as given. ``stem``: the
        annotation file's relative path without its suffix, for tools that name it after its image (labelImg,
        LabelMe): when ``name`` finds nothing (the image renamed or converted since, a name without its
        suffix), the one image at that path with any suffix is the one."""
        rel = self.find(name, near=near) or (self.by_stem(stem) if stem is not None else None)
        return (rel, self.root / rel) if rel else (name.replace("\\", "/"), None)


def dataset_root(root: Path) -> Path:
    """The folder images are looked up in: the dataset folder, or the folder of a single annotation file."""
    return root if root.is_dir() else root.parent


def folder_of(path: Path, base: Path) -> str:
    """The folder of an annotation file relative to the dataset root ("" at the root)."""
    rel = path.parent.relative_to(base).as_posix()
    return "" if rel == "." else rel
