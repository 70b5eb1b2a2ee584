"""A real MLflow tracking server for the tests: the ``mlflow`` package's own ``mlflow server``, sqlite backend,
artifacts served by it, on 127.0.0.1. Import the fixtures into a test module to use them.

The full ``mlflow`` (the server) pins ``gunicorn<27`` and the images serve with gunicorn 27, so it cannot live in
``.venv``; the SageMaker SDK v3's environment (``.venv-sm3``, made by ``.ci/run``) has it already: mlflow 3.17.2,
the version of the ``mlflow-skinny`` client the images and ``.venv`` carry.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

MLFLOW = ROOT / ".venv-sm3" / "bin" / "mlflow"


@dataclass
class Server:
    uri: str
    log: Path

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[Server]:
    pytest.importorskip("mlflow", reason="no MLflow client (mlflow-skinny, in the yolo extra)")
    if not MLFLOW.exists():
        pytest.skip("no MLflow server (.venv-sm3, made by .ci/run)")
    home = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                                 "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=home)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # until it answers (a loaded machine takes its time to import MLflow), or it died
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                proc_wait(proc, 0.5)
        else:
            pytest.fail(f"mlflow server never answered on {uri}: {log.read_text()[-3000:]}")
        yield Server(uri, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_wait(proc: subprocess.Popen, seconds: float) -> None:
    """Wait for the server to start listening: returns early if it exits."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=seconds)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers: a listening socket no one accepts from (the kernel
    completes the handshake into its backlog), held open for the test. Its URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def runs_of(server: Server, experiment: str) -> list:
    client = server.client()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    return client.search_runs([found.experiment_id])


def history(server: Server, run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in server.client().get_metric_history(run_id, name)]


def artifacts(server: Server, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in server.client().list_artifacts(run_id, path)}
