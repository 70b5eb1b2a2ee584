"""``python -m container.local``: what it refuses before touching anything, and what a stop does to its children.

The trainer here is a stand-in (``TRAIN_COMMAND`` replaced): a process that starts a child of its own, says so
on stdout in colour (every test reads that line back plain: into a pipe the runner drops colour codes), and
on SIGTERM writes a checkpoint and exits 143 as the real one does. Every wait is for a line or a process's end,
never for a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from container import local
from container.contract import is_channel_name
from container.failure import UserError
from tests.conftest import ROOT
from tests.processes import GUARD, gone, watching

STAND_IN = textwrap.dedent("""
    import os, signal, subprocess, sys, pathlib
    base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # a data loader, say

    def stop(signum, frame):
        (base / "checkpoints" / "last.ckpt").write_text("saved on " + signal.Signals(signum).name)
        (base / "model" / "partial.txt").write_text("x")
        sys.exit(143)  # and leaves its own child behind, as a crashed trainer would

    signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("IGNORE_TERM") else stop)
    print(f"\x1b[34m\x1b[1mready\x1b[0m {os.getpid()} {child.pid}", flush=True)  # coloured, as ultralytics does
    if os.environ.get("FLOOD"):  # far more than a pipe holds, then a mark that all of it was written
        for i in range(20000):
            print(f"line {i} " + "x" * 60, flush=True)
        (base / "flooded").write_text("yes")
    while True:
        signal.pause()
""")


def _runner(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    code = ("import sys; from container import local; "
            f"local.TRAIN_COMMAND = (sys.executable, {str(stand_in)!r}); sys.exit(local.main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.jpg").write_bytes(b"jpg")
    return data


def _victim(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("mine")
    return path


def _untouched(victim: Path) -> bool:
    return (victim / "keep.txt").read_text() == "mine"


# -- item 1: nothing outside the tree it creates --------------------------------------------------------------------
def test_swapped_channel_is_refused_before_anything_is_touched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = _data(tmp_path)
    victim = _victim(tmp_path / "data" / "mycfg")
    _victim(tmp_path / "mycfg")
    out = tmp_path / "O"
    assert local.main(["--train", str(data), "--channel", "data/mycfg=mycfg", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "channel name 'data/mycfg' is not valid" in err and "write --channel mycfg=data/mycfg" in err
    assert _untouched(victim) and _untouched(tmp_path / "mycfg") and not out.exists()


@pytest.mark.parametrize("name", ["../../../../victim", "..", ".", "a/b", "/abs", "", "x" * 65, "sp ace"])
def test_channel_names_that_are_not_one_folder_are_refused(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    data = _data(tmp_path)
    victim = _victim(tmp_path / "victim")
    out = tmp_path / "a" / "b" / "c" / "O"
    assert local.main(["--train", str(data), "--channel", f"{name}={data}", "--out", str(out)]) == 2
    assert "is not valid" in capsys.readouterr().err
    assert _untouched(victim) and not (tmp_path / "a").exists()
    assert not is_channel_name(name)


def test_build_tree_refuses_a_name_before_creating_anything(tmp_path):
    victim = _victim(tmp_path / "victim")
    with pytest.raises(UserError, match="not valid"):
        local.build_tree(tmp_path / "t" / "opt_ml", {"../../../victim": _data(tmp_path)}, {})
    assert _untouched(victim) and not (tmp_path / "t").exists()


def test_an_out_folder_the_runner_did_not_write_is_left_alone(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "project"
    mine = _victim(out / "opt_ml")  # a folder of the user's that happens to be called opt_ml
    assert local.main(["--train", str(data), "--out", str(out)]) == 2
    assert "was not written by container.local" in capsys.readouterr().err and _untouched(mine)
    (other := tmp_path / "other").mkdir()
    (other / "model.tar.gz").write_text("the user's own")
    assert local.main(["--train", str(data), "--out", str(other)]) == 2
    assert (other / "model.tar.gz").read_text() == "the user's own" and not (other / "opt_ml").exists()


def test_data_that_holds_the_output_or_lies_inside_it_is_refused(tmp_path, capsys):
    data = _data(tmp_path)
    assert local.main(["--train", str(data), "--out", str(data / "runs")]) == 2
    assert "holds the output tree" in capsys.readouterr().err and not (data / "runs").exists()
    out = tmp_path / "O"
    local.build_tree(out / "opt_ml", {"train": data}, {})
    inside = out / "opt_ml" / "input" / "data" / "train"
    assert local.main(["--train", str(inside), "--out", str(out)]) == 2
    assert "lies inside the output tree" in capsys.readouterr().err
    assert (inside / "images" / "a.jpg").read_bytes() == b"jpg"


def test_a_bad_hyperparameters_file_is_a_user_error(tmp_path, capsys):
    data = _data(tmp_path)
    deep = tmp_path / "hp.json"
    deep.write_text("[" * 1100)
    for path in (deep, tmp_path / "missing.yaml"):
        assert local.main(["--train", str(data), "--hyperparameters", str(path), "--out", str(tmp_path / "O")]) == 2
        assert "not a readable JSON or YAML file" in capsys.readouterr().err
    assert not (tmp_path / "O").exists()


def test_a_rerun_replaces_its_own_tree_and_keeps_the_checkpoints_when_asked(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "O"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    runs = []
    for extra in ([], ["--keep-checkpoints"]):
        proc = _runner(tmp_path, "--train", str(data), "--out", str(out), *extra)
        pids = proc.stdout.readline().split()[1:]
        assert pids, proc.communicate()
        (out / "opt_ml" / "checkpoints" / f"run{len(runs)}").write_text("x")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)  # a guard against a hang, not a measure
        runs.append(sorted(p.name for p in (out / "opt_ml" / "checkpoints").iterdir()))
    assert runs == [["last.ckpt", "run0"], ["last.ckpt", "run0", "run1"]]
    assert (out / "notes.txt").read_text() == "the user's"


# -- item 4: stopping the runner stops its children -----------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_runner_stops_train_and_its_children_and_packs(tmp_path, sig):
    data, out = _data(tmp_path), tmp_path / "O"
    proc = _runner(tmp_path, "--train", str(data), "--out", str(out))
    line = proc.stdout.readline()  # the stand-in is up and has started its own child
    assert line.startswith("ready"), (line, proc.communicate())
    train, grandchild = map(int, line.split()[1:])
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert gone(train) and gone(grandchild)
    checkpoint = out / "opt_ml" / "checkpoints" / "last.ckpt"
    assert checkpoint.read_text() == "saved on SIGTERM"  # train got SIGTERM, as from StopTrainingJob
    with tarfile.open(out / "model.tar.gz") as tar:
        assert "partial.txt" in tar.getnames()
    assert f"stopped ({sig.name}" in err and "--keep-checkpoints" in err


def test_a_reader_that_leaves_does_not_block_train(tmp_path):
    """``python -m container.local ... | head -1``: train's later lines are drained, not left to fill the pipe."""
    data, out = _data(tmp_path), tmp_path / "O"
    proc = _runner(tmp_path, "--train", str(data), "--out", str(out), env={"FLOOD": "1"})
    assert proc.stdout.readline().startswith("ready")
    proc.stdout.close()  # the reader leaves
    flooded = out / "opt_ml" / "flooded"
    guard = time.monotonic() + GUARD  # against a hang, not a measure
    try:
        with watching(proc.pid) as ended:
            while not flooded.exists():  # train wrote 1.3 MB past a gone reader (a blocked train never gets here)
                assert not ended(0), proc.stderr.read()
                assert time.monotonic() < guard, "train is blocked writing to a pipe nobody reads"
                os.sched_yield()
    finally:
        if not flooded.exists():
            proc.kill()  # train follows (PR_SET_PDEATHSIG)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err


def test_a_second_signal_kills_a_train_that_ignores_the_first(tmp_path):
    data, out = _data(tmp_path), tmp_path / "O"
    proc = _runner(tmp_path, "--train", str(data), "--out", str(out), env={"IGNORE_TERM": "1"})
    line = proc.stdout.readline()
    train, grandchild = map(int, line.split()[1:])
    proc.send_signal(signal.SIGINT)
    assert "Signal again to kill it" in proc.stderr.readline() + proc.stderr.readline()  # the first was passed on
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGKILL and gone(train) and gone(grandchild)


def test_train_gets_sigterm_when_the_runner_is_killed(tmp_path):
    data, out = _data(tmp_path), tmp_path / "O"
    proc = _runner(tmp_path, "--train", str(data), "--out", str(out))
    train, grandchild = map(int, proc.stdout.readline().split()[1:])
    try:
        with watching(train) as ended:  # train is not our child to wait for
            proc.kill()  # no handler of the runner's runs: the kernel tells train (PR_SET_PDEATHSIG)
            proc.wait()
            assert ended(GUARD)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)  # the stand-in's own child: nobody else is left to end it
    assert (out / "opt_ml" / "checkpoints" / "last.ckpt").read_text() == "saved on SIGTERM"


def test_build_tree_writes_the_marker_the_runner_recognises(tmp_path):
    base = local.build_tree(tmp_path / "opt_ml", {}, {})
    assert local.is_local_tree(base)
    config = json.loads((base / "input" / "config" / "resourceconfig.json").read_text())
    assert config["current_instance_type"] == "local"
