"""Compare trained models (the seed's spreadsheet of runs): ``leaderboard``.

    from sdk.leaderboard import leaderboard
    board = leaderboard(["yolo-20261121-101500-ab12", "tfod-20261121-113000-cd34"], images="data/val/images")
    print(board.text())          # sorted by mAP50-95; also board.csv and board.png (mAP against ms per image)

Each entry is a SageMaker job name, a local-mode job name (``local=True``), a model folder (what
``fetch_model`` unpacked, an image's model folder (``contract.SAGEMAKER.model``), or a ``container.local --out``
folder), or a :class:`sdk.FetchedModel`. Accuracy comes from the job's own ``metrics.json`` (YOLO's final evaluation of
``best.pt``; the TensorFlow image's last COCO evaluation: AP is mAP50-95, AP50 is mAP50). Speed is
measured here, on the same images for every model: YOLO's ``best.pt`` with ultralytics, a TensorFlow
model's TFLite export with LiteRT — milliseconds per image, end to end, after a warm-up.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from container.annotations.paths import is_image
from sdk._errors import ConfigurationError

__all__ = ["Board", "Entry", "leaderboard", "measure_speed", "model_entry"]

COLUMNS = ("name", "image", "model", "imgsz", "batch", "epochs", "mAP50-95", "mAP50", "ms_per_image", "size_mb")


@dataclass
class Entry:
    name: str
    image: str  # yolo or tfod
    model: str  # model YAML / weights, or Model Garden experiment
    imgsz: int | None
    batch: int | None
    epochs: int | None  # epochs (YOLO) or steps (TF)
    map50_95: float | None
    map50: float | None
    ms_per_image: float | None = None
    size_mb: float | None = None
    directory: Path | None = field(default=None, repr=False)
    weights: Path | None = field(default=None, repr=False)  # what is timed: best.pt or a .tflite
    note: str = ""

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.image, "model": self.model, "imgsz": self.imgsz,
                "batch": self.batch, "epochs": self.epochs, "mAP50-95": self.map50_95, "mAP50": self.map50,
                "ms_per_image": self.ms_per_image, "size_mb": self.size_mb}


def _model_dir(path: Path, scratch: Path) -> Path:
    """The unpacked model folder in ``path``: itself, ``model/``, ``opt_ml/model``, or its ``model.tar.gz``."""
    for candidate in (path, path / "model", path / "opt_ml" / "model"):
        if (candidate / "metrics.json").is_file():
            return candidate
    tarball = path if path.name.endswith(".tar.gz") else path / "model.tar.gz"
    if tarball.is_file():
        from sdk.jobs.unpack import unpack  # the archive checks, with SDK errors

        target = scratch / (path.stem if path.is_file() else path.name)
        unpack(tarball, target, exclusive=False)
        if (target / "metrics.json").is_file():
            return target
    raise ConfigurationError(f"{path} holds no trained model (no metrics.json, model/ or model.tar.gz)")


def model_entry(directory: Path, name: str | None = None) -> Entry:
    """An :class:`Entry` from a model folder's ``metrics.json`` (either image's layout)."""
    metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    hps = metrics.get("hyperparameters", {})
    final = metrics.get("final", {}) or {}
    name = name or metrics.get("job_name") or directory.name
    if (directory / "best.pt").is_file():
        weights = directory / "best.pt"
        return Entry(name, "yolo", str(hps.get("model", "?")), _int(hps.get("imgsz")), _int(hps.get("batch")),
                     _int(hps.get("epochs")), _float(final.get("mAP50-95")), _float(final.get("mAP50")),
                     size_mb=round(weights.stat().st_size / 2**20, 2), directory=directory, weights=weights)
    tflite = next((directory / n for n in ("model_float.tflite", "model.tflite") if (directory / n).is_file()), None)
    return Entry(name, "tfod", str(hps.get("experiment", "?")), _int(hps.get("image_size")),
                 _int(hps.get("batch_size")),
                 _int(hps.get("num_steps")), _float(final.get("AP")), _float(final.get("AP50")),
                 size_mb=round(tflite.stat().st_size / 2**20, 2) if tflite else None, directory=directory,
                 weights=tflite, note="" if tflite else "no TFLite export to time")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return None


def _images(images: str | Path | None, scratch: Path, count: int) -> list[Path]:
    if images is None:
        from container.synthetic import make_shapes

        root = make_shapes(scratch / "speed-images", train=count, val=0, size=320)
        return sorted((root / "images" / "train").iterdir())[:count]
    path = Path(images)
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if is_image(p.name))
    if not found:
        raise ConfigurationError(f"no images in {path} to time the models on")
    return found[:count]


def measure_speed(entry: Entry, images: list[Path], warmup: int = 2) -> float | None:
    """Milliseconds per image, end to end (read, resize, infer, post-process), median over ``images``."""
    if entry.weights is None:
        return None
    times = []
    if entry.image == "yolo":
        from ultralytics import YOLO

        model = YOLO(str(entry.weights))
        kwargs: dict[str, Any] = {"imgsz": entry.imgsz or 640, "device": "cpu", "verbose": False}
        for image in images[:warmup]:
            model.predict(str(image), **kwargs)
        for image in images:
            start = time.perf_counter()
            model.predict(str(image), **kwargs)
            times.append(time.perf_counter() - start)
    else:
        from PIL import Image

        from sdk.edge import detect, open_interpreter

        runner = open_interpreter(entry.weights)
        for image in images[:warmup]:
            detect(runner, Image.open(image), [])
        for image in images:
            start = time.perf_counter()
            detect(runner, Image.open(image), [])
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


@dataclass
class Board:
    entries: list[Entry]
    csv: Path | None = None
    png: Path | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [e.row() for e in self.entries]

    def text(self) -> str:
        rows = [[("" if v is None else str(v)) for v in r.values()] for r in self.rows()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=False))
        body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) for r in rows]
        return "\n".join([line, "-" * len(line), *body])


def plot(entries: list[Entry], path: Path, title: str) -> Path:
    """mAP50-95 against milliseconds per image: one line per model (its image sizes), like the YOLOv5 plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    points = [e for e in entries if e.ms_per_image is not None and e.map50_95 is not None]
    families: dict[tuple[str, str], list[Entry]] = {}
    for e in points:
        families.setdefault((e.image, e.model), []).append(e)
    for (image, model), members in sorted(families.items()):
        members.sort(key=lambda e: e.ms_per_image or 0.0)
        marker = "o" if image == "yolo" else "s"
        label = f"{model} ({'best.pt, ultralytics' if image == 'yolo' else 'TFLite, LiteRT'})"
        ax.plot([e.ms_per_image or 0.0 for e in members], [100 * (e.map50_95 or 0.0) for e in members], marker=marker,
                linewidth=1.5, markersize=7, label=label)
        for i, e in enumerate(members):
            ax.annotate(f"{e.imgsz}px", (e.ms_per_image or 0.0, 100 * (e.map50_95 or 0.0)), fontsize=8,
                        xytext=(6, 6 if i % 2 == 0 else -12), textcoords="offset points")
    top = max((100 * (e.map50_95 or 0.0) for e in points), default=1.0)
    ax.set_ylim(0, max(top * 1.15, 1.0))
    ax.set_xlabel("inference time per image (ms, this machine's CPU, end to end)")
    ax.set_ylabel("mAP50-95 (%) on the job's validation set")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if families:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def leaderboard(sources: Iterable[Any], *, local: bool = False, images: str | Path | None = None,
                count: int = 10, out: str | Path = "leaderboard", timed: bool = True, session: Any = None,
                title: str = "mAP against inference time") -> Board:
    """Fetch (if needed), read, time and rank models; writes ``leaderboard.csv`` and ``leaderboard.png`` in ``out``."""
    from sdk.jobs.fetch import FetchedModel, fetch_model

    out = Path(out)
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="leaderboard-") as tmp:
        scratch = Path(tmp)
        for source in sources:
            if isinstance(source, FetchedModel):
                entries.append(model_entry(source.directory, source.job_name))
            elif Path(str(source)).exists():
                entries.append(model_entry(_model_dir(Path(source), scratch), Path(source).name))
            elif "/" in str(source) or isinstance(source, Path):  # job names have no slashes: a folder was meant
                raise ConfigurationError(f"no such model folder: {source}")
            else:
                from sdk.jobs.local import jobs_home

                # a local job's name is one without local=True too: asking AWS would need a region for nothing
                is_local = local or (jobs_home() / str(source) / "job.json").is_file()
                fetched = fetch_model(str(source), local=is_local, dest=out / "models" / str(source), session=session)
                entries.append(model_entry(fetched.directory, fetched.job_name))
        if not entries:
            raise ConfigurationError("nothing to compare: give job names or model folders")
        if timed:
            sample = _images(images, scratch, count)
            for entry in entries:
                print(f"timing {entry.name} ({entry.image}) on {len(sample)} images", file=sys.stderr)
                entry.ms_per_image = measure_speed(entry, sample)
    entries.sort(key=lambda e: (e.map50_95 is None, -(e.map50_95 or 0), e.ms_per_image or 0))
    board = Board(entries)
    out.mkdir(parents=True, exist_ok=True)
    board.csv = out / "leaderboard.csv"
    with board.csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(board.rows())
    (out / "leaderboard.json").write_text(json.dumps([{**asdict(e), "directory": str(e.directory),
                                                       "weights": str(e.weights)} for e in entries], indent=2))
    if timed:
        board.png = plot(entries, out / "leaderboard.png", title)
    return board

