"""Stopping the parent stops its children: a local endpoint (``deploy --instance-type local``) and a local
training job end with the command that started them, whatever stops it (Ctrl-C, SIGTERM) and whenever.

Each wait is for a line or a process's end, never for a time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from container.signals import child_pids
from sdk.serving.hosting import LocalServer
from tests.conftest import ROOT
from tests.processes import gone

# A stand-in server: starts a child of its own (a worker), says so, and serves nothing
STAND_IN = textwrap.dedent("""
    import os, signal, subprocess, sys
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    print(f"up {os.getpid()} {worker.pid}", flush=True)
    while True:
        signal.pause()
""")


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
    assert len(seen) == 2 and all(gone(pid) for pid in seen)


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
    assert all(gone(pid) for pid in server)
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # nobody listens there
        s.connect(("127.0.0.1", port))
    with socket.socket() as s:  # and nobody holds it: it can be bound again (TIME_WAIT aside, as gunicorn does)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


ENGINE = """#!{python}
import os, pathlib, signal, sys
seen = pathlib.Path(os.environ["SEEN"])
if sys.argv[1] == "run":  # the container: says so, stops on SIGTERM as the trainer does
    (seen / "run.pid").write_text(str(os.getpid()))

    def stop(signum, frame):
        print("SIGTERM: checkpoint saved", flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, stop)
    print(f"ready {{os.getpid()}}", flush=True)
    while True:
        signal.pause()
elif sys.argv[1] == "kill":  # docker kill [--signal TERM] NAME
    sig = sys.argv[3] if sys.argv[2] == "--signal" else "KILL"
    os.kill(int((seen / "run.pid").read_text()), getattr(signal, "SIG" + sig))
"""


def test_ctrl_c_on_a_local_training_job_stops_it_as_stop_training_job_does(tmp_path):
    """The job runs in its own session (a terminal's Ctrl-C reaches the CLI alone); the CLI stops it with one
    SIGTERM, waits for it, records it Stopped and says how to resume."""
    from tests.sdk.conftest import IMAGE

    bin_dir, seen, home = tmp_path / "bin", tmp_path / "seen", tmp_path / "home"
    bin_dir.mkdir()
    seen.mkdir()
    engine = bin_dir / "podman"
    engine.write_text(ENGINE.format(python=sys.executable))
    engine.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SEEN": str(seen),
           "SM_DETECTORS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sdk", "launch", "--instance-type", "local", "--image", IMAGE,
                             "--engine", "podman", "--train", str(data), "--job-name", "stopme", "--logs",
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    for line in proc.stdout:  # the job's log, followed
        if line.startswith("ready"):
            break
    container = int(line.split()[1])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # a guard against a hang, not a measure
    assert proc.returncode == 130, err
    assert gone(container)
    assert "local job stopme stopped (Stopped)" in err and "resume stopme --local" in err
    assert "SIGTERM: checkpoint saved" in (home / "jobs" / "stopme" / "log.txt").read_text()
    assert json.loads((home / "jobs" / "stopme" / "job.json").read_text())["TrainingJobStatus"] == "Stopped"


def test_a_python_session_that_ends_without_delete_leaves_no_server(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from sdk.serving.hosting import LocalServer
        log = Path({str(tmp_path / "serve.log")!r})
        server = LocalServer(Path({str(tmp_path)!r}), log_path=log)
        server.command = lambda: [sys.executable, "-c", {STAND_IN!r}]

        def ready(timeout):
            while not log.read_text().startswith("up "):
                os.sched_yield()

        server.wait_ready = ready
        server.start()
        print(log.read_text().strip(), flush=True)  # and the session ends: no delete(), no stop()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()[1:3]]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)
