"""SIGTERM handling: StopTrainingJob, MaxRuntimeInSeconds and spot interruptions.

SageMaker sends SIGTERM, then SIGKILL 120 s later. In a container the trainer is PID 1, and
the kernel gives PID 1 no default action for SIGTERM: without a handler the signal is ignored
and the checkpoint is lost. :class:`GracefulStop` installs one.

While a training loop runs (``deferred()``), the signal only sets :attr:`requested`; the loop
checks it between batches, saves a checkpoint and raises :class:`TrainingStopped`. Outside the
loop (data checks, exports) there is nothing to save, so the handler raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator

from container.failure import TrainingStopped


class GracefulStop:
    def __init__(self) -> None:
        self.requested: float | None = None  # time of the first SIGTERM
        self._defer = 0
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

    def check(self) -> None:
        """Raise :class:`TrainingStopped` if a stop was requested (for use outside the loop)."""
        if self.requested is not None:
            raise TrainingStopped("SIGTERM received; stopped")
