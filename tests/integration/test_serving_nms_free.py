"""YOLO26's NMS-free head in serving, on request (ultralytics 8.4 uses it only with ``nms=False``; serving
keeps NMS by default: the one-to-one head trailed it by 13 points of mAP50-95 in benchmarks/bench_nms_free.py).

No training: YOLO26n and YOLO11n built from ultralytics' YAML, the YOLO26 head's weights perturbed (seeded) so
that scores differ, saved as ``best.pt`` in a model folder. The served answers are compared with ultralytics'
own ``predict(nms=False)`` and ``predict()`` (the NMS path), and an end-to-end ONNX export served without
torch with ultralytics running the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from container.failure import UserError
from container.serving.protocol import Thresholds
from container.yolo import serve as yolo_serve

pytestmark = pytest.mark.slow
IMGSZ = 96
LOW = Thresholds(conf=0.05, iou=0.7, max_det=30)


def _model_folder(root: Path, yaml: str, seed: int) -> Path:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(yaml)
    with torch.no_grad():
        for p in model.model.model[-1].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    folder = root / Path(yaml).stem
    folder.mkdir(parents=True)
    model.save(folder / "best.pt")
    (folder / "args.yaml").write_text(f"imgsz: {IMGSZ}\n")
    (folder / "data.yaml").write_text("names: [" + ", ".join(f"c{i}" for i in range(len(model.names))) + "]\n")
    return folder


@pytest.fixture(scope="module")
def yolo26(tmp_path_factory) -> Path:
    return _model_folder(tmp_path_factory.mktemp("nms-free"), "yolo26n.yaml", 0)


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    image[20:60, 30:90] = (240, 40, 40)
    return image


def _boxes(detections) -> list[tuple]:
    return [(d.class_id, round(d.score, 4), tuple(round(v, 1) for v in d.box)) for d in detections]


def _ultralytics(folder: Path, image, **options) -> list[tuple]:
    from ultralytics import YOLO

    (result,) = YOLO(str(folder / "best.pt")).predict(image[..., ::-1], imgsz=IMGSZ, conf=LOW.conf, iou=LOW.iou,
                                                     max_det=LOW.max_det, verbose=False, **options)
    return [(int(c), round(float(s), 4), tuple(round(v, 1) for v in b)) for b, s, c in
            zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist(), strict=True)]


def test_yolo26_is_served_through_its_nms_free_head_on_request(yolo26, picture, monkeypatch):
    free, with_nms = _ultralytics(yolo26, picture, nms=False), _ultralytics(yolo26, picture)
    assert free and free != with_nms, "the two heads answer differently, so the comparisons below tell them apart"
    monkeypatch.delenv(yolo_serve.NMS_ENV, raising=False)  # the default: ultralytics' NMS path
    default = yolo_serve.load(yolo26)
    assert not default.nms_free and _boxes(default.predict([picture], LOW)[0]) == with_nms
    monkeypatch.setenv(yolo_serve.NMS_ENV, "false")
    predictor = yolo_serve.load(yolo26)
    assert predictor.nms_free and _boxes(predictor.predict([picture], LOW)[0]) == free


def test_models_without_the_head_keep_nms(tmp_path, monkeypatch):
    folder = _model_folder(tmp_path, "yolo11n.yaml", 1)
    monkeypatch.delenv(yolo_serve.NMS_ENV, raising=False)
    assert not yolo_serve.load(folder).nms_free
    monkeypatch.setenv(yolo_serve.NMS_ENV, "false")
    with pytest.raises(UserError, match="no NMS-free head"):
        yolo_serve.load(folder)
    monkeypatch.setenv(yolo_serve.NMS_ENV, "auto")
    with pytest.raises(UserError, match="true .* or false"):
        yolo_serve.load(folder)


def test_an_end_to_end_onnx_export_is_served_without_nms(yolo26, picture, monkeypatch):
    import onnxruntime as ort
    from ultralytics import YOLO

    exported = Path(YOLO(str(yolo26 / "best.pt")).export(format="onnx", imgsz=IMGSZ, nms=False))
    (yolo26 / "exports").mkdir(exist_ok=True)
    onnx = exported.rename(yolo26 / "exports" / "best.onnx")
    # one row per kept box (x1, y1, x2, y2, score, class): at most 300, fewer when the input has fewer anchors;
    # the NMS path's export gives (4 + classes) x anchors instead
    assert ort.InferenceSession(str(onnx)).get_outputs()[0].shape[1:] == [12 * 12 + 6 * 6 + 3 * 3, 6]

    # the served ONNX (onnxruntime and NumPy, no torch) against ultralytics running the same file (a fixed
    # 96x96 input, where best.pt would letterbox to 64x96)
    monkeypatch.setenv("SERVING_WEIGHTS", "onnx")
    served = yolo_serve.load(yolo26).predict([picture], LOW)[0]
    (reference,) = YOLO(str(onnx), task="detect").predict(picture[..., ::-1], imgsz=IMGSZ, conf=LOW.conf,
                                                          max_det=LOW.max_det, verbose=False)
    assert served and [d.class_id for d in served] == [int(c) for c in reference.boxes.cls.tolist()]
    for d, score, box in zip(served, reference.boxes.conf.tolist(), reference.boxes.xyxy.tolist(), strict=True):
        assert abs(d.score - score) < 1e-4 and np.allclose(d.box, box, atol=0.5)
