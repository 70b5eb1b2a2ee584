"""What the scripts run with the SageMaker SDK's own Python (``.venv-sm2``, ``.venv-sm3``: v2_requests.py,
v3_requests.py, v2_pipeline.py) share: the guard each calls first (that process too reaches nothing but the moto
server on 127.0.0.1), and the environment the tests run them in (no user's SageMaker config, telemetry off).

Standard library only: the scripts import it in those Pythons, the tests in the project's."""

from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TELEMETRY_OFF = "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"


def loopback_only() -> None:
    """From here on this process connects to 127.0.0.1 alone, and its AWS endpoint must be the moto server there."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise ConnectionRefusedError(f"only 127.0.0.1 may be reached, not {address[0]}")
        return connect(self, address)

    socket.socket.connect = guarded
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def script_env(tmp_path: Path, *, version: int) -> dict[str, str]:
    """The environment for a script run with SDK ``version``'s Python: the checkout importable, and a SageMaker
    config of our own (v2 sends telemetry unless opted out; v3 reads its config files, none of the user's here)."""
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text(TELEMETRY_OFF)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config)}
    if version == 2:
        env["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
    else:
        env["SAGEMAKER_ADMIN_CONFIG_OVERRIDE"] = str(config)
        env["SAGEMAKER_VALIDATE_ROLE"] = "false"  # v3 asks IAM's policy simulator about the role; moto has none
    return env
