"""A moto server on 127.0.0.1, in this process, with SageMaker's part played by :mod:`tests.sdk.double`."""

from __future__ import annotations

import logging
import os
import socket

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from tests.conftest import ROOT
from tests.sdk.double import SageMakerDouble

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:1.0"
BUCKET = "detectors-data"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    """A region, as a configured notebook has (plan_job resolves it before anything else); no user profile.

    Also: the trainer the double and local mode start (``python -m container train``, from a temporary
    folder) imports this checkout's code, not whatever checkout the venv's editable install points to.
    """
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def moto_endpoint():
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch, tmp_path):
    """A fresh AWS: moto reset, credentials and endpoint in the environment, one bucket, local jobs in tmp."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1", "SM_DETECTORS_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SM_DETECTORS_ROLE", "SAGEMAKER_ROLE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=BUCKET)
    return session


@pytest.fixture
def sagemaker(aws, moto_endpoint, monkeypatch):
    """Jobs created on the moto server really run (the trainer as a process)."""
    double = SageMakerDouble(moto_endpoint)
    double.install(monkeypatch)
    yield double
    double.close()
