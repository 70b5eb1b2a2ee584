"""Shared fixtures: generated datasets and /opt/ml trees. Nothing here touches the network."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from container.local import build_tree
from container.schema import Schema
from container.synthetic import make_shapes

# No test may reach any address but loopback: every connect of this process is checked.
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_connect = socket.socket.connect


def _loopback_only(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
        raise ConnectionRefusedError(f"tests may only reach 127.0.0.1, not {address[0]}:{address[1]}")
    return _connect(self, address)


socket.socket.connect = _loopback_only
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # botocore would probe 169.254.169.254

# A fast training configuration: a tiny model on 64 px images.
FAST = {"model": "yolo11n.yaml", "epochs": "2", "imgsz": "64", "batch": "8", "workers": "0",
        "plots": "false", "progress_interval": "0"}


def metric_values(log: str, class_names=("rectangle", "ellipse"), image: str = "yolo") -> dict[str, list[float]]:
    """Read a job's log the way SageMaker does: each of the image's metric definitions' regex over each line."""
    definitions = Schema.load(image).metric_definitions(class_names)
    found: dict[str, list[float]] = {}
    for line in log.splitlines():
        assert "\r" not in line or not line.startswith("["), "metric lines never carry carriage returns"
        for d in definitions:
            m = re.search(d["Regex"], line)
            if m:
                found.setdefault(d["Name"], []).append(float(m.group(1)))
    return found


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """16 train + 4 val images of rectangles and ellipses, ultralytics' images/{train,val} layout."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), train=16, val=4, size=64)


@pytest.fixture
def make_tree(tmp_path):
    """Build an /opt/ml tree under tmp_path: make_tree({"train": dir}, {"epochs": "2"}) (name= for a second one)."""
    def _make(channels, hyperparameters, name="opt_ml", **kwargs) -> Path:
        return build_tree(tmp_path / name, channels, hyperparameters, **kwargs)
    return _make


@pytest.fixture(autouse=True)
def _no_network_env(monkeypatch):
    # Belt and braces: ultralytics treats the network as down, and never installs anything.
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_AUTOINSTALL", "false")
    os.environ.pop("SAGEMAKER_BASE_DIR", None)
