"""Dockerfiles pass hadolint, shell scripts pass shellcheck (where the linters are installed)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in ROOT.glob("Dockerfile.*")))
def test_hadolint(dockerfile):
    result = subprocess.run([_tool("hadolint"), str(ROOT / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["build-and-push.sh", ".ci/run", ".ci/setup-podman", ".ci/under-load"])
def test_shellcheck(script):
    result = subprocess.run([_tool("shellcheck"), str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_no_latest_base_and_pinned_versions():
    for dockerfile in ROOT.glob("Dockerfile.*"):
        text = dockerfile.read_text()
        assert ":latest" not in text, dockerfile.name
        assert "ARG BASE_IMAGE=" in text
