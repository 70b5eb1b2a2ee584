"""The one file walker for a channel folder: what the SDK uploads and what local mode links are the same files.

Policy (``docs/sdk-fetch.md``): a link that stays inside the folder is followed (a symlinked
``images/`` next to ``labels/`` is part of the dataset); a link that leaves the folder, a link
loop, a dangling link and anything that is not a regular file or folder (fifo, socket, device)
is refused. All of them are listed in one :class:`UnsafeTree` error, so one run names every
problem. Before this, the upload skipped symlinked folders silently while local mode followed
them anywhere (``/etc`` included) and crashed on a loop.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from container.failure import UserError

_SHOWN = 20  # problems listed in a message


class UnsafeTree(UserError):
    """A folder holds links or special files the walker refuses; ``problems`` lists them (relative paths)."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        more = len(problems) - _SHOWN
        shown = "; ".join(problems[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        super().__init__(
            f"{root}: {len(problems)} entr{'y' if len(problems) == 1 else 'ies'} refused: {shown}. Links are followed "
            "only when they stay inside the folder: copy the files in (or point at the folder they live in), "
            "and remove dangling links, loops and special files")
        self.root = root
        self.problems = problems


@dataclass(frozen=True)
class TreeFile:
    path: Path  # the real file (links resolved), to read or hard-link
    relpath: str  # where it sits in the folder, as the user sees it (POSIX separators, link names kept)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def walk_files(root: str | Path) -> list[TreeFile]:
    """Every regular file under ``root`` (or ``root`` itself when it is a file), sorted by relative path.

    Raises :class:`UserError` when ``root`` does not exist and :class:`UnsafeTree` listing every
    refused entry.
    """
    root = Path(root).expanduser()
    try:
        real_root = Path(os.path.realpath(root, strict=True))
        mode = real_root.stat().st_mode
    except OSError as err:
        raise UserError(f"{root} does not exist or cannot be read ({err.strerror})") from err
    if stat.S_ISREG(mode):
        return [TreeFile(real_root, root.name)]
    if not stat.S_ISDIR(mode):
        raise UnsafeTree(root, [f"{root.name} ({_kind(mode)})"])
    files: list[TreeFile] = []
    problems: list[str] = []

    def inside(path: str) -> bool:
        return os.path.commonpath([real_root, path]) == str(real_root)

    def walk(real_dir: Path, rel: str, chain: tuple[Path, ...]) -> None:
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as err:
            problems.append(f"{rel or '.'} (cannot be read: {err.strerror})")
            return
        for entry in entries:
            entry_rel = f"{rel}/{entry.name}" if rel else entry.name
            real = real_dir / entry.name
            if entry.is_symlink():
                target = os.path.realpath(real)
                try:
                    mode = os.stat(real).st_mode  # follows the link
                except OSError as err:
                    why = "a link loop" if err.errno == errno.ELOOP else f"a dangling link to {os.readlink(real)!r}"
                    problems.append(f"{entry_rel} ({why})")
                    continue
                if not inside(target):
                    problems.append(f"{entry_rel} (a link to {target}, outside the folder)")
                    continue
                real = Path(target)
                if stat.S_ISDIR(mode) and real in chain:
                    back = real.relative_to(real_root).as_posix() or "."
                    problems.append(f"{entry_rel} (a link loop: back to {back})")
                    continue
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                walk(real, entry_rel, (*chain, real))
            elif stat.S_ISREG(mode):
                files.append(TreeFile(real, entry_rel))
            else:
                problems.append(f"{entry_rel} ({_kind(mode)})")

    walk(real_root, "", (real_root,))
    if problems:
        raise UnsafeTree(root, problems)
    return sorted(files, key=lambda f: f.relpath)
