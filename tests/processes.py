"""Waiting for a process to end, in tests that stop processes: the end itself is awaited (a pidfd turns readable
when the process exits), never guessed from a time. ``GUARD`` seconds bound a wait against a hang; it is no
measure of anything."""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable, Iterator

GUARD = 300.0


@contextlib.contextmanager
def watching(pid: int) -> Iterator[Callable[[float], bool]]:
    """``ended(timeout)``: True once ``pid`` has exited, waiting up to ``timeout`` seconds (0: just asks). Opened
    before the process is stopped, it watches that process and no later one given the same id; the process need
    not be ours to wait for. ProcessLookupError when there is no such process."""
    fd = os.pidfd_open(pid)
    try:
        yield lambda timeout=GUARD: select.select([fd], [], [], timeout)[0] == [fd]
    finally:
        os.close(fd)


def gone(pid: int) -> bool:
    """True once ``pid`` has ended. A SIGKILL is delivered, not done, when kill() returns: this waits for the exit
    itself (up to ``GUARD`` seconds)."""
    try:
        with watching(pid) as ended:
            return ended(GUARD)
    except ProcessLookupError:
        return True
