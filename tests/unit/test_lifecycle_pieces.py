"""The pieces of a stop-safe job, without training: checkpoint checks, results.csv trimming, secret
scrubbing, signal shielding and forwarding, start-time input checks."""

from __future__ import annotations

import inspect
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from container.contract import Environment
from container.failure import UserError, failure_reason
from container.yolo import checkpoints, validate
from tests.conftest import ROOT


def _ckpt(path: Path, *, epoch: int, epochs: int = 3, optimizer: bool = True, origin: str | None = None) -> Path:
    """A checkpoint with the keys ultralytics' save_model writes that the job reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "ema": torch.nn.Linear(2, 2), "optimizer": {"state": {}} if optimizer else None,
                "train_args": {"epochs": epochs, "data": "/x/data.yaml"},
                "git": {"origin": origin, "branch": "main"}}, path)
    return path


def test_inspect_reads_epochs_and_resumability(tmp_path):
    state = checkpoints.inspect(_ckpt(tmp_path / "last.pt", epoch=1))
    assert (state.epochs_done, state.epochs, state.resumable, state.finished) == (2, 3, True, False)
    assert checkpoints.inspect(_ckpt(tmp_path / "f.pt", epoch=2, optimizer=False)).finished
    assert checkpoints.inspect(_ckpt(tmp_path / "g.pt", epoch=2)).finished, "saved after the last epoch"


@pytest.mark.parametrize("damage", ["truncated", "empty", "not torch", "no model"])
def test_damaged_last_moved_aside_then_best(tmp_path, damage):
    weights = tmp_path / "weights"
    last = _ckpt(weights / "last.pt", epoch=1)
    _ckpt(weights / "best.pt", epoch=0)
    data = last.read_bytes()
    if damage == "truncated":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "not torch":
        last.write_text("hello")
    else:
        torch.save({"epoch": 1}, last)
    logs: list[str] = []
    state = checkpoints.resume_point(weights, logs.append)
    assert state is not None and state.epochs_done == 1 and state.resumable, "went on from best.pt"
    assert (weights / "last.pt.damaged-1").read_bytes() != b"" or damage == "empty"
    assert (weights / "last.pt.damaged-1").exists(), "moved aside, not deleted"
    assert any("moved aside" in line for line in logs) and any("going on from best.pt" in line for line in logs)


def test_nothing_readable_means_from_scratch(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "last.pt").write_bytes(b"PK\x03\x04broken")
    (weights / "best.pt").write_bytes(b"")
    (weights / "last.pt.partial").write_bytes(b"half")
    logs: list[str] = []
    assert checkpoints.resume_point(weights, logs.append) is None
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt.damaged-1", "last.pt.damaged-1"]
    assert "training from scratch" in logs[-1]


def test_checkpoint_channel_checked_before_copy(tmp_path):
    channel, run = tmp_path / "channel", tmp_path / "run"
    (channel / "weights").mkdir(parents=True)
    (channel / "weights" / "last.pt").write_bytes(b"truncated")
    with pytest.raises(UserError, match="not a readable ultralytics checkpoint"):
        checkpoints.from_channel(channel, run, print)
    assert not run.exists(), "nothing copied"
    _ckpt(channel / "weights" / "last.pt", epoch=2, optimizer=False)
    with pytest.raises(UserError, match="finished model.*'weights' channel"):
        checkpoints.from_channel(channel, run, print)
    assert not run.exists()
    _ckpt(channel / "weights" / "last.pt", epoch=0)
    (channel / "results.csv").write_text("epoch,time\n1,2\n")
    checkpoints.from_channel(channel, run, print)
    assert (run / "weights" / "last.pt").is_file() and (run / "results.csv").is_file()


def test_trim_results(tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,time,x\n1,1,0.1\n2,2,0.2\n3,3,0.3\n4,4")
    assert checkpoints.trim_results(csv, 2) == 2
    assert csv.read_text() == "epoch,time,x\n1,1,0.1\n2,2,0.2\n"
    assert checkpoints.trim_results(csv, 2) == 0


def test_scrub_checkpoint_and_git_info(tmp_path):
    path = _ckpt(tmp_path / "best.pt", epoch=2, optimizer=False,
                 origin="https://x-access-token:ghp_SECRET@github.com/org/repo.git")
    assert checkpoints.scrub_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["git"]["origin"] == "https://github.com/org/repo.git"
    assert b"ghp_SECRET" not in path.read_bytes()
    assert not checkpoints.scrub_checkpoint(path), "a clean file is left as it is"

    from ultralytics.utils import GIT

    saved = GIT.__dict__.get("origin", None)
    GIT.__dict__["origin"] = "https://user:pw@example.com/r.git"
    try:
        checkpoints.scrub_git_info()
        assert GIT.origin == "https://example.com/r.git"
    finally:
        GIT.__dict__["origin"] = saved


def test_optimizer_names_match_ultralytics():
    from ultralytics.engine.trainer import BaseTrainer

    source = inspect.getsource(BaseTrainer.build_optimizer)
    declared = set(re.search(r"optimizers = \{([^}]*)\}", source).group(1).replace('"', "").replace(" ", "").split(","))
    assert declared == set(validate.OPTIMIZERS)


@pytest.mark.parametrize("hps, words", [
    ({"epochs": 0}, "'epochs' must be at least 1, got 0"),
    ({"lr0": float("nan")}, "'lr0' must be a finite number"),
    ({"lrf": float("inf")}, "'lrf' must be a finite number"),
    ({"imgsz": 100000}, "'imgsz' must be between 32 and 8192"),
    ({"names": "a\x00b"}, "'names' holds a NUL byte"),
    ({"optimizer": "adamm"}, "'adamm' is not one of ultralytics' optimizers: auto, SGD"),
])
def test_value_checks(hps, words):
    with pytest.raises(UserError) as err:
        validate.check_values(hps, {})
    assert words in str(err.value)


def test_long_values_are_cut_and_the_fix_survives():
    with pytest.raises(UserError) as err:
        validate.check_values({"optimizer": "x" * 5000}, {})
    text = failure_reason(err.value)
    assert len(text) < 400 and text.endswith("RMSprop")


def test_ultralytics_argument_errors_are_user_errors():
    with pytest.raises(UserError, match="ultralytics refuses the arguments"):
        validate.check_framework_args({"amp": "sometimes"})
    validate.check_framework_args({"epochs": 3, "imgsz": 64, "amp": True})


def test_environment_checks(tmp_path):
    env = Environment(base_dir=tmp_path, resource_config={"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]})
    with pytest.raises(UserError, match="current_host 'algo-3' is not in hosts"):
        validate.check_environment(env)
    (tmp_path / "input" / "data").mkdir(parents=True)
    (tmp_path / "input" / "data" / "train").write_text("a file")
    env = Environment(base_dir=tmp_path, input_data_config={"train": {}})
    with pytest.raises(UserError, match="channel 'train' is a file"):
        validate.check_environment(env)


def test_failure_text_has_no_ansi_codes():
    err = RuntimeError("\x1b[34m\x1b[1mDataset\x1b[0m error \x1b[31mred\x1b[0m")
    assert "\x1b" not in failure_reason(err) and "Dataset error red" in failure_reason(err)


def test_scratch_dir_is_outside_input_and_checkpoints(tmp_path):
    env = Environment(base_dir=tmp_path)
    assert env.scratch_dir == tmp_path / "scratch" / "algo-1"
    assert not env.scratch_dir.is_relative_to(env.checkpoint_dir) and not env.scratch_dir.is_relative_to(env.input_dir)
    moved = Environment(base_dir=tmp_path, environ={"SM_DETECTORS_SCRATCH": str(tmp_path / "big")})
    assert moved.scratch_dir == tmp_path / "big" / "algo-1"


# -- signals ----------------------------------------------------------------------------------------------
def _python(code: str, tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_second_sigterm_while_saving_is_held(tmp_path):
    proc = _python("""
        import os, signal, time
        from container.signals import GracefulStop
        stop = GracefulStop().install()
        with stop.deferred():
            with stop.shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                print("save finished", flush=True)
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
            except Exception as err:
                print("after the save:", type(err).__name__, flush=True)
    """, tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert "save finished\nafter the save: TrainingStopped" in out, out


def test_sigterm_reaches_ddp_style_children(tmp_path):
    """ultralytics starts its DDP workers with subprocess.run; the job's SIGTERM is passed on to them."""
    marker = tmp_path / "child-got-sigterm"
    worker = tmp_path / "worker.py"  # stands in for torch.distributed.run and its workers
    worker.write_text(textwrap.dedent(f"""
        import signal, sys, time
        def handler(signum, frame):
            open({str(marker)!r}, "w").write("saved")
            sys.exit(1)
        signal.signal(signal.SIGTERM, handler)
        print("worker ready", flush=True)
        time.sleep(60)
    """))
    proc = _python(f"""
        import subprocess, sys
        from container.signals import GracefulStop
        stop = GracefulStop().install()
        try:
            with stop.deferred(), stop.forwarding():
                subprocess.run([sys.executable, {str(worker)!r}], check=True)
        except subprocess.CalledProcessError:
            print("forwarded to", stop.forwarded, flush=True)
            sys.exit(143 if stop.requested else 1)
    """, tmp_path)
    for line in proc.stdout:
        if "worker ready" in line:
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert marker.read_text() == "saved" and "forwarded to [" in out


def test_a_worker_records_the_signal_for_the_loop(tmp_path):
    """A DDP worker's handler (GracefulStop(deferred=True)) leaves the stop to the training loop."""
    proc = _python("""
        import os, signal, time
        from container.signals import GracefulStop
        stop = GracefulStop(deferred=True).install()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        print("still running, stop requested:", stop.requested is not None, flush=True)
    """, tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert "still running, stop requested: True" in out, out
