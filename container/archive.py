"""Archives and checksums: extracting a previous job's model.tar.gz without trusting it."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path, PurePosixPath

from container.failure import UserError


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def safe_extract(archive: Path, dest: Path) -> list[Path]:
    """Extract regular files and folders only; refuse ``..``, absolute paths, links and devices.

    Checks every member before writing anything, so a refused archive leaves nothing behind.
    """
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise UserError(f"{archive.name} is not a readable tar archive ({err})") from err
    with tar:
        members = tar.getmembers()
        for m in members:
            name = PurePosixPath(m.name)
            if name.is_absolute() or ".." in name.parts:
                raise UserError(f"unsafe archive {archive.name}: member {m.name!r} points outside the archive")
            if m.issym() or m.islnk():
                raise UserError(f"unsafe archive {archive.name}: member {m.name!r} is a link")
            if not (m.isfile() or m.isdir()):
                raise UserError(f"unsafe archive {archive.name}: member {m.name!r} is not a regular file")
        dest.mkdir(parents=True, exist_ok=True)
        extracted = []
        for m in members:
            target = dest / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with src, open(target, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            extracted.append(target)
        return extracted


def make_tarball(src_dir: Path, archive: Path) -> Path:
    """``model.tar.gz`` as SageMaker writes it: the folder's contents at the archive's root."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src_dir)), recursive=False)
    return archive
