"""Archives and checksums: extracting a model.tar.gz without trusting it, and without losing what is there.

:func:`safe_extract` is used by the images (a ``weights`` channel's tarball) and by the SDK
(``fetch_model``, the leaderboard). Its promises:

* **bounded**: at most ``max_members`` members, ``max_bytes`` in all, and no more than
  ``max_ratio`` times the archive's own size (below ``RATIO_FLOOR`` the ratio is not checked:
  a small archive of text can expand 100x and harm nobody). Every header is checked in a first
  streaming pass that stops at the first cap, before anything is written; the decompressed
  stream itself is cut off past the caps, because tarfile reads a long-name or pax header into
  memory whole.
* **regular files and folders only**: links, devices, fifos, sparse members and duplicate names
  are refused; so are absolute names and names with ``..``.
* **nothing outside the target, nothing lost**: members are written into a fresh folder beside
  the target (same file system, so moves are renames), then moved in. An existing file is never
  overwritten: when it holds the same bytes it stays, when it differs the whole archive is
  refused (:class:`DestinationConflict`) before anything is moved. A refused archive leaves the
  target exactly as it was.
"""

from __future__ import annotations

import bz2
import contextlib
import filecmp
import gzip
import hashlib
import io
import itertools
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from container.failure import UserError

MAX_MEMBERS = 10_000  # a model folder holds tens of files; a SavedModel with shards a few hundred
MAX_BYTES = 20 * 1024**3  # 20 GiB: the largest TF Model Garden export with checkpoints fits easily
MAX_RATIO = 100.0  # weights compress ~1.1x, logs and CSVs ~10x; a bomb of zeros ~1000x
RATIO_FLOOR = 64 * 1024**2  # below 64 MiB expanded, the ratio is not checked
MAX_DEPTH = 64  # folders a member may lie in: a SavedModel's deepest file is 3 down; Linux's PATH_MAX allows ~2,000
MAX_NAME_PART = 255  # bytes in one file or folder name: NAME_MAX of ext4, xfs, overlayfs (ENAMETOOLONG beyond)
_SHOWN = 10  # conflicts listed in a message
_MAX_HEADER = 1024**2  # a long-name or pax header: a few hundred bytes in any real archive
_HEADER_BYTES = 4 * 512  # tar stream allowed per member beyond its data: header, padding, a long name or pax block


class DestinationConflict(UserError):
    """The target holds files the archive would replace with different ones (or, ``exclusive``, files it lacks)."""


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _mib(n: float) -> str:
    return f"{n / 1024**2:,.1f} MiB"


def _shorten(name: str, keep: int = 80) -> str:
    return name if len(name) <= keep else f"{name[:keep // 2]}...{name[-keep // 2:]}"


def _member_path(archive: Path, m: tarfile.TarInfo) -> PurePosixPath:
    """The member's name, normalised (``./a//b`` is ``a/b``); refused when absolute or with ``..``."""
    name = PurePosixPath(m.name)
    if name.is_absolute() or ".." in name.parts:
        raise UserError(f"unsafe archive {archive.name}: member {m.name!r} points outside the archive")
    long = max(name.parts, key=lambda part: len(part.encode("utf-8", "surrogateescape")), default="")
    if len(name.parts) > MAX_DEPTH or len(long.encode("utf-8", "surrogateescape")) > MAX_NAME_PART:
        what = (f"lies {len(name.parts)} folders deep (at most {MAX_DEPTH})" if len(name.parts) > MAX_DEPTH else
                f"has a name part of {len(long.encode('utf-8', 'surrogateescape'))} bytes (at most {MAX_NAME_PART}, "
                "what a file system holds)")
        raise UserError(f"archive {archive.name}: member {_shorten(m.name)!r} {what}: no model folder looks like "
                        "this, and it could not be written. Pack the model folder again (tar -czf model.tar.gz -C "
                        "DIR .)")
    return PurePosixPath(*[p for p in name.parts if p != "."]) if name.parts else PurePosixPath()


Members = list[tuple[PurePosixPath, tarfile.TarInfo]]  # (normalised name, header)


@dataclass(frozen=True)
class _Caps:
    archive: Path
    max_members: int
    max_bytes: int
    max_ratio: float

    @property
    def archive_size(self) -> int:
        return max(self.archive.stat().st_size, 1)

    @property
    def allowed(self) -> int:
        """Bytes of file data the archive may expand to."""
        return min(self.max_bytes, max(RATIO_FLOOR, int(self.max_ratio * self.archive_size)))

    def too_big(self, limit: int, what: str = "") -> UserError:
        cap = (f"max_bytes={_mib(self.max_bytes)}" if self.allowed == self.max_bytes else
               f"max_ratio={self.max_ratio:g} x its {_mib(self.archive_size)}")
        return UserError(f"archive {self.archive.name} expands to more than {_mib(limit)}{what} (cap {cap}); "
                         "refusing it as a possible archive bomb. Raise the cap if this archive is trusted")


class _Bounded(io.RawIOBase):
    """The decompressed tar stream, cut off past ``limit`` bytes.

    Why: tarfile reads a GNU long-name or a pax header into memory whole, before yielding the
    member it belongs to, so a header claiming gigabytes must be stopped here, not after.
    """

    def __init__(self, raw: io.BufferedIOBase, limit: int, caps: _Caps) -> None:
        self._raw, self._limit, self._caps, self._read = raw, limit, caps, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        self._read += n
        if self._read > self._limit:
            raise self._caps.too_big(self._limit, " of tar headers and data")
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _HeaderCapped(tarfile.TarInfo):
    """Refuses a long-name or pax header larger than ``_MAX_HEADER`` before tarfile reads it into memory."""

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._refuse_huge()
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._refuse_huge()
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _refuse_huge(self) -> None:
        if self.size > _MAX_HEADER:
            raise UserError(f"unsafe archive: a {'long-name' if self.type in tarfile.GNU_TYPES else 'pax'} header "
                            f"claims {_mib(self.size)} (a real one holds a few hundred bytes)")


def _decompressed(archive: Path) -> io.BufferedIOBase:
    """The archive's tar stream: gzip, bzip2, xz or plain, told by the first bytes (not the suffix)."""
    with open(archive, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _checked(tar: tarfile.TarFile, caps: _Caps) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo]]:
    """Members as they stream, each checked against the caps and the members before it."""
    archive = caps.archive
    seen: dict[PurePosixPath, bool] = {}  # normalised name -> is a folder
    total = 0
    for count, m in enumerate(tar, start=1):
        if count > caps.max_members:
            raise UserError(f"archive {archive.name} has more than {caps.max_members:,} members (cap max_members); "
                            "a model holds far fewer. Raise the cap if this archive is trusted")
        path = _member_path(archive, m)
        if m.issym() or m.islnk():
            raise UserError(f"unsafe archive {archive.name}: member {m.name!r} is a link (to {m.linkname!r})")
        if m.type == tarfile.GNUTYPE_SPARSE or m.sparse is not None:
            raise UserError(f"unsafe archive {archive.name}: member {m.name!r} is a sparse file "
                            f"(claims {_mib(m.size)} from a few bytes)")
        if not (m.isfile() or m.isdir()):
            raise UserError(f"unsafe archive {archive.name}: member {m.name!r} is not a regular file or folder")
        if not path.parts:
            if m.isdir():
                continue  # "./", the archive's root
            raise UserError(f"unsafe archive {archive.name}: member {m.name!r} has no name")
        if path in seen:
            raise UserError(f"archive {archive.name}: member {m.name!r} appears twice; refusing to pick one")
        for parent in path.parents:
            if seen.get(parent) is False:
                raise UserError(f"archive {archive.name}: member {m.name!r} lies under {str(parent)!r}, "
                                "which the archive has as a file")
        seen[path] = m.isdir()
        total += m.size if m.isfile() else 0
        if total > caps.allowed:
            raise caps.too_big(caps.allowed)
        yield path, m


def _write(tar: tarfile.TarFile, path: PurePosixPath, m: tarfile.TarInfo, root: Path) -> None:
    target = root.joinpath(*path.parts)
    if m.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(m)
    if src is None:  # cannot happen for a regular file member
        raise UserError(f"archive member {m.name!r} has no data")
    with src, open(target, "xb") as out:  # "x": never through anything already there
        shutil.copyfileobj(src, out, 1 << 20)
    if m.size != target.stat().st_size:
        raise UserError(f"archive member {m.name!r} is truncated")


def _plan_moves(staged: Path, dest: Path, *, exclusive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(renames to do, conflicts): what moving ``staged`` into ``dest`` needs, without touching either."""
    moves: list[tuple[Path, Path]] = []
    conflicts: list[str] = []

    def walk(src_dir: Path, dst_dir: Path) -> None:
        for src in sorted(src_dir.iterdir()):
            dst = dst_dir / src.name
            try:
                st = dst.lstat()
            except FileNotFoundError:
                moves.append((src, dst))
                continue
            rel = dst.relative_to(dest).as_posix()
            if src.is_dir():
                if stat.S_ISDIR(st.st_mode):
                    walk(src, dst)
                else:
                    conflicts.append(f"{rel} (a folder in the archive, not a folder here)")
            elif not stat.S_ISREG(st.st_mode):
                conflicts.append(f"{rel} (not a regular file here)")
            elif not filecmp.cmp(src, dst, shallow=False):
                conflicts.append(f"{rel} (differs)")
        if exclusive:  # everything here must be something the archive brings
            staged_names = {p.name for p in src_dir.iterdir()}
            if dst_dir.is_dir() and not dst_dir.is_symlink():
                for extra in sorted(dst_dir.iterdir()):
                    if extra.name not in staged_names:
                        conflicts.append(f"{extra.relative_to(dest).as_posix()} (not in the archive)")

    walk(staged, dest)
    return moves, conflicts


def safe_extract(archive: Path, dest: Path, *, exclusive: bool = False, max_members: int = MAX_MEMBERS,
                 max_bytes: int = MAX_BYTES, max_ratio: float = MAX_RATIO) -> list[Path]:
    """Extract ``archive`` into ``dest`` (see the module's promises); the files it holds, as paths in ``dest``.

    ``exclusive=True`` also refuses a ``dest`` holding anything the archive does not (so an
    earlier extraction of the same archive is fine, a folder of other files is not).
    Raises :class:`UserError` for an unsafe or unreadable archive, :class:`DestinationConflict`
    when ``dest`` holds something that would be lost.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    if dest.exists() and not dest.is_dir():
        raise DestinationConflict(f"{dest} is a file; extract into a folder")
    caps = _Caps(archive, max_members, max_bytes, max_ratio)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # removed again if refused
    try:
        with _readable(archive), _stream(caps) as tar:  # pass 1: every header checked, nothing written
            checked = list(_checked(tar, caps))
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))  # renames, not copies
        try:
            with _readable(archive), _stream(caps) as tar:  # pass 2: the same members, written
                for (path, m), (was, before) in itertools.zip_longest(_checked(tar, caps), checked,
                                                                        fillvalue=(None, None)):
                    if (m is None or path is None or before is None
                            or (path, m.type, m.size) != (was, before.type, before.size)):
                        raise UserError(f"{archive.name} changed while it was being extracted")
                    _write(tar, path, m, staged)
            return _move_in(staged, dest, checked, exclusive=exclusive)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    except BaseException:
        for folder in created:  # deepest first: the folders made for the staging area, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def _stream(caps: _Caps) -> Iterator[tarfile.TarFile]:
    """The archive as a bounded tar stream: file data, plus a few blocks of header per member."""
    limit = caps.allowed + (caps.max_members + 2) * _HEADER_BYTES + (1 << 20)
    with _Bounded(_decompressed(caps.archive), limit, caps) as raw, \
            tarfile.open(fileobj=io.BufferedReader(raw, 1 << 20), mode="r|", tarinfo=_HeaderCapped) as tar:
        yield tar


@contextlib.contextmanager
def _readable(archive: Path) -> Iterator[None]:
    """A truncated or corrupt stream is a UserError naming the archive; a disk error stays an OSError."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as err:
        raise UserError(f"{archive.name} is not a readable tar archive ({type(err).__name__}: {err})") from err
    except OSError as err:
        if err.errno is not None and err.filename != str(archive):  # the disk (full, read-only)
            raise
        raise UserError(f"{archive.name} is not a readable tar archive ({type(err).__name__}: {err})") from err


def _move_in(staged: Path, dest: Path, members: Members, *, exclusive: bool) -> list[Path]:
    """Move what ``staged`` holds into ``dest``, or refuse (changing nothing) if a file there would be lost."""
    moves, conflicts = _plan_moves(staged, dest, exclusive=exclusive)
    if conflicts:
        more = len(conflicts) - _SHOWN
        shown = "; ".join(conflicts[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise DestinationConflict(f"{dest} already holds files this archive would replace or mix with: {shown}. "
                                  "Nothing was changed; extract into a new or empty folder, or move them away")
    dest.mkdir(exist_ok=True)
    for src, dst in moves:
        os.rename(src, dst)
    return [dest.joinpath(*p.parts) for p, m in members if m.isfile()]


def make_tarball(src_dir: Path, archive: Path) -> Path:
    """``model.tar.gz`` as SageMaker writes it: the folder's contents at the archive's root."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src_dir)), recursive=False)
    return archive
