"""What a YOLO job prints: a metric line per epoch, progress lines, the final evaluation.

Metric lines go through :meth:`container.schema.Schema.metric_line`: only a tag and keys that
``schema.yaml`` declares, in the format its metric definitions (the regexes SageMaker uses) read.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from container import tracking
from container.schema import Schema
from container.yolo import checkpoints


def log(msg: str) -> None:
    print(msg, flush=True)


def export_formats(value: Any) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip().lower() for v in items if str(v).strip()]


# -- the callbacks -------------------------------------------------------------------------------
class Reporter:
    """Metric lines and progress lines, as ultralytics callbacks. (Stopping is the trainer's: resumable.py.)"""

    def __init__(self, progress_interval: float, per_class: bool, final_file: Path) -> None:
        self.interval = progress_interval
        self.per_class = per_class
        self.final_file = final_file  # the final evaluation's numbers, kept for a restart that only packages
        self.in_epoch = False
        self.batches = 0
        self.last_progress = 0.0
        self.epoch_start = 0.0
        self.final: dict[str, float] = {}
        self.per_class_ap: dict[str, dict[str, float]] = {}
        self.epochs_done = 0

    def attach(self, model) -> None:
        for event in ("on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "on_fit_epoch_end"):
            model.add_callback(event, getattr(self, event))

    def on_train_epoch_start(self, trainer) -> None:
        self.batches = 0
        self.epoch_start = self.last_progress = time.monotonic()

    def on_train_batch_end(self, trainer) -> None:
        self.batches += 1
        now = time.monotonic()
        if self.interval and now - self.last_progress >= self.interval:
            self.last_progress = now
            total = len(trainer.train_loader)
            elapsed = now - self.epoch_start
            left = elapsed / self.batches * (total - self.batches)
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            loss = " ".join(f"{k.split('/')[-1]}={float(v):.4f}" for k, v in losses.items())
            log(f"[progress] epoch {trainer.epoch + 1}/{trainer.epochs} batch {self.batches}/{total} "
                f"({self.batches / total:.0%}) {elapsed:.0f}s elapsed, ~{left:.0f}s left in epoch; {loss}")

    def on_train_epoch_end(self, trainer) -> None:
        self.in_epoch = True

    def on_fit_epoch_end(self, trainer) -> None:
        metrics = {_short_key(k): v for k, v in trainer.metrics.items()}
        if self.in_epoch:  # after an epoch's validation
            self.in_epoch = False
            self.epochs_done = trainer.epoch + 1
            losses = {_short_key(k): v for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
            lr = next(iter(trainer.lr.values()), None) if getattr(trainer, "lr", None) else None
            values = {"epoch": trainer.epoch + 1, **losses,
                      **{k: v for k, v in metrics.items() if k.startswith("val_")},
                      **{k: v for k, v in metrics.items() if not k.startswith("val_")}, "lr": lr}
            # the running best (ultralytics' fitness is mAP50-95): the tuning objective, every epoch, of best.pt
            if getattr(trainer, "best_fitness", None) is not None:
                values["best_mAP50-95"] = float(trainer.best_fitness)
            print(_metric_line("metrics", values), flush=True)
            tracking.log_metric_line(Schema.load("yolo"), "metrics", values, step=self.epochs_done)
            return
        # ultralytics' final evaluation of best.pt
        self.report_final({k: float(v) for k, v in metrics.items() if not k.startswith("val_")},
                          trainer.validator)

    def report_final(self, final: dict[str, float], validator) -> None:
        """Print the final line (and per-class lines), and keep them in the run folder for a restart."""
        self.final = final
        print(_metric_line("final", self.final), flush=True)
        tracking.log_metric_line(Schema.load("yolo"), "final", self.final, step=self.epochs_done)
        box = getattr(getattr(validator, "metrics", None), "box", None)
        if box is not None and len(getattr(box, "ap_class_index", [])):
            names = validator.names
            for i, cls in enumerate(box.ap_class_index):
                name = str(names[int(cls)])
                self.per_class_ap[name] = {"mAP50": float(box.ap50[i]), "mAP50-95": float(box.ap[i])}
        self.print_per_class(track=True)
        self.final_file.parent.mkdir(parents=True, exist_ok=True)
        checkpoints.write_atomic(self.final_file, json.dumps(
            {"final": self.final, "per_class": self.per_class_ap}).encode("utf-8"))

    def print_per_class(self, *, track: bool = False) -> None:
        """The per-class lines; ``track``: to MLflow too (not when a restart prints them again)."""
        if self.per_class:
            for name, values in self.per_class_ap.items():
                print(_metric_line("class", values, prefix=[f"class={name}"]), flush=True)
                if track:
                    tracking.log_metric_line(Schema.load("yolo"), "class", values, step=self.epochs_done,
                                             class_name=name)

    def restore_final(self) -> bool:
        """The final evaluation of an earlier attempt, printed again; False when it never finished."""
        try:
            data = json.loads(self.final_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        self.final, self.per_class_ap = data.get("final") or {}, data.get("per_class") or {}
        print(_metric_line("final", self.final), flush=True)
        self.print_per_class()
        return bool(self.final)


def _short_key(key: str) -> str:
    group, _, name = key.partition("/")
    name = name.replace("(B)", "")
    return name if group in ("train", "metrics") else f"{group}_{name}"


def quiet_progress_bars() -> None:
    """ultralytics' bars redraw with carriage returns; where stdout is no terminal, print them once."""
    if not sys.stdout.isatty():
        import ultralytics.utils.tqdm as tq

        # a stub mismatch only: the original is wrapped in functools.lru_cache, its replacement a plain function
        tq.is_noninteractive_console = lambda: True  # type: ignore[assignment]


def _metric_line(line: str, values: dict[str, Any], *, prefix: list[str] | tuple[str, ...] = ()) -> str:
    """Through the image's schema: a tag or key it does not declare cannot be printed."""
    return Schema.load("yolo").metric_line(line, values, prefix=prefix)
