"""Seed 000's pipeline: retrain whenever a dataset lands in S3 (SageMaker Pipeline + EventBridge rule).

    python examples/retrain_on_upload.py                 # against a moto server started here
    python examples/retrain_on_upload.py --aws --image URI --role ARN --data s3://bucket/incoming/pcb/

Creates the pipeline (one training step with our image), turns on the bucket's EventBridge
notifications, and creates the rule, its target and the role EventBridge assumes. Uploading the
marker file then starts a training on everything under the prefix; here it is started by hand too.
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
from sdk.pipeline import retrain_on_upload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aws", action="store_true", help="use the AWS boto3 finds, not a moto server")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--role", default=ROLE)
    parser.add_argument("--data", default="s3://detectors-demo/incoming/shapes/")
    parser.add_argument("--name", default="shapes-retrain")
    args = parser.parse_args()
    with aws(not args.aws):
        session = boto3.Session()
        bucket, prefix = args.data[5:].split("/", 1)
        s3 = session.client("s3")
        if not args.aws:
            s3.create_bucket(Bucket=bucket)
        try:
            trigger = retrain_on_upload(name=args.name, data=args.data, marker="_READY", image=args.image,
                                        role=args.role, output_path=f"s3://{bucket}/jobs",
                                        hyperparameters={"model": "yolo11n.yaml", "epochs": 50, "imgsz": 640},
                                        instance_type="ml.g5.xlarge", session=session)
        except sdk.SDKError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(json.dumps({"pipeline": trigger.pipeline_arn, "rule": trigger.rule_name,
                          "event_pattern": trigger.event_pattern, "events_role": trigger.role_arn,
                          "parameters": {p["Name"]: p["DefaultValue"] for p in trigger.definition["Parameters"]}},
                         indent=2))
        data = make_shapes(Path("demo-output") / "upload", train=8, val=2, size=64)
        for path in sorted(p for p in data.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, prefix + path.relative_to(data).as_posix())
        s3.put_object(Bucket=bucket, Key=prefix + "_READY", Body=b"")
        print(f"uploaded the dataset and {prefix}_READY: on AWS the rule now starts {args.name}")
        execution = trigger.start(hp_epochs=5)  # what the rule does, with one parameter overridden
        status = session.client("sagemaker").describe_pipeline_execution(PipelineExecutionArn=execution)
        print(f"started by hand with hp_epochs=5: {execution} ({status['PipelineExecutionStatus']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
