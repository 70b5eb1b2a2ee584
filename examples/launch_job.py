"""The SDK as a notebook uses it: launch a YOLO job, follow it, fetch the model.

    python examples/launch_job.py                       # local mode: runs here, no AWS, no container engine
    python examples/launch_job.py --image URI --role ARN [--output-path s3://...]   # a SageMaker job

With --image, the job goes wherever boto3 points (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdk
from container.synthetic import make_shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", help="ECR image URI or ecr_image_fullname.txt (default: local mode)")
    parser.add_argument("--role", help="SageMaker execution role ARN")
    parser.add_argument("--output-path")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args()

    data = make_shapes(args.out / "shapes", train=32, val=8, size=96, seed=0)
    hyperparameters = {"model": "yolo11n.yaml", "epochs": args.epochs, "imgsz": 96, "batch": 16, "workers": 0}
    try:
        if args.image:
            job = sdk.launch_job(image=args.image, role=args.role, output_path=args.output_path, train=data,
                                 hyperparameters=hyperparameters, base_job_name="shapes")
        else:
            job = sdk.launch_job(instance_type="local", image="yolo", train=data, hyperparameters=hyperparameters,
                                 base_job_name="shapes")
        model = sdk.fetch_model(job, dest=args.out / "fetched")
    except sdk.SDKError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"job": job.name, "metrics": job.metrics(), "best": str(model.best),
                      "exports": {k: str(v) for k, v in model.exports.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
