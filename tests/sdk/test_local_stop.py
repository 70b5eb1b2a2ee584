"""Stopping the parent stops its children: a local endpoint (``deploy --instance-type local``) and a local
training job end with the command that started them, whatever stops it (Ctrl-C, SIGTERM) and whenever.

Each wait is for a line or a process's end, never for a time.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from container.signals import child_pids
from sdk._hosting import LocalServer
from tests.conftest import ROOT

# A stand-in server: starts a child of its own (a worker), says so, and serves nothing
STAND_IN = textwrap.dedent("""
    import os, signal, subprocess, sys
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    print(f"up {os.getpid()} {worker.pid}", flush=True)
    while True:
        signal.pause()
""")


def _gone(pid: int) -> bool:
    """True once ``pid`` has ended. A SIGKILL is delivered, not done, when kill() returns: wait for the exit itself
    (a pidfd turns readable then; 300 s is a guard against a hang, not a measure)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return select.select([fd], [], [], 300)[0] == [fd]
    finally:
        os.close(fd)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = child_pids(todo.pop())
        found += children
        todo += children
    return found


def test_an_interrupt_while_the_server_starts_stops_it_and_its_workers(tmp_path, monkeypatch):
    """Ctrl-C while the model loads (before /ping answers): nothing of the server is left."""
    log = tmp_path / "serve.log"
    server = LocalServer(tmp_path, log_path=log)
    monkeypatch.setattr(server, "command", lambda: [sys.executable, "-c", STAND_IN])
    seen: list[int] = []

    def interrupted(timeout: float) -> None:
        while not log.read_text().startswith("up "):  # the stand-in is up, with its worker
            os.sched_yield()
        seen.extend(map(int, log.read_text().split()[1:3]))
        raise KeyboardInterrupt

    monkeypatch.setattr(server, "wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert len(seen) == 2 and all(_gone(pid) for pid in seen)


def _deploy_cli(model: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sdk", "deploy", str(model), "--instance-type", "local",
                             "--weights", "onnx"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_local_deploy_stops_gunicorn_and_frees_the_port(tmp_path_factory, sig):
    from tests.serving_models import yolo_model_dir

    proc = _deploy_cli(yolo_model_dir(tmp_path_factory))
    line = proc.stdout.readline()  # printed once /ping answers
    assert line.startswith("{"), proc.communicate()
    url = json.loads(line)["url"]
    server = _descendants(proc.pid)  # gunicorn's master and its workers
    assert len(server) >= 2
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)  # a guard against a hang, not a measure
    assert proc.returncode == 130, err
    assert "local endpoint" in err and "no longer serves" in err and "training job" not in err
    assert all(_gone(pid) for pid in server)
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # nobody listens there
        s.connect(("127.0.0.1", port))
    with socket.socket() as s:  # and nobody holds it: it can be bound again (TIME_WAIT aside, as gunicorn does)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
