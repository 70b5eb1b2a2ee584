"""Stops at any moment, damaged checkpoints and bad input, run as the image runs: `python -m container train`.

Real training (yolo11n from its YAML, 64 px, 4 batches an epoch, 1-3 epochs), real SIGTERMs. Each
stop is followed by a restart with the same /opt/ml tree (what a spot restart or a retried job with
the same checkpoint location gets); the model folder must come out as an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from container import local, signals
from tests.conftest import FAST, ROOT, metric_values

pytestmark = pytest.mark.slow
HP = {**FAST, "epochs": "3", "batch": "4"}  # 16 train images: 4 batches an epoch


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT)}


def stop_at(base: Path, point: str, timeout: float = 1800) -> tuple[int, str]:
    """Run the job with a pause at ``point`` (``SM_DETECTORS_PAUSE_AT``), SIGTERM it there; (exit code, log).

    The job waits at the point until the signal arrives, so the stop lands there however fast or loaded
    the machine is (no delay after a log line)."""
    env = local.train_environ(base, env={**_env(), signals.PAUSE_VARIABLE: point})
    proc = subprocess.Popen(list(local.TRAIN_COMMAND), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"[pause] {point}:") or time.monotonic() > deadline:
            break
    assert any(line.startswith(f"[pause] {point}:") for line in lines), "".join(lines)[-4000:]
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(lines) + rest


def restart(base: Path) -> subprocess.CompletedProcess:
    result = local.run_train(base, env=_env(), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def epochs_in(results_csv: Path) -> list[int]:
    return [int(float(line.split(",")[0])) for line in results_csv.read_text().splitlines()[1:]]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_stopped(base: Path, code: int, log: str) -> None:
    assert code == 143, log[-4000:]
    assert not (base / "output" / "failure").exists(), "a stop is not a failure"
    assert not any((base / "model").iterdir()), "a stopped job leaves no half model folder for SageMaker to upload"


@pytest.mark.parametrize("where, point, said", [
    ("data preparation", "data", "SIGTERM received; stopped"),
    ("first epoch", "epoch-start:1", "stopped by SIGTERM in epoch 1/3"),
    ("middle epoch", "epoch-start:2", "stopped by SIGTERM in epoch 2/3"),
    ("last epoch", "epoch-start:3", "stopped by SIGTERM in epoch 3/3"),
    ("after a middle epoch's last batch", "epoch-end:2", "stopped by SIGTERM after epoch 2/3"),
])
def test_stop_then_restart_trains_every_epoch_once(where, point, said, shapes, make_tree):
    base = make_tree({"train": shapes}, HP)
    channel = snapshot(base / "input" / "data")
    code, log = stop_at(base, point)
    assert_stopped(base, code, log)
    assert said in log, log[-3000:]

    result = restart(base)
    assert epochs_in(base / "model" / "results.csv") == [1, 2, 3], "every epoch once, the interrupted one redone"
    before = [int(v) for v in metric_values(log).get("epoch", [])]
    after = [int(v) for v in metric_values(result.stdout).get("epoch", [])]
    assert before + after == [1, 2, 3], (before, after)
    assert len(metric_values(result.stdout)["final:mAP50-95"]) == 1, "the final metric line"
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3
    # derived data (label caches) went to scratch: the channel is as it was, byte for byte
    assert snapshot(base / "input" / "data") == channel
    assert list((base / "scratch").rglob("*.cache")), "ultralytics' label cache is in the scratch folder"
    assert not list((base / "checkpoints").rglob("*.jpg")), "no dataset copy in the synced checkpoint folder"
    assert "checkpoint folder" in result.stdout and "MiB" in result.stdout


@pytest.mark.parametrize("where, point, said", [
    # a stop that arrived after the last batch: the epoch is saved, the final evaluation never starts
    ("after the last batch", "epoch-end:1", "stopped by SIGTERM after epoch 1/1"),
    ("final evaluation", "final-eval", "stopped by SIGTERM before the final evaluation"),
    ("export", "export:onnx", "SIGTERM received; stopped"),
    ("packaging", "package", "SIGTERM received; stopped"),
])
def test_stop_after_training_then_restart_packages(where, point, said, shapes, make_tree):
    base = make_tree({"train": shapes}, {**HP, "epochs": "1", "export": "onnx"})
    code, log = stop_at(base, point)
    assert_stopped(base, code, log)
    assert said in log, log[-3000:]
    assert "RuntimeError" not in log
    if point.startswith("epoch-end") or point == "final-eval":
        assert "Validating " not in log and "[final]" not in log, "a pending stop starts no final evaluation"

    result = restart(base)
    assert "already finished" in result.stdout and "[metrics]" not in result.stdout
    assert len(metric_values(result.stdout)["final:mAP50-95"]) == 1, "the final metric line, again"
    model = base / "model"
    assert (model / "exports" / "best.onnx").is_file() and not (model / "best.onnx").exists()
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["exports"]["onnx"]["path"] == "exports/best.onnx" and metrics["final"]
    assert epochs_in(model / "results.csv") == [1]


@pytest.fixture(scope="module")
def finished(shapes, tmp_path_factory):
    """One finished 1-epoch job, for the damaged-checkpoint and checkpoint-channel cases."""
    base = local.build_tree(tmp_path_factory.mktemp("finished") / "opt_ml", {"train": shapes}, {**HP, "epochs": "1"})
    restart(base)
    return base


def test_damaged_last_pt_is_moved_aside(finished, tmp_path):
    base = tmp_path / "opt_ml"
    shutil.copytree(finished, base, symlinks=True)
    shutil.rmtree(base / "model")
    (base / "model").mkdir()
    weights = base / "checkpoints" / "algo-1" / "train" / "weights"
    data = (weights / "last.pt").read_bytes()
    (weights / "last.pt").write_bytes(data[: len(data) // 3])  # killed while writing
    result = restart(base)
    assert "moved aside to last.pt.damaged-1" in result.stdout and "going on from best.pt" in result.stdout
    assert (weights / "last.pt.damaged-1").stat().st_size == len(data) // 3, "kept, not deleted"
    assert (base / "model" / "best.pt").is_file()


def test_finished_model_in_checkpoint_channel_is_refused(finished, shapes, make_tree, tmp_path):
    channel = tmp_path / "checkpoint"
    channel.mkdir()
    shutil.copyfile(finished / "model" / "last.pt", channel / "last.pt")
    base = make_tree({"train": shapes, "checkpoint": channel}, HP)
    result = local.run_train(base, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 2, result.stdout[-3000:]
    text = (base / "output" / "failure").read_text()
    assert "is a finished model" in text and "'weights' channel" in text
    assert not (base / "checkpoints" / "algo-1" / "train" / "weights" / "last.pt").exists(), "nothing copied"


def _tiny_image(data: Path) -> None:
    Image.new("RGB", (6, 6)).save(data / "images" / "train" / "train_0001.jpg")


@pytest.mark.parametrize("case, words", [
    ("epochs 0", "'epochs' must be between 1 and 100000, got '0'"),
    ("NaN rate", "'lr0' must be a finite number"),
    ("huge imgsz", "'imgsz' must be between 32 and 8192"),
    ("NUL byte", "'names' holds a NUL"),
    ("optimizer typo", "'optimizer' must be one of Adam, Adamax, AdamW, auto, MuSGD, NAdam, RAdam, RMSprop, SGD, "
                       "got 'Adamm' (did you mean 'Adam'?)"),
    ("ultralytics range", "'hsv_h' must be between 0.0 and 1.0, got '3.0'"),
    ("non-UTF-8 cfg", "cfg/hyp.yaml is not UTF-8 text"),
    ("channel is a file", "channel 'train' is a file"),
    ("host missing", "current_host 'algo-9' is not in hosts"),
    ("tiny images", "image under 10 px in 1 image(s), e.g. train_0001.jpg: 6x6"),
    ("VOC mostly unannotated", "images have no voc annotation and are left out"),
    ("val class unknown", "unknown class"),
])
def test_bad_input_is_a_user_error(case, words, shapes, make_tree, tmp_path):
    from container.annotations import convert

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    channels, hp, kwargs = {"train": data}, dict(HP), {}
    if case == "epochs 0":
        hp["epochs"] = "0"
    elif case == "NaN rate":
        hp["lr0"] = "NaN"
    elif case == "huge imgsz":
        hp["imgsz"] = "100000"
    elif case == "NUL byte":
        hp["names"] = "rectangle,ell\x00ipse"
    elif case == "optimizer typo":
        hp["optimizer"] = "Adamm"
    elif case == "ultralytics range":
        hp["hsv_h"] = "3.0"
    elif case == "non-UTF-8 cfg":
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        (cfg / "hyp.yaml").write_bytes(b"lr0: 0.01\nnote: caf\xe9\n")  # Latin-1
        channels["cfg"] = cfg
    elif case == "host missing":
        kwargs = {"hosts": ("algo-1",), "current_host": "algo-9"}
    elif case == "tiny images":
        _tiny_image(data)
    elif case == "VOC mostly unannotated":
        convert(shapes, "voc", tmp_path / "voc", log=lambda _: None)
        for xml in sorted((tmp_path / "voc").rglob("*.xml"))[:15]:
            xml.unlink()
        channels["train"] = tmp_path / "voc"
    elif case == "val class unknown":
        convert(shapes, "voc", tmp_path / "voc", log=lambda _: None)
        xml = sorted((tmp_path / "voc" / "val").rglob("*.xml"))[0]
        xml.write_text(xml.read_text().replace("<name>rectangle</name>", "<name>triangle</name>"))
        hp["val_fraction"] = "0.2"
        shutil.rmtree(tmp_path / "voc-train", ignore_errors=True)
        shutil.move(tmp_path / "voc" / "val", tmp_path / "voc-val")
        channels = {"train": tmp_path / "voc", "val": tmp_path / "voc-val"}
    base = make_tree(channels, hp, **kwargs)
    if case == "channel is a file":
        shutil.rmtree(base / "input" / "data" / "train")
        (base / "input" / "data" / "train").write_text("not a folder")
    result = local.run_train(base, env=_env(), capture_output=True, text=True, timeout=900)
    failure = base / "output" / "failure"
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    text = failure.read_text()
    assert words in text, text
    assert len(text) <= 1024 and "\x1b" not in text and "Traceback" not in text
    assert not list((base / "model").iterdir())
