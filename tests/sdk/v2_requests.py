"""Run with the SageMaker SDK v2's Python: the CreateTrainingJob requests of launch_job and of
sdk.estimator for the same job, captured at botocore's boundary, printed as JSON.

    python tests/sdk/v2_requests.py '<launch kwargs as JSON>'      (AWS_ENDPOINT_URL: a moto server)
"""

import json
import sys

from tests.sdk.sagemaker_python import loopback_only

loopback_only()  # before anything else is imported: this process too may reach nothing but 127.0.0.1

import boto3
from sagemaker.session import Session

import sdk
from sdk.estimator import make_estimator


def capture(session):
    seen = []
    session.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                            lambda params, **_: seen.append(json.loads(json.dumps(params))))
    return seen


kwargs = json.loads(sys.argv[1])
ours = boto3.Session(region_name="us-east-1")
ours_seen = capture(ours)
sdk.launch_job(session=ours, wait=False, **{**kwargs, "job_name": kwargs["job_name"] + "-a"})

theirs = boto3.Session(region_name="us-east-1")
theirs_seen = capture(theirs)
run = make_estimator(sagemaker_session=Session(boto_session=theirs),
                     **{**kwargs, "job_name": kwargs["job_name"] + "-b"})
run.fit(wait=False)
print(json.dumps({"launch_job": ours_seen, "estimator": theirs_seen}))
