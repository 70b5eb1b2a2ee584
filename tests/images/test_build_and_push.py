"""build-and-push.sh for real: ECR calls against a moto server (AWS CLI pointed at it over HTTP),
the push to a local registry (Debian's docker-registry on 127.0.0.1), then the pushed image pulled
back and run. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.images.engine import IMAGES, ROOT, built_engine, find_engine

pytestmark = [pytest.mark.image, pytest.mark.slow]
SCRIPT = ROOT / "build-and-push.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (.ci/setup-podman installs it)")
    port = free_port()
    root = tmp_path_factory.mktemp("registry")
    (root / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    yield f"127.0.0.1:{port}"
    proc.terminate()


@pytest.fixture
def aws_env(moto_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=moto_url, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return env


@pytest.mark.parametrize("kind, metric", [("yolo", "val:mAP50-95"), ("tfod", "eval:AP50")])
def test_build_push_pull_describe(kind, metric, aws_env, registry, forget_pushed_tags, tmp_path):
    # the test tag first (waits for .ci/run's background build, if one runs): the script's build is then all cache
    engine = built_engine(f"Dockerfile.{kind}", IMAGES[f"Dockerfile.{kind}"])
    build_args = " ".join(f"{k}={v}" for k, v in engine.build_args(f"Dockerfile.{kind}").items())
    env = {**aws_env, "ENGINE": engine.name, "REGISTRY": registry, "PUSH_TLS_VERIFY": "false",
           "BUILD_ARGS": build_args, "BUILD_FLAGS": " ".join(engine.build_flags())}
    repo = f"team/sm-{kind}"
    result = subprocess.run([str(SCRIPT), repo, kind, "v1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    uri = (tmp_path / "ecr_image_fullname.txt").read_text().strip()
    assert uri == f"{registry}/{repo}:v1"

    import boto3

    ecr = boto3.client("ecr", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    assert f"git-{revision}" in result.stdout, "tagged with the git revision too, never only a moving tag"

    # pull it back from the registry as a stranger would, and ask it to explain itself
    engine.run("rmi", "-f", uri, check=False, capture_output=True)
    pull = ["pull", "--tls-verify=false", uri] if engine.name == "podman" else ["pull", uri]
    engine.run(*pull, capture_output=True)
    out = engine.run("run", "--rm", "--network", "none", uri, "describe", capture_output=True).stdout
    assert metric in out

    if kind != "yolo":
        return
    # a second run, without a tag: finds the repository, reuses the build cache, and tags the revision only
    again = subprocess.run([str(SCRIPT), repo, kind], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0 and "created" not in again.stdout
    default_uri = (tmp_path / "ecr_image_fullname.txt").read_text().strip()
    assert default_uri.startswith(f"{registry}/{repo}:git-{revision}"), default_uri
    assert f"{repo}:latest" not in again.stdout, "no moving tag unless asked"


@pytest.fixture
def forget_pushed_tags(registry):
    """Each run pushes to a registry on a new port: leave no tags behind for it."""
    yield
    engine = find_engine()
    if engine is not None:
        listed = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", capture_output=True, check=False)
        stale = [ref for ref in listed.stdout.split() if ref.startswith(registry + "/")]
        if stale:
            engine.run("rmi", "-f", *stale, check=False, capture_output=True)


@pytest.mark.parametrize("case, words", [
    ("no aws", "AWS CLI (aws) is not installed"),
    ("bad kind", "unknown image kind"),
    ("bad name", "not a valid ECR repository name"),
    ("no credentials", "no usable AWS credentials"),
    ("no engine", "ENGINE=nosuchengine is not installed"),
])
def test_clear_messages(case, words, aws_env, tmp_path):
    env = dict(aws_env)
    args = ["sm-yolo", "yolo", "v1"]
    if case == "no aws":
        bindir = tmp_path / "bin"  # a PATH with git and bash but without aws
        bindir.mkdir()
        env["PATH"] = f"{bindir}:/usr/sbin:/sbin"
        for tool in ("bash", "git", "dirname", "sed", "cat", "env"):
            path = shutil.which(tool)
            if path:
                os.symlink(path, bindir / tool)
    elif case == "bad kind":
        args[1] = "pytorch"
    elif case == "bad name":
        args[0] = "Bad Name"
    elif case == "no credentials":
        engine = find_engine()
        if engine is None:
            pytest.skip("no container engine: the script stops at that check first")
        env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", ENGINE=engine.name)
        env.pop("AWS_ACCESS_KEY_ID")
        env.pop("AWS_SECRET_ACCESS_KEY")
    elif case == "no engine":
        env["ENGINE"] = "nosuchengine"
    result = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr
