"""Each trainer's own line-emitting code, read back with the regexes SageMaker gets (generated from the
same schema entries). No training: the trainers' callbacks are fed what the frameworks hand them."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from container.schema import Schema


def _read(schema: Schema, text: str, class_names=()) -> dict[str, float]:
    found: dict[str, float] = {}
    for d in schema.metric_definitions(class_names):
        for line in text.splitlines():
            m = re.search(d["Regex"], line)
            if m:
                found[d["Name"]] = float(m.group(1))
    return found


def _losses(*values: float) -> dict:
    """ultralytics 8.4's running losses: a dict of tensors by loss name."""
    import torch

    return {k: torch.tensor(v) for k, v in zip(("box_loss", "cls_loss", "dfl_loss"), values, strict=True)}


def test_yolo_reporter_lines_are_read_by_every_metric_definition(tmp_path, capsys):
    pytest.importorskip("ultralytics")
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.metrics import DetMetrics

    from container.yolo.report import Reporter

    schema = Schema.load("yolo")
    fake = SimpleNamespace(loss_names=("box_loss", "cls_loss", "dfl_loss"))
    label_loss_items = DetectionTrainer.label_loss_items.__get__(fake)  # ultralytics' own naming of the losses
    metrics = dict(zip(DetMetrics().keys, (0.81, 0.72, 0.63, 0.41), strict=True))
    metrics.update(label_loss_items(_losses(1.5, 1.25, 1.125), prefix="val"))
    trainer = SimpleNamespace(metrics=metrics, epoch=2, epochs=5, tloss=_losses(2.5, 2.25, 2.125),
                              label_loss_items=label_loss_items, lr={"lr/pg0": 0.001}, best_fitness=0.41)
    reporter = Reporter(0, True, tmp_path / "final.json")
    reporter.on_train_epoch_end(trainer)
    reporter.on_fit_epoch_end(trainer)  # the epoch's line
    box = SimpleNamespace(ap_class_index=[0, 1], ap50=[0.7, 0.6], ap=[0.5, 0.4])
    validator = SimpleNamespace(metrics=SimpleNamespace(box=box), names={0: "rectangle", 1: "ellipse"})
    trainer.validator = validator
    reporter.on_fit_epoch_end(trainer)  # the final evaluation of best.pt, and the per-class lines
    found = _read(schema, capsys.readouterr().out, ["rectangle", "ellipse"])

    expected = {d["Name"] for d in schema.metric_definitions(["rectangle", "ellipse"])}
    assert set(found) == expected, f"not printed: {sorted(expected - set(found))}"
    assert found["epoch"] == 3 and found["train:box_loss"] == 2.5 and found["val:box_loss"] == 1.5
    assert found["val:mAP50-95"] == 0.41 and found["final:mAP50"] == 0.63 and found["lr"] == 0.001
    assert found["class:ellipse:mAP50-95"] == 0.4


def test_tfod_lines_are_read_by_every_metric_definition():
    from container.tfod.trainer import eval_metric_line, train_metric_line

    schema = Schema.load("tfod")
    np = pytest.importorskip("numpy")
    # what Model Garden's RetinaNet task returns (numpy scalars), including keys the schema does not declare
    train = {"total_loss": np.float32(1.25), "cls_loss": np.float32(0.75), "box_loss": np.float32(0.0125),
             "model_loss": np.float32(0.8), "training_loss": np.float32(1.25), "learning_rate": np.float32(0.01)}
    coco = {k: np.float32(v) for k, v in {"AP": 0.41, "AP50": 0.7, "AP75": 0.43, "APs": -1.0, "APm": 0.45,
                                          "APl": 0.61, "ARmax1": 0.3, "ARmax10": 0.5, "ARmax100": 0.55,
                                          "ARs": -1.0, "ARm": 0.5, "ARl": 0.6}.items()}
    text = train_metric_line(200, train) + "\n" + eval_metric_line({"step": 200, **coco})
    found = _read(schema, text)
    assert set(found) == {d["Name"] for d in schema.metric_definitions()}
    assert found["step"] == 200 and found["train:total_loss"] == 1.25 and found["eval:APs"] == -1.0
    assert "np.float32" not in text and "model_loss" not in text, "only what the schema declares"


def test_a_line_the_schema_does_not_declare_cannot_be_printed():
    with pytest.raises(ValueError, match=r"\[bogus\] is not declared in the yolo schema"):
        Schema.load("yolo").metric_line("bogus", {"mAP50": 0.5})
    line = Schema.load("yolo").metric_line("final", {"mAP50": 0.5, "made_up": 3.0})
    assert line == "[final] mAP50=0.500000"
