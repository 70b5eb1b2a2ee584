"""sdk.estimator sends the same CreateTrainingJob as launch_job: both captured, compared field for field.

The SageMaker SDK v2 conflicts with this project's pins (attrs, packaging, protobuf), so it lives in
its own virtual environment, ``.venv-sm2`` (``.ci/run`` makes it from ``requirements/sagemaker-v2.txt``).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import FAST, ROOT
from tests.sdk.conftest import BUCKET, IMAGE, ROLE
from tests.sdk.sagemaker_python import script_env

PYTHON = ROOT / ".venv-sm2" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="no .venv-sm2 (made by .ci/run)")


@pytest.mark.parametrize("extra", [
    {},
    {"spot": True, "max_run": 7200, "tensorboard": True, "environment": {"A": "1"}, "tags": {"team": "cv"},
     "input_modes": {"train": "FastFile"}, "volume_size_gb": 100},
])
def test_same_request_as_launch_job(aws, shapes, tmp_path, extra):
    kwargs = {"image": IMAGE, "role": ROLE, "output_path": f"s3://{BUCKET}/jobs", "train": str(shapes),
              "hyperparameters": {**FAST, "cos_lr": True, "lr0": 0.01}, "job_name": "same", **extra}
    env = script_env(tmp_path, version=2)  # no user's SageMaker config, telemetry off
    out = subprocess.run([str(PYTHON), str(ROOT / "tests/sdk/v2_requests.py"), json.dumps(kwargs)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    captured = json.loads(out.stdout.strip().splitlines()[-1])
    (ours,), (theirs,) = captured["launch_job"], captured["estimator"]
    assert ours.pop("TrainingJobName") == "same-a" and theirs.pop("TrainingJobName") == "same-b"
    for request, suffix in ((ours, "same-a"), (theirs, "same-b")):  # names inside URIs differ by the suffix only
        text = json.dumps(request, sort_keys=True).replace(suffix, "NAME")
        request.clear()
        request.update(json.loads(text))
    assert ours["HyperParameters"] and ours["InputDataConfig"] and ours["AlgorithmSpecification"]["MetricDefinitions"]
    assert theirs == ours
