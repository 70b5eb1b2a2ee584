"""The TF trainer run the way SageMaker runs it (``train`` against an /opt/ml tree), as a process in .venv-tf
(TensorFlow's pins clash with the YOLO stack's): one job stopped during training, its newest checkpoint damaged,
restarted and stopped during the export, restarted again; it ends with the model an uninterrupted run writes.
The container harness repeats the stop during export with read-only channels (tests/images/test_tfod_image.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from container.annotations import convert
from container.signals import PAUSE_VARIABLE
from tests.conftest import metric_values

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not TF_PYTHON.exists(),
                                 reason="no .venv-tf (made by .ci/run from requirements/tf-test.txt)")]
# 12 steps of a RetinaNet on 128 px images, a checkpoint every 4, one COCO evaluation at the end
FAST = {"num_steps": "12", "image_size": "128", "batch_size": "4", "log_interval": "4", "checkpoint_interval": "4",
        "validation_interval": "12", "warmup_steps": "2", "export": "saved_model"}
# the TFLite exports and their stop are the container test's (each export takes minutes on a small CPU)
MODEL_FILES = ["1", "label_map.csv", "label_map.pbtxt", "metrics.json"]


def train(base: Path, scratch: Path, *, pause_at: str | None = None, timeout: float = 2400) -> tuple[int, str]:
    """Run ``train`` to its end, or SIGTERM it where it waits at the pause point ``pause_at`` (the stop lands
    there whatever the machine's speed); (exit code, log)."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SM_DETECTORS_SCRATCH": str(scratch),
           "TRAINER_IMAGE": "tfod", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    if pause_at:
        env[PAUSE_VARIABLE] = pause_at
    stop_after = f"[pause] {pause_at}:" if pause_at else None
    proc = subprocess.Popen([str(TF_PYTHON), "-m", "container", "train"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if stop_after and stop_after in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    if stop_after:
        while not seen.wait(1):
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"ended or timed out before {stop_after!r}:\n" + "".join(lines)[-3000:]
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return code, "".join(lines)


@pytest.fixture(scope="module")
def tfrecords(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfrecords")
    convert(shapes, "tfrecord", out, log=lambda _: None)
    return out


def test_stops_and_a_damaged_checkpoint_end_in_the_complete_model(tfrecords, make_tree, tmp_path):
    base, scratch = make_tree({"train": tfrecords}, FAST), tmp_path / "scratch"
    model_dir = base / "checkpoints" / "algo-1" / "model"

    # 1. stopped during training, after step 8: checkpoints 4 and 8, exit 143, no failure file, no model
    code, log = train(base, scratch, pause_at="step:8")
    assert code == 143, log[-3000:]
    assert "stopped at step 8; checkpoint saved" in log and not (base / "output" / "failure").exists()
    assert {p.name for p in model_dir.glob("ckpt-*.index")} >= {"ckpt-4.index", "ckpt-8.index"}
    assert not list((base / "model").iterdir())

    # 2. the newest checkpoint cut short (a SIGKILL while it was written): set aside, resumed from ckpt-4
    stopped_at = max(int(re.search(r"ckpt-(\d+)", p.name).group(1)) for p in model_dir.glob("ckpt-*.index"))
    data = model_dir / f"ckpt-{stopped_at}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    code, log = train(base, scratch, pause_at="export")
    assert code == 143, log[-3000:]
    assert f"ckpt-{stopped_at} in {model_dir} cannot be read" in log
    assert re.search(rf"resuming from the last good checkpoint, ckpt-(\d+) \(step \d+\); ckpt-{stopped_at} set aside",
                     log), log[-3000:]
    assert (model_dir / f"ckpt-{stopped_at}.data-00000-of-00001.corrupt").is_file(), "kept, renamed aside"
    steps = metric_values(log, image="tfod")["step"]
    assert steps[0] <= stopped_at and steps[-1] == 12, steps
    assert metric_values(log, image="tfod")["eval:AP"], "the final evaluation ran"
    assert not (base / "output" / "failure").exists()
    assert not list((base / "model").iterdir()), "a stop during the export leaves no partial model"

    # 3. restarted: nothing left to train; the final evaluation printed again (run again here: its kept numbers are
    # removed, as if the stop had come during it; the container test sees them reprinted); the whole model written
    assert json.loads((model_dir / "final-eval.json").read_text())["step"] == 12
    (model_dir / "final-eval.json").unlink()
    code, log = train(base, scratch)
    assert code == 0, log[-3000:]
    assert "tfod: training finished at step 12 in an earlier run; evaluating it again" in log
    found = metric_values(log, image="tfod")
    assert "train:total_loss" not in found and len(found["eval:AP"]) == 1
    assert sorted(p.name for p in (base / "model").iterdir()) == MODEL_FILES
    assert (base / "model" / "1" / "saved_model.pb").is_file()
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["final"]["step"] == 12 and metrics["exports"]["saved_model"]["path"] == "1/", metrics
    assert re.search(r"checkpoints: \S+ holds \d+ files, [\d.]+ MB", log)
    assert not list(base.joinpath("checkpoints").rglob("*.tfrecord")), "data never lands in the synced folder"
