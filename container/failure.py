"""The failure path: what a failed job tells its user.

SageMaker shows the first 1024 characters of ``/opt/ml/output/failure`` as the job's
``FailureReason``. Two kinds of failure, told apart:

* :class:`UserError` (bad data, a bad hyperparameter, a missing channel): the message alone,
  written to name the cause and the fix. No traceback: it would only hide the message.
* anything else: the exception, then the innermost frames of its traceback (where it broke),
  trimmed so the whole fits in 1024 characters. The full traceback goes to the log.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

FAILURE_LIMIT = 1024
EXIT_USER_ERROR = 2
EXIT_ERROR = 1
EXIT_STOPPED = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


class UserError(Exception):
    """A problem with the job's inputs that the user can fix; the message says how."""


class TrainingStopped(Exception):
    """Training stopped on SIGTERM after saving a checkpoint (stop, max runtime, spot)."""


# Colour and cursor codes (ultralytics colours its messages): noise in a console that shows plain text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def plain(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


def shorten(value: object, limit: int = 80) -> str:
    """A value echoed in a message, cut to ``limit`` characters so the fix hint after it survives."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def failure_reason(exc: BaseException, limit: int = FAILURE_LIMIT) -> str:
    """The text for the failure file: at most ``limit`` characters, cause first."""
    if isinstance(exc, UserError):
        return _fit(plain(f"UserError: {exc}"), limit)
    head = _fit(plain(f"{type(exc).__name__}: {exc}").strip(), limit // 2)
    frames = traceback.extract_tb(exc.__traceback__)
    lines: list[str] = []
    budget = limit - len(head) - len("\nTraceback (innermost last):")
    for frame in reversed(frames):  # innermost first, while they fit
        line = f"\n  {Path(frame.filename).name}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
        line = _fit(line, 160)
        if len(line) > budget:
            break
        lines.insert(0, line)
        budget -= len(line)
    if not lines:
        return head
    return head + "\nTraceback (innermost last):" + "".join(lines)


def write_failure(path: Path, exc: BaseException) -> str:
    """Write the failure file (and log the full story); returns what was written."""
    reason = failure_reason(exc)
    if not isinstance(exc, UserError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"\nFAILED: {reason}", file=sys.stderr, flush=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason, encoding="utf-8")
    except OSError as err:  # a read-only or missing /opt/ml/output must not hide the cause
        print(f"(could not write {path}: {err})", file=sys.stderr, flush=True)
    return reason
