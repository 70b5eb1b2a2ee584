"""Fixtures the image tests share: the TF image's trainings are its slowest part (a RetinaNet's SavedModel and
TFLite exports take minutes on two cores), so one trained model serves every test that only reads one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from container.annotations import convert
from container.local import build_tree
from tests.images.engine import IMAGES, Engine, built_engine

TF_TAG = IMAGES["Dockerfile.tfod"]
# a RetinaNet on 128 px images: 8 steps, a checkpoint every 4, one COCO evaluation at the end
TF_FAST = {"num_steps": "8", "image_size": "128", "batch_size": "4", "log_interval": "4", "checkpoint_interval": "4",
           "validation_interval": "8", "warmup_steps": "2"}


@dataclass(frozen=True)
class Trained:
    engine: Engine
    base: Path  # the job's /opt/ml
    returncode: int
    log: str


@pytest.fixture(scope="session")
def tfrecords(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfrecords")
    convert(shapes, "tfrecord", out, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def tfod_trained(tfrecords, tmp_path_factory) -> Trained:
    """One job of the TF image as SageMaker starts it: TFRecords in `train`, a pbtxt label map in `labels`,
    int8 quantization, every export (SavedModel, float and int8 TFLite). test_tfod_image checks the job and its
    exports; test_serve_image serves its model folder."""
    engine = built_engine("Dockerfile.tfod", TF_TAG)
    work = tmp_path_factory.mktemp("tfod-trained")
    (work / "labels").mkdir()
    (work / "labels" / "label_map.pbtxt").write_text((tfrecords / "label_map.pbtxt").read_text())
    (work / "records-only").mkdir()
    for shard in tfrecords.glob("*.tfrecord"):  # train-00000-of-00001.tfrecord, val-00000-of-00001.tfrecord
        (work / "records-only" / shard.name).hardlink_to(shard)
    base = build_tree(work / "opt_ml", {"train": work / "records-only", "labels": work / "labels"},
                      {**TF_FAST, "quantize": "true", "inference_type": "int8"})
    result = engine.run("run", "--network", "none", "-v", f"{base}:/opt/ml", "--rm", TF_TAG, "train",
                        check=False, capture_output=True, timeout=1500)
    return Trained(engine, base, result.returncode, result.stdout + result.stderr)
