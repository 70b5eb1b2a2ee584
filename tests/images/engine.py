"""A container engine for the image tests: docker where an engine answers, podman otherwise.

On machines with neither a Docker engine nor a registry (see README.md here), podman builds the
images on a local stand-in for the base image (`localhost/bookworm-python:latest`, made by
`.ci/setup-podman` with mmdebstrap). Those are facts of the test machine, passed as flags here,
never written into the Dockerfiles.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/bookworm-python:latest"
# the tags the image tests build and run, one build per Dockerfile for every test
IMAGES = {"Dockerfile.yolo": "localhost/sm-yolo:test", "Dockerfile.tfod": "localhost/sm-tfod:test"}
# the YOLO image's serving variant (Dockerfile.yolo --target serve: no torch), built after the two
SERVE_VARIANT = ("Dockerfile.yolo", "serve", "localhost/sm-yolo:test-serve")
# one build of a tag at a time on this machine: .ci/run builds the images in the background while the tests that
# need none run; an image test that gets there first waits for that build, then finds every layer cached
LOCK_DIR = Path(os.environ.get("SM_DETECTORS_BUILD_LOCKS", "/tmp"))


@dataclass(frozen=True)
class Engine:
    name: str  # "docker" or "podman"

    def cmd(self, *args: str) -> list[str]:
        return [self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*args), check=check, timeout=timeout, text=True, **kw)

    def image_exists(self, ref: str) -> bool:
        return subprocess.run(self.cmd("image", "inspect", ref), capture_output=True).returncode == 0

    def wait_for_log(self, name: str, text: str, timeout: float = 600) -> str:
        """The container's log once it shows ``text``; AssertionError (with the log) if it ends or times out first."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            logs = self.run("logs", name, check=False, capture_output=True)
            if text in logs.stdout:
                return logs.stdout
            state = self.run("inspect", "-f", "{{.State.Running}}", name, check=False, capture_output=True)
            if state.stdout.strip() != "true" or time.monotonic() > deadline:
                why = "ended" if state.stdout.strip() != "true" else f"ran {timeout:.0f}s"
                raise AssertionError(f"container {name} {why} before printing {text!r}:\n"
                                     + (logs.stdout + logs.stderr)[-3000:])
            time.sleep(1)

    def sigterm_after(self, name: str, text: str,
                      wait_timeout: float) -> tuple[int, float, subprocess.CompletedProcess]:
        """Once the detached container ``name`` prints ``text``, send SIGTERM as SageMaker's StopTrainingJob does;
        return its exit code, the seconds it took to exit, and its log. The container is removed either way."""
        import time

        try:
            self.wait_for_log(name, text)
            killed = self.run("kill", "--signal", "TERM", name, check=False, capture_output=True)
            assert killed.returncode == 0, f"kill: {killed.stderr}\n" + self.run(
                "logs", name, check=False, capture_output=True).stderr[-3000:]
            sent = time.monotonic()
            waited = self.run("wait", name, capture_output=True, timeout=wait_timeout)
            code = int(waited.stdout.strip().splitlines()[-1])
            took = time.monotonic() - sent
            return code, took, self.run("logs", name, check=False, capture_output=True)
        finally:
            self.run("rm", "-f", name, check=False, capture_output=True)

    def base_image(self) -> str:
        chosen = os.environ.get("SM_TEST_BASE_IMAGE")
        if chosen:
            return chosen
        if self.name == "podman" and self.image_exists(LOCAL_BASE):
            return LOCAL_BASE
        return PUBLIC_BASE

    def build_flags(self) -> list[str]:
        if self.name != "podman":
            return []
        # pip inside the build needs this machine's network and certificate bundle
        return ["--network", "host", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]

    def build_args(self, dockerfile: str) -> dict[str, str]:
        args = {"BASE_IMAGE": self.base_image()}
        if dockerfile == "Dockerfile.tfod":
            # the CUDA libraries (3 GB) serve no purpose on a machine without a GPU: the CPU variant
            args["ACCELERATOR"] = os.environ.get("SM_TEST_ACCELERATOR", "cpu")
        return args

    def build(self, dockerfile: str, tag: str, timeout: float = 3000, target: str | None = None) -> None:
        pairs = [f"--build-arg={k}={v}" for k, v in self.build_args(dockerfile).items()]
        targets = ["--target", target] if target else []
        with build_lock(tag):
            self.run("build", *self.build_flags(), "-f", str(ROOT / dockerfile), *pairs, *targets, "-t", tag,
                     str(ROOT), timeout=timeout)


@contextlib.contextmanager
def build_lock(tag: str) -> Iterator[None]:
    """Held while ``tag`` is built: a second build of it on this machine waits, then runs from the layer cache."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    path = LOCK_DIR / f"sm-detectors-build-{re.sub(r'[^A-Za-z0-9_.-]', '_', tag)}.lock"
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


NO_ENGINE_ENV = "SM_DETECTORS_NO_ENGINE"  # set to 1 on a machine that truly has no container engine


def no_engine(what: str = "the image tests") -> None:
    """No engine answers: a failure (CI must not go green without building an image), unless the
    machine says so explicitly with SM_DETECTORS_NO_ENGINE=1, in which case the test is skipped."""
    import pytest

    message = f"no container engine (docker or podman) answers on this machine, so {what} cannot run"
    if os.environ.get(NO_ENGINE_ENV) == "1":
        pytest.skip(message + f" ({NO_ENGINE_ENV}=1)")
    pytest.fail(message + f": start docker, or run .ci/setup-podman; {NO_ENGINE_ENV}=1 skips them knowingly")


def find_engine() -> Engine | None:
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return Engine("docker")
    if shutil.which("podman") and subprocess.run(["podman", "info"], capture_output=True).returncode == 0:
        return Engine("podman")
    return None


def built_engine(dockerfile: str, tag: str, target: str | None = None) -> Engine:
    """The engine, with ``dockerfile`` (its stage ``target``, else the last) built as ``tag`` (the layer cache
    makes a second build cheap); no engine is a failure unless SM_DETECTORS_NO_ENGINE=1 (see :func:`no_engine`)."""
    found = find_engine()
    if found is None:
        no_engine()
        raise AssertionError("unreachable: no_engine() fails or skips")
    found.build(dockerfile, tag, target=target)
    return found


def build_all() -> int:
    """``python3 tests/images/engine.py``: build every test image (what .ci/run starts in the background);
    the exit status of the first failed build, else 0. Standard library only: runs before any venv exists."""
    found = find_engine()
    if found is None:
        print("no container engine answers: nothing built", file=sys.stderr)
        return 1
    builds = [(dockerfile, None, tag) for dockerfile, tag in IMAGES.items()] + [SERVE_VARIANT]
    for dockerfile, target, tag in builds:
        started = time.monotonic()
        print(f"building {dockerfile}{f' (target {target})' if target else ''} as {tag}", flush=True)
        try:
            found.build(dockerfile, tag, target=target)
        except subprocess.CalledProcessError as err:
            print(f"{dockerfile}: build failed ({err.returncode}); the image tests build it again and say why",
                  file=sys.stderr, flush=True)
            return err.returncode
        print(f"built {tag} in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(build_all())
