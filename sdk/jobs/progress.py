"""What a notebook shows of a running job: one updating progress line, and the per-epoch series.

Both read the job's own log with the job's own ``MetricDefinitions`` (the regexes SageMaker uses,
generated from the image's schema), plus the image's ``[progress] epoch k/N`` lines; the schema's
``progress`` block says which metric is the epoch and which score to show. Works the same for a
SageMaker job (CloudWatch lines) and a local one (``log.txt``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import IO, Any

PROGRESS_RE = re.compile(r"\[progress\] epoch (\d+)/(\d+)")
History = dict[str, list[tuple[float, float]]]


def _compiled(definitions: Iterable[dict[str, str]]) -> list[tuple[str, re.Pattern[str]]]:
    return [(d["Name"], re.compile(d["Regex"])) for d in definitions]


def metrics_history(definitions: Iterable[dict[str, str]], lines: Iterable[str], *, step: str = "epoch") -> History:
    """``{metric: [(epoch, value), ...]}``: each value with the epoch (or step) of the line that carried it.

    ``step`` is the metric that numbers the series (``epoch`` for YOLO, ``step`` for the TF image); a
    value on a line without it belongs to the latest one seen. Lines no regex reads are skipped.
    """
    compiled = _compiled(definitions)
    history: History = {}
    current = 0.0
    for line in lines:
        found: dict[str, float] = {}
        for name, regex in compiled:
            m = regex.search(line)
            if m:
                try:
                    found[name] = float(m.group(1))
                except (ValueError, IndexError):
                    continue
        if not found:
            continue
        current = found.get(step, current)
        for name, value in found.items():
            if name != step:
                history.setdefault(name, []).append((current, value))
    return history


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressLine:
    """Feeds on log lines; ``text()`` is ``epoch 3/50 | 1:12 elapsed | ETA 19:40 | val:mAP50-95 0.412``."""

    def __init__(self, name: str, definitions: Iterable[dict[str, str]], *, step: str = "epoch",
                 total: int | None = None, score: str = "", started: float | None = None) -> None:
        self.name = name
        self.compiled = _compiled(definitions)
        self.step, self.score = step, score
        self.total = total
        self.epoch = 0
        self.value: float | None = None
        self.started = started if started is not None else time.time()
        self.first_epoch_at: float | None = None
        self.first_epoch = 0
        self.status = ""

    def feed(self, line: str) -> None:
        m = PROGRESS_RE.search(line)
        if m:  # inside an epoch: epoch k of N is running, k-1 are done
            self.total = int(m.group(2))
            return
        for metric, regex in self.compiled:
            found = regex.search(line)
            if not found:
                continue
            if metric == self.step:
                self.epoch = int(float(found.group(1)))
                if self.first_epoch_at is None:
                    self.first_epoch_at, self.first_epoch = time.time(), self.epoch
            elif metric == self.score:
                self.value = float(found.group(1))

    def text(self) -> str:
        now = time.time()
        parts = [self.name]
        if self.status:
            parts.append(self.status)
        if self.epoch:
            parts.append(f"{self.step} {self.epoch}/{self.total}" if self.total else f"{self.step} {self.epoch}")
        parts.append(f"{_clock(now - self.started)} elapsed")
        if self.total and self.first_epoch_at is not None and self.epoch > self.first_epoch:
            per = (now - self.first_epoch_at) / (self.epoch - self.first_epoch)
            parts.append(f"ETA {_clock(per * (self.total - self.epoch))}")
        elif self.total and self.epoch and self.epoch >= self.total:
            parts.append("ETA 0:00")
        if self.value is not None:
            parts.append(f"{self.score} {self.value:.3f}")
        return " | ".join(parts)

    def show(self, out: IO[str], *, final: bool = False) -> None:
        """Rewrite the line in place (``\\r``), a newline at the end. A notebook shows ``\\r`` the same way."""
        out.write("\r" + self.text().ljust(100)[:160] + ("\n" if final else ""))
        out.flush()


def for_request(name: str, request_or_info: dict[str, Any], kind: str | None, *, started: float | None = None
                ) -> ProgressLine:
    """A progress line set up from a job's request (or description) and its image's schema."""
    from container.schema import Schema

    algo = request_or_info.get("AlgorithmSpecification", {})
    definitions = algo.get("MetricDefinitions", [])
    progress: dict[str, str] = {}
    total = None
    if kind:
        schema = Schema.load(kind)
        progress = dict(schema.progress)
        key = progress.get("epochs", "")
        raw = (request_or_info.get("HyperParameters") or {}).get(key)
        try:
            total = int(float(raw)) if raw is not None else int(schema.params[key].default)
        except (KeyError, TypeError, ValueError):
            total = None
    return ProgressLine(name, definitions, step=progress.get("epoch", "epoch"), total=total,
                        score=progress.get("score", ""), started=started)


def kind_of(request_or_info: dict[str, Any]) -> str | None:
    """Which image a job ran, from its image URI (``local/yolo`` for a local process run)."""
    from sdk._errors import ConfigurationError
    from sdk.jobs.request import resolve_image

    image = request_or_info.get("AlgorithmSpecification", {}).get("TrainingImage", "")
    try:
        return resolve_image(image.split("/", 1)[1] if image.startswith("local/") else image).kind
    except ConfigurationError:
        return None
