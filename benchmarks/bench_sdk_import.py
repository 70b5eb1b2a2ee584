"""`import sdk` plus building a request, against importing the SageMaker SDK v2 `Estimator`, in one run.

    python benchmarks/bench_sdk_import.py [--repeats 7] [--sm2-python .venv-sm2/bin/python]

Each case runs in a fresh interpreter (cold imports, warm disk cache) and times itself from its
first line, so interpreter start-up counts for neither side. Median of --repeats runs.

* ours:            import sdk; sdk.plan_job(...)  - validated against the schema, MetricDefinitions generated
* v2 import:       from sagemaker.estimator import Estimator          (the baseline the issue names)
* v2 import+build: ... and Estimator(...) configured for the same job (still no request sent)

Goal (issue "The SDK"): ours <= 0.5 s and >= 8x faster than the v2 import. Nothing reaches the network:
AWS_ENDPOINT_URL points at a closed local port and v2's telemetry is opted out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:1.0"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

OURS = f"""
import time; t = time.perf_counter()
import sdk
plan = sdk.plan_job(image={IMAGE!r}, role={ROLE!r}, output_path="s3://bkt/jobs", train="s3://bkt/data/train/",
                    hyperparameters={{"epochs": 50, "imgsz": 640, "batch": 16, "model": "yolo11s.yaml"}})
assert plan.request["AlgorithmSpecification"]["MetricDefinitions"]
print(time.perf_counter() - t)
"""
V2_IMPORT = """
import time; t = time.perf_counter()
from sagemaker.estimator import Estimator
print(time.perf_counter() - t)
"""
V2_BUILD = f"""
import time; t = time.perf_counter()
from sagemaker.estimator import Estimator
from sagemaker.session import Session
import boto3
est = Estimator(image_uri={IMAGE!r}, role={ROLE!r}, instance_count=1, instance_type="ml.g5.xlarge",
                output_path="s3://bkt/jobs", hyperparameters={{"epochs": 50, "imgsz": 640}},
                sagemaker_session=Session(boto3.Session(region_name="us-east-1")))
print(time.perf_counter() - t)
"""


def timed(python: str, code: str, env: dict[str, str], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([python, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{python} failed:\n{out.stderr[-2000:]}")
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sm2-python", default=str(ROOT / ".venv-sm2" / "bin" / "python"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sagemaker.yaml"
        config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
        env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
               "AWS_SECRET_ACCESS_KEY": "x", "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
               "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config), "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
               "PYTHONPATH": str(ROOT)}
        ours = timed(sys.executable, OURS, env, args.repeats)
        v2_import = timed(args.sm2_python, V2_IMPORT, env, args.repeats)
        v2_build = timed(args.sm2_python, V2_BUILD, env, args.repeats)
    version = subprocess.run([args.sm2_python, "-c", "import sagemaker; print(sagemaker.__version__)"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "sagemaker_v2": version,
        "repeats": args.repeats,
        "ours_import_and_plan_s": round(ours, 3),
        "v2_import_estimator_s": round(v2_import, 3),
        "v2_import_and_configure_s": round(v2_build, 3),
        "speedup_vs_v2_import": round(v2_import / ours, 1),
        "speedup_vs_v2_configure": round(v2_build / ours, 1),
        "goal": "ours <= 0.5 s and >= 8x faster than the v2 import",
        "goal_met": ours <= 0.5 and v2_import / ours >= 8,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
