"""The YOLO image's serving adapter: the model folder as training wrote it, loaded once per worker.

* ``best.pt`` (default) runs through ultralytics (torch), batches included;
* ``SERVING_WEIGHTS=onnx`` (or ``exports/best.onnx``) runs the ONNX export with onnxruntime and NumPy only:
  torch is never imported, so a worker starts faster and takes far less memory (see docs/serving.md for
  the numbers). Pre- and post-processing follow ultralytics' own (letterbox with grey 114, per-class NMS,
  boxes scaled back to the original image), so both give the same boxes.

Class names come from ``data.yaml``; the default thresholds (conf, iou, max_det) and the image size from
``args.yaml``, the arguments the model was trained and validated with.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from container.failure import UserError, shorten
from container.serving import variant
from container.serving.protocol import Detection, ModelLoadError, Thresholds
from container.serving.resources import WEIGHTS_ENV, intra_op_threads

NMS_ENV = "SERVING_NMS"  # true (default): NMS, as ultralytics predicts; false: the NMS-free head (YOLO26)
ULTRALYTICS_DEFAULT_CONF = 0.25  # ultralytics' predict default; training's conf (null) is for validation


FORMAT_NAME = re.compile(r"[a-z0-9_]+")  # ultralytics' export formats: onnx, torchscript, openvino, engine, ...
FOLDER_FIX = "serve the model folder a training job wrote (its model.tar.gz unpacked, unchanged)"


def weights_path(model_dir: Path, choice: str | None = None) -> Path:
    """The weights ``SERVING_WEIGHTS`` names: ``best.pt``, a format (``onnx``, any case), or a path in the folder."""
    serve_only = variant.serve_only()  # the torch-free serving variant: ONNX exports only
    choice = (choice if choice is not None else os.environ.get(WEIGHTS_ENV, "")).strip() or (
        "onnx" if serve_only else "best.pt")
    shown = shorten(choice)  # a huge value echoed whole would bury the fix
    exports = model_dir / "exports"
    if "/" not in choice and "." not in choice:  # a format name
        choice = choice.lower()
        if not FORMAT_NAME.fullmatch(choice):
            raise UserError(f"{WEIGHTS_ENV}={shown}: takes best.pt, a format name (onnx) or a file in the model "
                            "folder (exports/best.onnx)")
        if serve_only and choice != "onnx":  # before looking: the variant could not serve what it would find
            raise variant.refuse(f"{WEIGHTS_ENV}={shown}")
        found = sorted(p for p in exports.glob(f"*.{choice}") if p.is_file()) if exports.is_dir() else []
        if not found:
            have = sorted(p.name + "/" * p.is_dir() for p in exports.iterdir()) if exports.is_dir() else []
            instead = f"or serve best.pt with {variant.FULL_IMAGE}" if serve_only else "or serve best.pt"
            raise UserError(f"{WEIGHTS_ENV}={shown}: no *.{shorten(choice)} in {exports} (exports there: "
                            f"{', '.join(have) or 'none'}). Train with the hyperparameter export={shorten(choice)}, "
                            f"{instead}")
        return found[0]
    try:
        path = (model_dir / choice).resolve()
        there = path.is_relative_to(model_dir.resolve()) and path.exists()
    except (OSError, ValueError):  # a name longer than the file system allows (ENAMETOOLONG), a NUL byte
        there = False
    if not there:
        held = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        raise UserError(f"{WEIGHTS_ENV}={shown}: no such file in {model_dir} (it holds "
                        f"{', '.join(held) or 'nothing'})")
    if path.suffix not in (".pt", ".onnx"):
        raise UserError(f"{WEIGHTS_ENV}={shown}: serving runs .pt or .onnx weights, not {path.suffix or path.name}")
    if serve_only and path.suffix != ".onnx":
        raise variant.refuse(f"{WEIGHTS_ENV}={shown}")
    return path


def check(model_dir: Path) -> Path:
    """What ``load`` will read, checked without importing a framework: in the master before gunicorn starts, so a
    broken data.yaml or args.yaml stops ``serve`` with exit 2 naming it (in a worker it was a load error blaming the
    weights, and /ping answered 500 for ever)."""
    weights = weights_path(model_dir)
    if not (model_dir / "data.yaml").is_file() and weights.suffix == ".onnx":
        raise UserError(f"{model_dir / 'data.yaml'} is missing: the ONNX model needs it for the class names")
    training_args(model_dir, weights)
    return weights


@dataclass(frozen=True)
class TrainingArgs:
    names: list[str]
    defaults: Thresholds
    imgsz: int
    name: str


def _yaml_mapping(path: Path) -> dict[str, Any]:
    """A model folder's YAML file as a mapping ({} when absent or empty); a UserError naming it otherwise."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not valid YAML ({shorten(first)}): {FOLDER_FIX}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a mapping of settings: {FOLDER_FIX}")
    return data


def _class_names(path: Path) -> list[str]:
    raw = _yaml_mapping(path).get("names") or []
    try:
        if isinstance(raw, dict):
            return [str(raw[k]) for k in sorted(raw, key=int)]
        if isinstance(raw, list):
            return [str(n) for n in raw]
    except (TypeError, ValueError):
        pass
    raise UserError(f"{path}: names is {shorten(raw)}, not a list of class names nor a mapping of class ids (0, 1, "
                    f"...) to names: {FOLDER_FIX}")


def _job_name(path: Path) -> str:
    """The training job's name from metrics.json, only to name the model: "" when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("job_name") or "") if isinstance(data, dict) else ""


def training_args(model_dir: Path, weights: Path) -> TrainingArgs:
    names = _class_names(model_dir / "data.yaml")
    args = _yaml_mapping(model_dir / "args.yaml")
    job = _job_name(model_dir / "metrics.json")
    key = "imgsz"
    try:
        imgsz = args.get("imgsz") or 640
        size = int(max(imgsz) if isinstance(imgsz, list) else imgsz)
        key = "conf/iou/max_det"
        defaults = Thresholds(conf=float(args.get("conf") or ULTRALYTICS_DEFAULT_CONF),
                              iou=float(args.get("iou") or 0.7), max_det=int(args.get("max_det") or 300))
    except (TypeError, ValueError) as err:
        values = ", ".join(f"{k}={shorten(repr(args.get(k)), 40)}" for k in key.split("/"))
        raise UserError(f"{model_dir / 'args.yaml'}: {shorten(values)} is not usable ({shorten(str(err))}): "
                        f"{FOLDER_FIX}") from None
    return TrainingArgs(names, defaults, size, f"{job}/{weights.name}" if job else weights.name)


def has_nms_free_head(model: Any) -> bool:
    """An ultralytics YOLO whose detection head has the one-to-one branch (YOLO26, YOLOv10)."""
    try:
        head = model.model.model[-1]  # YOLO -> DetectionModel -> its layers
    except (AttributeError, IndexError, TypeError):
        return False
    return getattr(head, "one2one_cv2", None) is not None


def nms_free(model: Any, environ: Any = os.environ) -> bool:
    """Whether to predict with the model's NMS-free (one-to-one) head, which YOLO26 and YOLOv10 have and
    ultralytics 8.4 uses only when asked (``nms=False``). Asked by ``SERVING_NMS=false`` only: the default is
    ultralytics' own NMS path, because the one-to-one head can trail it (docs/benchmarks.md: 0.51 against 0.64
    mAP50-95 after 30 epochs on shapes); validate both (``YOLO.val(nms=False)``) before choosing it."""
    choice = (environ.get(NMS_ENV) or "true").strip().lower()
    if choice not in ("true", "false"):
        raise UserError(f"{NMS_ENV}={choice!r}: true (NMS, the default) or false (the NMS-free head of YOLO26 "
                        "and YOLOv10)")
    if choice == "false" and not has_nms_free_head(model):
        raise UserError(f"{NMS_ENV}=false: this model has no NMS-free head (YOLO26 and YOLOv10 have one)")
    return choice == "false"


class TorchPredictor:
    """``best.pt`` (or another .pt) through ultralytics."""

    def __init__(self, weights: Path, info: TrainingArgs) -> None:
        import numpy as np
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(intra_op_threads())
        self.weights = weights
        self.model = YOLO(str(weights), task="detect")
        self.imgsz = info.imgsz
        self.name, self.defaults = info.name, info.defaults
        self.names = info.names or [self.model.names[i] for i in sorted(self.model.names)]
        self.nms_free = nms_free(self.model)
        self.options: dict[str, Any] = {"nms": False} if self.nms_free else {}  # ultralytics: False = NMS-free head
        self.predict([np.zeros((self.imgsz, self.imgsz, 3), np.uint8)], self.defaults)  # warm up
        # where ultralytics put the model (cuda:0 on a GPU instance, as it picks by itself), read after the warm-up
        device = getattr(getattr(self.model, "predictor", None), "device", None) or torch.device("cpu")
        self.device = f"torch {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")

    def predict(self, images: list[Any], thresholds: Thresholds) -> list[list[Detection]]:
        results = self.model.predict([image[..., ::-1] for image in images],  # ultralytics takes BGR arrays
                                     imgsz=self.imgsz, conf=thresholds.conf, iou=thresholds.iou,
                                     max_det=thresholds.max_det, verbose=False, **self.options)
        return [_detections(result) for result in results]

    def tracking(self, tracker: str) -> Tracking:
        """Tracks over one video (container/serving/video.py): a fresh copy of the model, so that its trackers
        start empty and the shared model's predictions are untouched."""
        from ultralytics import YOLO

        return Tracking(YOLO(str(self.weights), task="detect"), tracker, self.imgsz, self.options)


def _detections(result: Any) -> list[Detection]:
    """One image's ultralytics ``Results`` as Detections. Any: ultralytics annotates ``predict`` as returning tensors
    or a generator too (its embed and stream modes, which this code does not use)."""
    boxes = result.boxes
    return [Detection.of(c, s, b)
            for b, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=False)]


class Tracking:
    """ultralytics' ``track`` frame by frame (persisting its tracker), as ``python -m sdk predict --track``."""

    def __init__(self, model: Any, tracker: str, imgsz: int, options: dict[str, Any]) -> None:
        self.model, self.tracker, self.imgsz, self.options = model, tracker, imgsz, options

    def track(self, images: list[Any], thresholds: Thresholds) -> list[list[tuple[Detection, int | None]]]:
        out = []
        for image in images:
            (result,) = self.model.track(image[..., ::-1], persist=True, tracker=self.tracker, imgsz=self.imgsz,
                                         conf=thresholds.conf, iou=thresholds.iou, max_det=thresholds.max_det,
                                         verbose=False, **self.options)
            boxes = result.boxes
            ids = boxes.id.int().tolist() if boxes.id is not None else [None] * len(boxes)
            out.append([(Detection.of(c, s, b), t) for b, s, c, t in
                        zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), ids, strict=True)])
        return out


def letterbox(image: Any, size: tuple[int, int]) -> tuple[Any, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio and pad with grey 114 to ``size`` (h, w), as ultralytics' LetterBox.
    Returns the padded image, the (x, y) scale actually applied (sides are rounded) and the (left, top) pad."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    gain = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return np.ascontiguousarray(padded), (new_w / w, new_h / h), (left, top)


def nms(boxes: Any, scores: Any, iou: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    import numpy as np

    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return keep


def decode(output: Any, thresholds: Thresholds, gain: tuple[float, float], pad: tuple[float, float],
           shape: tuple[int, int], n_classes: int) -> list[Detection]:
    """YOLO's raw head output to detections in original pixels: [4 + classes, anchors] (cx, cy, w, h, class
    scores; NMS here), or an end-to-end model's [max_det, 6] (x1, y1, x2, y2, score, class; YOLO26, YOLOv10)."""
    import numpy as np

    if output.ndim == 2 and output.shape[1] == 6 and output.shape[0] != 4 + n_classes:
        keep = output[output[:, 4] > thresholds.conf][:thresholds.max_det]
        return _scaled(keep[:, :4], keep[:, 4], keep[:, 5].astype(int), gain, pad, shape)
    pred = output.T
    scores_all = pred[:, 4:]
    class_ids = scores_all.argmax(1)
    scores = scores_all[np.arange(len(pred)), class_ids]
    mask = scores > thresholds.conf
    pred, class_ids, scores = pred[mask], class_ids[mask], scores[mask]
    if not len(pred):
        return []
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    offset = boxes + class_ids[:, None] * 7680.0  # per-class NMS in one pass, ultralytics' max_wh trick
    keep = nms(offset, scores, thresholds.iou)[:thresholds.max_det]
    return _scaled(boxes[keep], scores[keep], class_ids[keep], gain, pad, shape)


def _scaled(boxes: Any, scores: Any, class_ids: Any, gain: tuple[float, float], pad: tuple[float, float],
            shape: tuple[int, int]) -> list[Detection]:
    """Boxes from the letterboxed input back to the original image, clipped to it."""
    boxes = (boxes - [pad[0], pad[1], pad[0], pad[1]]) / [gain[0], gain[1], gain[0], gain[1]]
    height, width = shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return [Detection.of(c, s, b) for b, s, c in zip(boxes, scores, class_ids, strict=False)]


CUDA_PROVIDER = "CUDAExecutionProvider"


def preload_cuda(ort: Any) -> str:
    """Load the CUDA and cuDNN libraries of the nvidia-* wheels (the serving variant's CUDA build) with onnxruntime's
    own ``preload_dlls``, which looks in site-packages/nvidia, where no loader path points; what it could not load
    ("" when all loaded). It prints its failures instead of raising them: they are caught here for the load line."""
    import contextlib
    import io

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # an onnxruntime older than 1.21: the libraries must be on the loader's path
        return ""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        preload()
    return "; ".join(line.strip() for line in printed.getvalue().splitlines() if line.startswith("Failed to load"))


def cuda_missing() -> str:
    """Why the CUDA provider would not start once its libraries loaded: no driver, or a driver without a GPU."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found: no GPU, or the container was not started with one)"
    return "the NVIDIA driver found no usable GPU (see onnxruntime's message above)"


class OnnxPredictor:
    """An ultralytics ONNX export through onnxruntime; NumPy and OpenCV around it, no torch."""

    def __init__(self, weights: Path, info: TrainingArgs) -> None:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads()
        # CUDA where this onnxruntime has it (onnxruntime-gpu on a GPU instance), else the CPU; never TensorRT
        # unasked (it fails at the first run without its libraries)
        available = ort.get_available_providers()
        providers = [p for p in (CUDA_PROVIDER, "CPUExecutionProvider") if p in available]
        failed = preload_cuda(ort) if CUDA_PROVIDER in providers else ""
        self.session = ort.InferenceSession(str(weights), options, providers=providers)
        self.device = f"onnxruntime {self.session.get_providers()[0]}"
        if CUDA_PROVIDER in providers and self.session.get_providers()[0] != CUDA_PROVIDER:
            # onnxruntime falls back to the CPU with a warning of its own: the load line says so too
            self.device += f" ({CUDA_PROVIDER} did not start: {failed or cuda_missing()}; running on the CPU)"
        meta = self.session.get_modelmeta().custom_metadata_map  # ultralytics writes names and imgsz here
        self.input = self.session.get_inputs()[0]
        shape = self.input.shape
        self.size = (int(shape[2]), int(shape[3])) if all(isinstance(s, int) for s in shape[2:]) else \
            (info.imgsz, info.imgsz)
        self.name, self.defaults = info.name, info.defaults
        names = info.names
        if not names and "names" in meta:
            parsed = yaml.safe_load(meta["names"])
            names = [str(parsed[k]) for k in sorted(parsed)]
        self.names = names
        self.predict([np.zeros((*self.size, 3), np.uint8)], self.defaults)  # warm up

    def predict(self, images: list[Any], thresholds: Thresholds) -> list[list[Detection]]:
        import numpy as np

        out = []
        for image in images:  # exports have batch 1
            padded, gain, pad = letterbox(image, self.size)
            blob = (padded.transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
            raw = self.session.run(None, {self.input.name: blob})[0][0]
            out.append(decode(raw, thresholds, gain, pad, image.shape[:2], len(self.names)))
        return out


def load(model_dir: Path) -> Any:
    """The predictor for the weights ``SERVING_WEIGHTS`` names (``best.pt`` by default); a file that cannot be
    loaded is a ModelLoadError naming it."""
    weights = check(model_dir)
    try:
        return load_weights(model_dir, weights)
    except (UserError, ModelLoadError):
        raise
    except Exception as err:
        raise ModelLoadError(weights, err) from err


def load_weights(model_dir: Path, weights: Path) -> Any:
    info = training_args(model_dir, weights)
    return OnnxPredictor(weights, info) if weights.suffix == ".onnx" else TorchPredictor(weights, info)
