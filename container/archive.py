"""Archives and checksums: extracting a model.tar.gz without trusting it, and without losing what is there.

:func:`safe_extract` is used by the images (a ``weights`` channel's tarball) and by the SDK
(``fetch_model``, the leaderboard). Its promises:

* **bounded**: at most ``max_members`` members, ``max_bytes`` in all, and no more than
  ``max_ratio`` times the archive's own size (below ``RATIO_FLOOR`` the ratio is not checked:
  a small archive of text can expand 100x and harm nobody). Every header is checked, in one
  streaming pass that stops at the first cap, before anything is written.
* **regular files and folders only**: links, devices, fifos, sparse members and duplicate names
  are refused; so are absolute names and names with ``..``.
* **nothing outside the target, nothing lost**: members are written into a fresh folder beside
  the target (same file system, so moves are renames), then moved in. An existing file is never
  overwritten: when it holds the same bytes it stays, when it differs the whole archive is
  refused (:class:`DestinationConflict`) before anything is moved. A refused archive leaves the
  target exactly as it was.
"""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from container.failure import UserError

MAX_MEMBERS = 10_000  # a model folder holds tens of files; a SavedModel with shards a few hundred
MAX_BYTES = 20 * 1024**3  # 20 GiB: the largest TF Model Garden export with checkpoints fits easily
MAX_RATIO = 100.0  # weights compress ~1.1x, logs and CSVs ~10x; a bomb of zeros ~1000x
RATIO_FLOOR = 64 * 1024**2  # below 64 MiB expanded, the ratio is not checked
_SHOWN = 10  # conflicts listed in a message


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


def _member_path(archive: Path, m: tarfile.TarInfo) -> PurePosixPath:
    """The member's name, normalised (``./a//b`` is ``a/b``); refused when absolute or with ``..``."""
    name = PurePosixPath(m.name)
    if name.is_absolute() or ".." in name.parts:
        raise UserError(f"unsafe archive {archive.name}: member {m.name!r} points outside the archive")
    return PurePosixPath(*[p for p in name.parts if p != "."]) if name.parts else PurePosixPath()


Members = list[tuple[PurePosixPath, tarfile.TarInfo]]  # (normalised name, header)


def check_members(archive: Path, tar: tarfile.TarFile, *, max_members: int = MAX_MEMBERS,
                  max_bytes: int = MAX_BYTES, max_ratio: float = MAX_RATIO) -> Members:
    """Every member checked, streaming (a bomb is stopped at its first header past a cap). Nothing is written."""
    archive_size = max(archive.stat().st_size, 1)
    allowed = min(max_bytes, max(RATIO_FLOOR, int(max_ratio * archive_size)))
    seen: dict[PurePosixPath, bool] = {}  # normalised name -> is a folder
    checked: Members = []
    total = 0
    for count, m in enumerate(tar, start=1):
        if count > max_members:
            raise UserError(f"archive {archive.name} has more than {max_members:,} members (cap max_members); "
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
        if total > allowed:
            cap = (f"max_bytes={_mib(max_bytes)}" if allowed == max_bytes else
                   f"max_ratio={max_ratio:g} x its {_mib(archive_size)}")
            raise UserError(f"archive {archive.name} expands to more than {_mib(allowed)} (cap {cap}); "
                            "refusing it as a possible archive bomb. Raise the cap if this archive is trusted")
        checked.append((path, m))
    return checked


def _write_members(tar: tarfile.TarFile, members: Members, root: Path) -> None:
    for path, m in members:
        target = root.joinpath(*path.parts)
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
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
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # removed again if refused
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise UserError(f"{archive.name} is not a readable tar archive ({err})") from err
    try:
        with tar:
            dest.parent.mkdir(parents=True, exist_ok=True)
            staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))  # renames, not copies
            try:
                return _extract(archive, tar, staged, dest, exclusive=exclusive,
                                caps={"max_members": max_members, "max_bytes": max_bytes, "max_ratio": max_ratio})
            finally:
                shutil.rmtree(staged, ignore_errors=True)
    except BaseException:
        for folder in created:  # deepest first: the folders made for the staging area, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _extract(archive: Path, tar: tarfile.TarFile, staged: Path, dest: Path, *, exclusive: bool,
             caps: dict[str, Any]) -> list[Path]:
    try:
        members = check_members(archive, tar, **caps)
        _write_members(tar, members, staged)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as err:  # a truncated or corrupt stream
        raise UserError(f"{archive.name} is not a readable tar archive ({type(err).__name__}: {err})") from err
    except OSError as err:
        if err.errno is not None:  # the disk (full, read-only): not the archive's fault
            raise
        raise UserError(f"{archive.name} is not a readable tar archive ({type(err).__name__}: {err})") from err
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
