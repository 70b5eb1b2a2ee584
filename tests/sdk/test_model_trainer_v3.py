"""sdk.model_trainer (a SageMaker SDK v3 ModelTrainer) sends the same CreateTrainingJob as launch_job: both
captured, compared field for field, the job's name aside (v3 appends its own timestamp to base_job_name).

The SageMaker SDK v3 conflicts with this project's pins, so it lives in its own virtual environment,
``.venv-sm3`` (``.ci/run`` makes it from ``requirements/sagemaker-v3.txt``).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import FAST, ROOT
from tests.sdk.conftest import BUCKET, IMAGE, ROLE
from tests.sdk.sagemaker_python import script_env

PYTHON = ROOT / ".venv-sm3" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="no .venv-sm3 (made by .ci/run)")


@pytest.mark.parametrize("extra", [
    {},
    {"spot": True, "max_run": 7200, "tensorboard": True, "environment": {"A": "1"}, "tags": {"team": "cv"},
     "input_modes": {"train": "FastFile"}, "volume_size_gb": 100, "mlflow": "http://127.0.0.1:5000",
     "experiment": "detectors"},
])
def test_same_request_as_launch_job(aws, shapes, tmp_path, extra):
    kwargs = {"image": IMAGE, "role": ROLE, "output_path": f"s3://{BUCKET}/jobs", "train": str(shapes),
              "hyperparameters": {**FAST, "cos_lr": True, "lr0": 0.01}, "job_name": "same", **extra}
    env = script_env(tmp_path, version=3)  # no user's SageMaker config, telemetry off
    out = subprocess.run([str(PYTHON), str(ROOT / "tests/sdk/v3_requests.py"), json.dumps(kwargs)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    # v3's tracebacks are long: its own frames and the error say where it failed
    assert out.returncode == 0, "\n".join(line for line in out.stderr.splitlines()
                                          if "/sagemaker/" in line or "Error" in line or "sdk/" in line)[-4000:]
    captured = json.loads(out.stdout.strip().splitlines()[-1])
    (ours,), (theirs,) = captured["launch_job"], captured["model_trainer"]
    assert ours.pop("TrainingJobName") == "same-a"
    assert re.fullmatch(r"same-b-\d{14}", theirs.pop("TrainingJobName"))
    for request, suffix in ((ours, "same-a"), (theirs, "same-b")):  # names inside URIs differ by the suffix only
        text = json.dumps(request, sort_keys=True).replace(suffix, "NAME")
        request.clear()
        request.update(json.loads(text))
    assert ours["HyperParameters"] and ours["InputDataConfig"] and ours["AlgorithmSpecification"]["MetricDefinitions"]
    # the one field v3 always adds: the API's own default, the same model.tar.gz
    assert theirs["OutputDataConfig"].pop("CompressionType") == "GZIP"
    assert "CompressionType" not in ours["OutputDataConfig"]
    assert theirs == ours
