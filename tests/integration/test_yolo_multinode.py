"""Two hosts on one machine: each a real ``python -m container train`` with its own /opt/ml tree.

``resourceconfig.json`` names the hosts ``127.0.0.1`` and ``localhost`` (both resolve to this machine;
the leader is ``127.0.0.1``, the first sorted) on the loopback interface, so torchrun, gloo and the
leader-name lookup run exactly as on SageMaker, on the CPU. Real training (yolo11n from its YAML, 64 px).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from container import local
from container.signals import PAUSE_VARIABLE, child_pids
from tests.conftest import FAST, ROOT, metric_values

pytestmark = pytest.mark.slow
HOSTS = ("127.0.0.1", "localhost")
LEADER, FOLLOWER = HOSTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trees(root: Path, data: Path, hps: dict[str, str], hosts=HOSTS) -> dict[str, Path]:
    return {h: local.build_tree(root / h, {"train": data}, hps, hosts=hosts, current_host=h, interface="lo")
            for h in hosts}


def start(base: Path, log: Path, pause_at: str | None = None) -> subprocess.Popen:
    """The host's job; ``pause_at``: its rank 0 waits at that point for a signal (``SM_DETECTORS_PAUSE_AT``)."""
    extra = {PAUSE_VARIABLE: pause_at} if pause_at else {}
    return subprocess.Popen(list(local.TRAIN_COMMAND),
                            env=local.train_environ(base, env={"PYTHONPATH": str(ROOT), **extra}),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"ended before {text!r}:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in time"
        time.sleep(0.3)


def kill_tree(pid: int) -> None:
    """What losing an instance does: every process of that host gone at once."""
    for child in child_pids(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_all(bases: dict[str, Path], tag: str, timeout: float = 1800) -> dict[str, tuple[int, str]]:
    logs = {h: b.parent / f"{h}.{tag}.log" for h, b in bases.items()}
    procs = {h: start(b, logs[h]) for h, b in bases.items()}
    return {h: (p.wait(timeout=timeout), logs[h].read_text()) for h, p in procs.items()}


def epochs_in(results_csv: Path) -> list[int]:
    if not results_csv.is_file():
        return []
    return [int(float(r.split(",")[0])) for r in results_csv.read_text().splitlines()[1:]]


def distributed_line(host: str, rank: int) -> str:
    return f"distributed: host {host} rank {rank} of 2 (leader {LEADER}, backend gloo)"


def test_two_hosts_stop_together_then_resume_and_finish(shapes, tmp_path):
    """A stop reaching both hosts saves once and exits 143 on both; the restart resumes both from the same
    epoch and trains to the end; only the leader writes the model folder and the metric lines."""
    hps = {**FAST, "epochs": "5", "batch": "4", "dist_timeout": "120", "dist_port": str(free_port())}
    bases = trees(tmp_path, shapes, hps)
    run_dir = bases[LEADER] / "checkpoints" / LEADER / "train"
    logs = {h: tmp_path / f"{h}.a.log" for h in HOSTS}
    procs = {h: start(bases[h], logs[h], pause_at="epoch-start:2") for h in HOSTS}
    wait_for(logs[LEADER], "[pause] epoch-start:2:", procs[LEADER])  # the leader waits there: the stop is in epoch 2
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    codes = {h: p.wait(timeout=900) for h, p in procs.items()}
    texts = {h: logs[h].read_text() for h in HOSTS}
    assert codes == {LEADER: 143, FOLLOWER: 143}, texts
    assert texts[LEADER].count("checkpoint saved to") == 1, "the stop saves once, on the leader"
    for h in HOSTS:
        assert not any((bases[h] / "model").iterdir())
        assert not (bases[h] / "output" / "failure").exists()

    done = epochs_in(run_dir / "results.csv")  # epochs finished before the stop
    assert done == [1], "stopped in epoch 2"
    assert "stopped by SIGTERM in epoch 2/5" in texts[LEADER], texts[LEADER][-3000:]

    results = run_all(bases, "b")
    assert {h: code for h, (code, _) in results.items()} == {LEADER: 0, FOLLOWER: 0}, results
    leader_log, follower_log = results[LEADER][1], results[FOLLOWER][1]
    assert distributed_line(LEADER, 0) in leader_log and distributed_line(FOLLOWER, 1) in follower_log
    for host_log in (leader_log, follower_log):  # the one job sequence: the input pipeline as on one instance
        assert "image cache: " in host_log and "data loading: " in host_log and "shared memory: " in host_log
    assert f"from epoch {len(done) + 1} to 5" in leader_log, "the restart goes on with the interrupted epoch"
    # the follower resumed from the leader's checkpoint, kept in its own checkpoint folder
    assert (bases[FOLLOWER] / "checkpoints" / FOLLOWER / "train" / "weights" / "last.pt").is_file()

    assert epochs_in(run_dir / "results.csv") == [1, 2, 3, 4, 5], "every epoch once across the stop"
    model = bases[LEADER] / "model"
    assert {"best.pt", "last.pt", "metrics.json", "results.csv"} <= {p.name for p in model.iterdir()}
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 5 and set(metrics["final"]) >= {"mAP50", "mAP50-95"}
    found = metric_values(leader_log)
    assert found["epoch"] == [float(e) for e in range(len(done) + 1, 6)] and len(found["final:mAP50-95"]) == 1
    # the follower: no model folder, no metric lines (SageMaker would read them twice)
    assert not any((bases[FOLLOWER] / "model").iterdir())
    assert metric_values(follower_log) == {}


def test_lone_follower_fails_within_dist_timeout(shapes, tmp_path):
    """The leader never comes: the follower ends with a failure naming the leader, not a hang."""
    hps = {**FAST, "dist_timeout": "10", "dist_port": str(free_port())}
    base = trees(tmp_path, shapes, hps)[FOLLOWER]
    result = local.run_train(base, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    reason = (base / "output" / "failure").read_text()
    assert f"host {FOLLOWER} (rank 1 of 2) could not start training with the leader {LEADER}" in reason, reason
    assert "dist_timeout 10s" in reason


def test_losing_the_leader_ends_the_follower(shapes, tmp_path):
    """The leader's instance disappears mid-training: the follower fails (naming the leader) instead of waiting."""
    hps = {**FAST, "epochs": "6", "batch": "4", "dist_timeout": "60", "dist_port": str(free_port())}
    bases = trees(tmp_path, shapes, hps)
    logs = {h: tmp_path / f"{h}.log" for h in HOSTS}
    procs = {h: start(bases[h], logs[h], pause_at="epoch-start:2") for h in HOSTS}
    wait_for(logs[LEADER], "[pause] epoch-start:2:", procs[LEADER])  # mid-training, whatever the machine's speed
    kill_tree(procs[LEADER].pid)
    code = procs[FOLLOWER].wait(timeout=900)
    assert code == 1, logs[FOLLOWER].read_text()[-3000:]
    reason = (bases[FOLLOWER] / "output" / "failure").read_text()
    assert f"host {FOLLOWER} (rank 1 of 2)" in reason and f"leader {LEADER}" in reason, reason


def test_sharded_channel_is_refused(shapes, make_tree):
    """Each rank samples its share of the whole dataset: a ShardedByS3Key channel would hide most of it."""
    base = make_tree({"train": shapes}, {**FAST}, hosts=HOSTS, current_host=LEADER, interface="lo")
    config = base / "input" / "config" / "inputdataconfig.json"
    data = json.loads(config.read_text())
    data["train"]["S3DistributionType"] = "ShardedByS3Key"
    config.write_text(json.dumps(data))
    result = local.run_train(base, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2
    reason = (base / "output" / "failure").read_text()
    assert "channel 'train' is ShardedByS3Key" in reason and "FullyReplicated" in reason, reason
