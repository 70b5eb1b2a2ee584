"""The images' CMD is the package's command with no argument: how the SageMaker SDK v3 starts an image in
local-container mode. With a training job's files in /opt/ml/input/config/ it trains; with none it describes
the image, as the old ``CMD ["describe"]`` did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from container.local import build_tree
from tests.conftest import ROOT


def _run(base: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAGEMAKER_BASE_DIR": str(base), "TRAINER_IMAGE": "yolo"}
    return subprocess.run([sys.executable, "-m", "container"], env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_nothing_to_train_describes(tmp_path):
    result = _run(tmp_path / "opt_ml")  # no input/config at all: a person ran the image
    assert result.returncode == 0, result.stderr
    assert "METRIC DEFINITIONS" in result.stdout
    assert not (tmp_path / "opt_ml").exists()  # describing writes nothing


def test_a_training_job_trains(tmp_path, shapes):
    # a job the trainer refuses at its first check (a hyperparameter out of range): trained, not described,
    # without the cost of training
    base = build_tree(tmp_path / "opt_ml", {"train": shapes}, {"imgsz": "-5"})
    result = _run(base)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "METRIC DEFINITIONS" not in result.stdout
    assert "YOLO" in result.stdout.splitlines()[0]  # train's first line: the image, job, host and channels
    assert "imgsz" in (base / "output" / "failure").read_text()


def test_only_config_files_count(tmp_path):
    base = tmp_path / "opt_ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "notes.txt").write_text("not a job's file")
    assert "METRIC DEFINITIONS" in _run(base).stdout
    (base / "input" / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1"}))
    from container.contract import Environment

    assert Environment.from_base_dir(base, num_gpus=0, num_cpus=1).holds_training_job
