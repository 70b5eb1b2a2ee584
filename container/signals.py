"""SIGTERM handling: StopTrainingJob, MaxRuntimeInSeconds and spot interruptions.

SageMaker sends SIGTERM, then SIGKILL 120 s later. In a container the trainer is PID 1, and
the kernel gives PID 1 no default action for SIGTERM: without a handler the signal is ignored
and the checkpoint is lost. :class:`GracefulStop` installs one.

While a training loop runs (``deferred()``), the signal only sets :attr:`requested`; the loop
checks it between batches, saves a checkpoint and raises :class:`TrainingStopped`. Outside the
loop (data checks, exports) there is nothing to save, so the handler raises at once.

Two more duties:

* ``shielded()``: while a checkpoint is written, every signal is only recorded. A second SIGTERM
  must not interrupt the write (the file is written under a temporary name and renamed anyway).
* ``forwarding()``: on a multi-GPU instance ultralytics trains in worker processes it starts itself
  (``torch.distributed.run``). SIGTERM reaches only PID 1, so while such children run, the handler
  sends each direct child the same signal; the workers then save and stop as the single process does.

A stop that is already pending when a step ends is acted on at the next safe point (after an epoch's
checkpoint, before the final evaluation, before each export), never after more work.

Tests stop a job at a named moment with :func:`pause_point` (``SM_DETECTORS_PAUSE_AT``): the job
announces the point and waits there for the signal, so the stop lands at that point on a machine of
any speed. Unset in real jobs, where a pause point returns at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from container.failure import TrainingStopped

PAUSE_VARIABLE = "SM_DETECTORS_PAUSE_AT"  # test hook: comma-separated pause points (docs/testing.md)
PAUSE_LIMIT_S = 600.0  # a pause the test never ends goes on after this, so no job hangs for ever


class GracefulStop:
    def __init__(self, *, deferred: bool = False) -> None:
        """``deferred=True``: a process that only trains (a DDP worker) records signals from the start."""
        self.requested: float | None = None  # time of the first SIGTERM
        self._defer = 1 if deferred else 0
        self._shield = 0
        self._forward = 0
        self.forwarded: list[int] = []  # pids the last signal was passed on to
        self._previous: dict[int, object] = {}

    def install(self) -> GracefulStop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        first = self.requested is None
        if first:
            self.requested = time.monotonic()
        if self._forward:
            self.forwarded = forward_to_children(signum)
        if self._shield:
            return
        if self._defer and first:
            print(f"\n{name} received: saving a checkpoint at the end of this batch, then stopping.",
                  file=sys.stderr, flush=True)
            return
        raise TrainingStopped(f"{name} received; stopped")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block a signal is only recorded, for the loop to act on."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Within this block every signal is only recorded: for writing a checkpoint."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1

    @contextlib.contextmanager
    def forwarding(self) -> Iterator[None]:
        """Within this block a signal is also sent to each direct child process (ultralytics' DDP launcher)."""
        self._forward += 1
        try:
            yield
        finally:
            self._forward -= 1

    def check(self) -> None:
        """Raise :class:`TrainingStopped` if a stop was requested (for use outside the loop)."""
        if self.requested is not None:
            raise TrainingStopped("SIGTERM received; stopped")


def pause_point(name: str, stop: GracefulStop | None) -> None:
    """Where ``$SM_DETECTORS_PAUSE_AT`` names ``name``: say so and wait until a stop is requested.

    Within a training loop (``deferred()``) the signal is only recorded and the job goes on from here to
    its next safe point; elsewhere the handler raises :class:`TrainingStopped` here. Points are named
    ``epoch-start:N``, ``epoch-end:N``, ``final-eval``, ``export:FORMAT``, ``package`` (YOLO) and
    ``step:N``, ``export`` (TF); ``:N`` counts from 1.
    """
    wanted = os.environ.get(PAUSE_VARIABLE)
    if not wanted or name not in {w.strip() for w in wanted.split(",")}:
        return
    print(f"[pause] {name}: waiting for a signal ({PAUSE_VARIABLE}, a test hook)", flush=True)
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while stop is not None and stop.requested is None and time.monotonic() < deadline:
        time.sleep(0.01)


def child_pids(pid: int | None = None) -> list[int]:
    """Direct children of ``pid`` (default: this process), read from /proc; empty where there is none."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def forward_to_children(signum: int) -> list[int]:
    """Send ``signum`` to each direct child; the pids it reached."""
    reached = []
    for child in child_pids():
        try:
            os.kill(child, signum)
            reached.append(child)
        except OSError:
            continue
    return reached
