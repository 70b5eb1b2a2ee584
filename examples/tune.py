"""Seed 002's tuning: a hyperparameter tuning job over the image's own hyperparameters.

    python examples/tune.py                 # against a moto server started here
    python examples/tune.py --aws --image URI --role ARN --output-path s3://bucket/jobs

Ranges are checked against the image's schema before anything is uploaded; the objective is the
image's mAP metric; early stopping is on. On AWS, `--wait` follows it and fetches the best model.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

import sdk
from container.synthetic import make_shapes
from examples._aws import IMAGE, ROLE, aws
from sdk.tuning import tune_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aws", action="store_true", help="use the AWS boto3 finds, not a moto server")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--role", default=ROLE)
    parser.add_argument("--output-path", default="s3://detectors-demo/jobs")
    parser.add_argument("--wait", action="store_true", help="wait, then fetch the best job's model")
    args = parser.parse_args()
    with aws(not args.aws):
        session = boto3.Session()
        if not args.aws:
            session.client("s3").create_bucket(Bucket=args.output_path[5:].split("/")[0])
        data = make_shapes(Path("demo-output") / "tune-data", train=16, val=4, size=64)
        try:
            tuning = tune_job(image=args.image, role=args.role, output_path=args.output_path, train=data,
                              hyperparameters={"model": "yolo11n.yaml", "epochs": 30},
                              ranges={"lr0": (1e-4, 1e-1, "log"), "imgsz": (320, 640),
                                      "optimizer": ["SGD", "AdamW"], "mosaic": (0.0, 1.0)},
                              max_jobs=12, max_parallel=3, session=session)
            config = tuning.request["HyperParameterTuningJobConfig"]
            print(json.dumps({"tuning_job": tuning.name, "objective": config["HyperParameterTuningJobObjective"],
                              "ranges": config["ParameterRanges"], "status": tuning.status}, indent=2))
            if args.wait:
                tuning.wait()
                print(json.dumps(tuning.best(), indent=2, default=str))
                print(f"best model in {tuning.fetch_model().directory}")
            elif not args.aws:
                print("moto records the tuning job without running it; on AWS: tuning.wait(), tuning.best(), "
                      "tuning.fetch_model() (tests/sdk/test_workflows.py runs that loop with real trainings)")
        except sdk.SDKError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
