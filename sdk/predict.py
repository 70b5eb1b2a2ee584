"""Run a trained model on images, a folder or a video (the seeds' predict and track scripts): ``predict``.

    from sdk.predict import predict
    result = predict("models/yolo-2026.../", "clips/line3.mp4", track=True, out="predictions")
    result.json_path, result.outputs, result.tracks      # detections per frame, annotated files, tracks

    python -m sdk predict models/yolo-2026.../ clips/line3.mp4 --track --out predictions

The model is a folder ``fetch_model`` unpacked (or its ``best.pt`` / ``.tflite``), a
:class:`sdk.FetchedModel`, or an endpoint: an :class:`sdk.serving.Endpoint` / ``LocalEndpoint`` handle, or
``"endpoint:NAME"`` (each frame sent as a JPEG; see docs/serving.md). YOLO models run with ultralytics;
``track=True`` follows objects across frames with ultralytics' own trackers (ByteTrack by default, BoT-SORT
with ``tracker="botsort"``, or a
tracker YAML of your own). TensorFlow models run their TFLite export with LiteRT (detection only).
Writes one annotated image per input image, or one annotated video per input video, and
``detections.json``: per frame, each box as ``[x1, y1, x2, y2]`` pixels with label, score and track id.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.annotations.paths import IMG_SUFFIXES
from container.serving.video import VIDEO_TYPES
from sdk._errors import ConfigurationError

VIDEO = set(VIDEO_TYPES.values())  # the containers serving takes too (declared once, in container.serving.video)
IMAGE = IMG_SUFFIXES  # declared once, in the annotation library
TRACKERS = {"bytetrack": "bytetrack.yaml", "botsort": "botsort.yaml"}

__all__ = ["Prediction", "predict", "resolve_model"]


@dataclass
class Prediction:
    json_path: Path
    outputs: list[Path]
    frames: list[dict[str, Any]]
    tracks: dict[int, dict[str, Any]] = field(default_factory=dict)


def resolve_model(model: Any) -> tuple[str, Any, list[str]]:
    """``(kind, weights, labels)``: ``("yolo", best.pt, names)``, ``("tflite", model.tflite, names)``, or
    ``("endpoint", handle, [])``."""
    if callable(getattr(model, "predict", None)) and hasattr(model, "name") and not isinstance(model, (str, Path)):
        return "endpoint", model, []
    if isinstance(model, str) and model.startswith("endpoint:"):
        from sdk.serving import Endpoint

        return "endpoint", Endpoint.attach(model.removeprefix("endpoint:")), []
    directory = getattr(model, "directory", None)
    path = Path(directory if directory is not None else model)
    if path.is_dir():
        for candidate in ("best.pt", "model.tflite", "model_float.tflite"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise ConfigurationError(f"{path} holds neither best.pt nor a .tflite model")
    if not path.is_file():
        raise ConfigurationError(f"no model at {path}")
    if path.suffix == ".pt":
        return "yolo", path, []
    if path.suffix == ".tflite":
        from sdk.edge import read_labels

        labels = path.parent / "label_map.csv"
        return "tflite", path, read_labels(labels) if labels.is_file() else []
    raise ConfigurationError(f"{path.name}: expected a YOLO best.pt or a .tflite model")


def _sources(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE | VIDEO)
        if not found:
            raise ConfigurationError(f"no images or videos in {path}")
        return found
    if not path.is_file():
        raise ConfigurationError(f"no such image, video or folder: {path}")
    if path.suffix.lower() not in IMAGE | VIDEO:
        raise ConfigurationError(f"{path.name}: not an image ({', '.join(sorted(IMAGE))}) "
                                 f"or a video ({', '.join(sorted(VIDEO))})")
    return [path]


def _tracker(tracker: str) -> str:
    if tracker in TRACKERS:
        return TRACKERS[tracker]
    if Path(tracker).is_file():
        return str(tracker)
    raise ConfigurationError(f"tracker {tracker!r}: use bytetrack, botsort or the path of a tracker YAML")


def _frames(path: Path) -> Iterator[tuple[int, Any]]:
    """(index, BGR frame) of an image or each frame of a video, read with OpenCV."""
    import cv2

    if path.suffix.lower() in IMAGE:
        frame = cv2.imread(str(path))
        if frame is None:
            raise ConfigurationError(f"cannot read image {path}")
        yield 0, frame
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigurationError(f"cannot open video {path}")
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, frame
            index += 1
    finally:
        capture.release()


class _Writer:
    """Annotated output: the image itself, or frames appended to a video at the source's frame rate."""

    def __init__(self, source: Path, out: Path) -> None:
        import cv2

        self.video = source.suffix.lower() in VIDEO
        self.path = out / (f"{source.stem}_pred.mp4" if self.video else f"{source.stem}_pred{source.suffix}")
        self.fps = cv2.VideoCapture(str(source)).get(cv2.CAP_PROP_FPS) if self.video else 0
        self.writer: Any = None

    def write(self, frame: Any) -> None:
        import cv2

        if not self.video:
            cv2.imwrite(str(self.path), frame)
            return
        if self.writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps or 25,
                                          (width, height))
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _yolo_detections(result: Any, names: dict[int, str]) -> list[dict[str, Any]]:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    ids = boxes.id.int().tolist() if boxes.id is not None else [None] * len(boxes)
    return [{"label": names.get(int(c), str(int(c))), "class_id": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in xyxy], "track_id": t}
            for xyxy, s, c, t in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), ids, strict=False)]


def _endpoint_detections(endpoint: Any, frame: Any, conf: float) -> tuple[list[dict[str, Any]], Any]:
    """One BGR frame through an endpoint (as a JPEG), and the frame with its boxes drawn."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ConfigurationError("cannot encode the frame as JPEG")
    result = endpoint.predict(encoded.tobytes(), conf=conf)
    annotated = frame.copy()
    found = []
    for d in result["detections"]:
        found.append({**d, "track_id": None})
        x1, y1, x2, y2 = (round(v) for v in d["box"])
        cv2.rectangle(annotated, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(annotated, f"{d['label']} {d['score']:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 200, 255), 1)
    return found, annotated


def predict(model: Any, source: str | Path, *, out: str | Path = "predictions", track: bool = False,
            tracker: str = "bytetrack", conf: float = 0.25, imgsz: int | None = None, progress_every: int = 100
            ) -> Prediction:
    """Detect (and with ``track=True`` track) objects in ``source``; see the module's docstring."""
    kind, weights, labels = resolve_model(model)
    sources = _sources(source)
    if track and kind != "yolo":
        raise ConfigurationError("track=True needs a YOLO model (best.pt): ultralytics' trackers follow its boxes"
                                 + (" in this process, not an endpoint's" if kind == "endpoint" else ""))
    if not 0 <= conf <= 1:
        raise ConfigurationError(f"conf must be 0 to 1, got {conf}")
    tracker_cfg = _tracker(tracker) if track else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames: list[dict[str, Any]] = []
    outputs: list[Path] = []
    tracks: dict[int, dict[str, Any]] = {}
    if kind == "yolo":
        from ultralytics import YOLO

        net = YOLO(str(weights))
        names = dict(net.names)
    elif kind == "endpoint":
        pass
    else:
        from PIL import Image

        from sdk.edge import detect, draw, open_interpreter

        runner = open_interpreter(weights)
    for path in sources:
        writer = _Writer(path, out)
        if track:
            net.predictor = None  # a new source starts new tracks
        try:
            for index, frame in _frames(path):
                if kind == "yolo":
                    call = net.track if track else net.predict
                    extra: dict[str, Any] = {"persist": True, "tracker": tracker_cfg} if track else {}
                    (result,) = call(frame, conf=conf, imgsz=imgsz or net.overrides.get("imgsz", 640),
                                     verbose=False, **extra)
                    found = _yolo_detections(result, names)
                    annotated = result.plot()  # type: ignore[union-attr]  # a list of Results, never a Tensor
                elif kind == "endpoint":
                    found, annotated = _endpoint_detections(weights, frame, conf)
                else:
                    import cv2
                    import numpy as np

                    image = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    detections = detect(runner, image, labels, conf)
                    found = [{"label": d.label, "class_id": d.class_id, "score": round(d.score, 4),
                              "box": [round(v, 1) for v in d.box], "track_id": None} for d in detections]
                    annotated = cv2.cvtColor(np.asarray(draw(image, detections)), cv2.COLOR_RGB2BGR)
                writer.write(annotated)
                frames.append({"source": str(path), "frame": index, "detections": found})
                for d in found:
                    if d["track_id"] is not None:
                        t = tracks.setdefault(d["track_id"], {"label": d["label"], "source": str(path),
                                                              "first_frame": index, "frames": 0})
                        t["frames"] += 1
                        t["last_frame"] = index
                if progress_every and writer.video and index and index % progress_every == 0:
                    print(f"{path.name}: frame {index}", file=sys.stderr)
        finally:
            writer.close()
        outputs.append(writer.path)
    json_path = out / "detections.json"
    json_path.write_text(json.dumps({"model": str(getattr(weights, "name", weights)), "tracker": tracker_cfg,
                                     "conf": conf, "frames": frames,
                                     "tracks": {str(k): v for k, v in sorted(tracks.items())}}, indent=1))
    return Prediction(json_path, outputs, frames, tracks)
