"""The TF image's serving adapter: the SavedModel training exported (``<model>/<n>/``, the highest ``n``).

The SavedModel's ``serving_default`` signature takes ``image_tensor``, uint8 [1, S, S, 3] at the training
``image_size`` S, and returns ``detection_boxes`` ([ymin, xmin, ymax, xmax] in pixels of that S x S input),
``detection_scores``, ``detection_classes`` (label-map ids, 1 = the first class) and ``num_detections``,
after the model's own NMS. Here: each image is resized to S x S, run, and its boxes scaled back to the
original image; ``conf`` filters, ``iou`` applies a further NMS where it is stricter than the model's own
(Model Garden's default 0.5), ``max_det`` truncates. ``class_id`` is the 0-based index into the class list,
as in the YOLO image (the label map's id is ``class_id + 1``).

Only :class:`SavedModelPredictor` imports TensorFlow; the rest runs (and is tested) without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from container.failure import UserError
from container.serving.protocol import Detection, ModelLoadError, Thresholds
from container.serving.resources import intra_op_threads

# Model Garden's RetinaNet detection generator defaults (nms_iou_threshold, max_num_detections); conf as YOLO's
DEFAULTS = Thresholds(conf=0.25, iou=0.5, max_det=100)


def saved_model_dir(model_dir: Path) -> Path:
    found = sorted((p.parent for p in model_dir.glob("[0-9]*/saved_model.pb")), key=lambda p: int(p.name))
    if not found:
        raise UserError(f"no SavedModel in {model_dir} (expected <n>/saved_model.pb, as training exports with "
                        f"export=saved_model); it holds {', '.join(sorted(p.name for p in model_dir.iterdir()))}")
    return found[-1]


def check(model_dir: Path) -> Path:
    saved = saved_model_dir(model_dir)
    class_names(model_dir)
    return saved


def class_names(model_dir: Path) -> list[str]:
    """From ``label_map.csv`` (``id,name``, written by training), else metrics.json's ``classes``."""
    from container.tfod.trainer import read_label_map  # reads CSV/pbtxt/YAML; no TensorFlow import

    for name in ("label_map.csv", "label_map.pbtxt"):
        if (model_dir / name).is_file():
            return read_label_map(model_dir / name)
    metrics = model_dir / "metrics.json"
    if metrics.is_file():
        classes = json.loads(metrics.read_text(encoding="utf-8")).get("classes")
        if classes:
            return [str(c) for c in classes]
    raise UserError(f"{model_dir} has no label_map.csv, label_map.pbtxt or metrics.json with the class names")


def to_detections(boxes: Any, scores: Any, classes: Any, count: int, *, input_size: tuple[int, int],
                  shape: tuple[int, int], thresholds: Thresholds) -> list[Detection]:
    """One image's SavedModel outputs (batch dimension removed) to detections in the original image."""
    import numpy as np

    from container.yolo.serve import nms  # the same greedy NMS; NumPy only

    boxes = np.asarray(boxes, np.float64)[:count]
    scores = np.asarray(scores, np.float64)[:count]
    classes = np.asarray(classes).astype(int)[:count]
    mask = scores > thresholds.conf
    boxes, scores, classes = boxes[mask], scores[mask], classes[mask]
    if not len(boxes):
        return []
    height, width = shape
    sy, sx = height / input_size[0], width / input_size[1]
    xyxy = np.stack([boxes[:, 1] * sx, boxes[:, 0] * sy, boxes[:, 3] * sx, boxes[:, 2] * sy], 1)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    keep = nms(xyxy + classes[:, None] * 1e5, scores, thresholds.iou)[:thresholds.max_det]
    return [Detection.of(int(classes[i]) - 1, scores[i], xyxy[i]) for i in keep]


def input_size(shape: Any, metrics: dict[str, Any]) -> tuple[int, int]:
    """(height, width) the SavedModel was exported for: its signature's, else training's ``image_size`` (Model
    Garden's ``image_tensor`` signature leaves height and width open; its graph still resizes to that size)."""
    dims = list(shape)[1:3]
    if len(dims) == 2 and all(d is not None for d in dims):
        return int(dims[0]), int(dims[1])
    size = (metrics.get("hyperparameters") or {}).get("image_size")
    if not size:
        raise UserError("the SavedModel's input size is open and metrics.json names no image_size: keep the "
                        "metrics.json training wrote beside the SavedModel")
    return int(size), int(size)


class SavedModelPredictor:
    def __init__(self, model_dir: Path) -> None:
        import numpy as np
        import tensorflow as tf

        threads = intra_op_threads()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        path = saved_model_dir(model_dir)
        self.names = class_names(model_dir)
        self.detect = tf.saved_model.load(str(path)).signatures["serving_default"]
        spec = self.detect.structured_input_signature[1]
        tensor = next(iter(spec.values()))
        self.input_name = next(iter(spec))
        metrics = {}
        if (model_dir / "metrics.json").is_file():
            metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
        self.size = input_size(tensor.shape, metrics)
        job = metrics.get("job_name") or ""
        self.name = f"{job}/saved_model/{path.name}" if job else f"saved_model/{path.name}"
        self.defaults = DEFAULTS
        self._tf = tf
        gpus = tf.config.list_logical_devices("GPU")
        self.device = f"tensorflow {gpus[0].name if gpus else '/device:CPU:0'}"
        self.predict([np.zeros((*self.size, 3), np.uint8)], self.defaults)  # warm up (traces the graph)

    def predict(self, images: list[Any], thresholds: Thresholds) -> list[list[Detection]]:
        import numpy as np
        from PIL import Image

        out = []
        for image in images:  # the export has batch size 1
            resized = Image.fromarray(image).resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            tensor = self._tf.convert_to_tensor(np.asarray(resized)[None])
            result = self.detect(**{self.input_name: tensor})
            count = int(result["num_detections"].numpy().reshape(-1)[0])
            out.append(to_detections(result["detection_boxes"].numpy()[0], result["detection_scores"].numpy()[0],
                                     result["detection_classes"].numpy()[0], count, input_size=self.size,
                                     shape=image.shape[:2], thresholds=thresholds))
        return out


def load(model_dir: Path) -> SavedModelPredictor:
    """The SavedModel's predictor; a SavedModel that cannot be loaded is a ModelLoadError naming its folder."""
    saved = check(model_dir)
    try:
        return SavedModelPredictor(model_dir)
    except (UserError, ModelLoadError):
        raise
    except Exception as err:
        raise ModelLoadError(saved, err) from err
