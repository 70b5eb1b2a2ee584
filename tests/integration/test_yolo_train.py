"""The YOLO trainer run the way the image runs it: `python -m container train` on an /opt/ml tree.

Real training (yolo11n from its YAML, 64 px images, 2-3 epochs), real exports, real signals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from container import local
from container.archive import make_tarball
from tests.conftest import FAST, ROOT, metric_values
from tests.mlflow_server import mlflow_server  # noqa: F401 - the session's MLflow server, for `tracking`

pytestmark = pytest.mark.slow


def _environ(base: Path) -> dict[str, str]:
    return local.train_environ(base, env={"PYTHONPATH": str(ROOT)})


def run_train(base: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return local.run_train(base, env={"PYTHONPATH": str(ROOT), **(env or {})}, capture_output=True, text=True,
                           timeout=timeout)


@pytest.fixture(scope="module")
def tracking(request) -> dict[str, str]:
    """The job's MLflow environment when a test server can run here (tests/mlflow_server.py), else none."""
    try:
        server = request.getfixturevalue("mlflow_server")
    except pytest.skip.Exception:
        return {}
    return {"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_EXPERIMENT_NAME": "yolo-train", "TRAINING_JOB_NAME": "yolo-1"}


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory, tracking):
    """One successful job with an ONNX export, shared by the checks below (logging to MLflow where it can)."""
    base = local.build_tree(tmp_path_factory.mktemp("job") / "opt_ml", {"train": shapes},
                      {**FAST, "export": "onnx", "per_class_metrics": "true"})
    result = run_train(base, env=tracking)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base, result


def test_model_folder(trained):
    base, _ = trained
    model = base / "model"
    for name in ("best.pt", "last.pt", "data.yaml", "results.csv", "args.yaml", "metrics.json",
                 "exports/best.onnx"):
        assert (model / name).is_file(), name
    metrics = json.loads((model / "metrics.json").read_text())
    assert set(metrics["final"]) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert metrics["exports"]["onnx"]["verified_on"].endswith(".jpg")
    assert metrics["hyperparameters"]["epochs"] == 2 and metrics["hyperparameters"]["imgsz"] == 64
    assert metrics["dataset"]["train_images"] == 16 and metrics["epochs_completed"] == 2
    assert len(metrics["best_pt_sha256"]) == 64
    assert not (base / "output" / "failure").exists()
    last = base / "checkpoints" / "algo-1" / "train" / "weights" / "last.pt"
    assert last.is_file(), "checkpoints live under /opt/ml/checkpoints/<host>"


def test_metric_lines(trained):
    _, result = trained
    values = metric_values(result.stdout)
    assert values["epoch"] == [1.0, 2.0]
    for name in ("train:box_loss", "val:mAP50-95", "val:precision", "lr"):
        assert len(values[name]) == 2, name
    assert len(values["final:mAP50-95"]) == 1
    assert "class:rectangle:mAP50-95" in values and "class:ellipse:mAP50" in values


def test_sm_variables_exported(trained, tmp_path):
    # The trainer exports the toolkit's variables before it runs anything else.
    code = ("import os, container.cli as c; c.Schema.load = lambda i: (_ for _ in ()).throw(SystemExit("
            "os.environ['SM_CHANNEL_TRAIN'] + ' ' + os.environ['SM_HP_EPOCHS']))")
    base, _ = trained
    out = subprocess.run([sys.executable, "-c", code + "; c.train()"], env=_environ(base), capture_output=True,
                         text=True)
    assert out.stderr.strip().endswith(f"{base}/input/data/train 2")


def test_onnx_export_runs(trained, shapes):
    base, _ = trained
    from ultralytics import YOLO

    results = YOLO(str(base / "model" / "exports" / "best.onnx"), task="detect").predict(
        str(next((shapes / "images" / "val").glob("*.jpg"))), imgsz=64, verbose=False)
    assert results[0].boxes is not None


def test_weights_channel_from_previous_model_tarball(trained, shapes, make_tree, tmp_path):
    base, _ = trained
    weights = tmp_path / "weights"
    make_tarball(base / "model", weights / "model.tar.gz")
    hp = {k: v for k, v in FAST.items() if k != "model"}  # no model named: the weights are the model
    new = make_tree({"train": shapes, "weights": weights}, {**hp, "epochs": "1"})
    result = run_train(new)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((new / "model" / "metrics.json").read_text())
    assert "best.pt" in metrics["weights_sha256"]
    assert metrics["weights_sha256"]["best.pt"] in result.stdout, "the weights' SHA256 is logged"


def test_hyperparameter_files_in_cfg(shapes, make_tree, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "hyp.yaml").write_text("lr0: 0.02\nmosaic: 0.0\nepochs: 5\n")
    (cfg / "train-args.json").write_text(json.dumps({"epochs": 4, "lrf": 0.5}))
    base = make_tree({"train": shapes, "cfg": cfg}, {**FAST, "epochs": "1", "export": ""})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    hp, src = metrics["hyperparameters"], metrics["hyperparameter_sources"]
    assert (hp["epochs"], hp["lr0"], hp["lrf"], hp["mosaic"]) == (1, 0.02, 0.5, 0.0)
    assert src["epochs"] == "hyperparameters" and src["lr0"] == "cfg/hyp.yaml" and src["lrf"] == "cfg/train-args.json"


@pytest.mark.parametrize("fmt", ["voc", "coco", "groundtruth", "csv"])
def test_any_annotation_format_trains(fmt, shapes, make_tree, tmp_path):
    """The train channel may hold VOC, COCO, Ground Truth or CSV: detected, converted, logged, trained."""
    from container.annotations import convert

    convert(shapes, fmt, tmp_path / fmt, log=lambda _: None)
    base = make_tree({"train": tmp_path / fmt}, {**FAST, "epochs": "1"})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"channel 'train' holds {fmt} annotations: 20 images" in result.stdout + result.stderr
    summary = json.loads((base / "model" / "metrics.json").read_text())["dataset"]
    assert (summary["train_images"], summary["val_images"]) == (16, 4)
    assert sorted(summary["classes"]) == ["ellipse", "rectangle"]


@pytest.mark.parametrize("case, words", [
    ("missing channel", "no training data"),
    ("empty dataset", "no training images"),
    ("corrupt image", "unreadable image"),
    ("class id out of range", "class id out of range"),
    ("box outside the image", "box outside the image"),
    ("non-numeric epochs", "'epochs' must be an integer, got 'ten'"),
    ("unknown key", "unknown hyperparameter 'lr'; did you mean"),
    ("unsafe archive", "unsafe archive"),
    ("multi-host device", "cannot be set on a job with several instances"),
    ("model not in weights", "is not in the weights channel"),
    ("unknown model yaml", "cannot build model"),
    ("two annotation formats", "more than one annotation format (coco: 1 file"),
])
def test_bad_input_fails_clearly(case, words, shapes, make_tree, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    channels, hp, kwargs = {"train": data}, dict(FAST), {}
    if case == "missing channel":
        channels = {"val": data}
    elif case == "empty dataset":
        for p in (data / "images").rglob("*.jpg"):
            p.unlink()
    elif case == "corrupt image":
        (data / "images" / "train" / "train_0001.jpg").write_bytes(b"garbage")
    elif case == "class id out of range":
        (data / "labels" / "train" / "train_0001.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    elif case == "box outside the image":
        (data / "labels" / "train" / "train_0001.txt").write_text("0 1.2 0.5 0.1 0.1\n")
    elif case == "non-numeric epochs":
        hp["epochs"] = "ten"
    elif case == "unknown key":
        hp["lr"] = "0.1"
    elif case == "unsafe archive":
        w = tmp_path / "weights"
        w.mkdir()
        with tarfile.open(w / "model.tar.gz", "w:gz") as tar:
            tar.add(data / "data.yaml", arcname="../../evil.pt")
        channels["weights"] = w
    elif case == "multi-host device":  # several instances train (docs/multinode.md), each on all its devices
        kwargs = {"hosts": ("algo-1", "algo-2")}
        hp["device"] = "0"
    elif case == "model not in weights":
        hp["model"] = "yolo11s.pt"
    elif case == "unknown model yaml":
        hp["model"] = "yolo99z.yaml"
    elif case == "two annotation formats":
        (data / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
        (data / "images" / "train" / "train_0001.xml").write_text("<annotation><filename>x.jpg</filename></annotation>")
    base = make_tree(channels, hp, **kwargs)
    result = run_train(base, timeout=300)
    failure = base / "output" / "failure"
    assert result.returncode != 0
    assert failure.is_file(), result.stderr[-2000:]
    text = failure.read_text()
    assert words in text, text
    assert len(text) <= 1024
    assert "Traceback" not in text, "a user error is a message, not a traceback"
    assert not list((base / "model").iterdir())


# Stops at each moment and their restarts: tests/integration/test_yolo_lifecycle.py.


def test_restart_after_finish_only_packages(trained, tmp_path):
    import shutil

    base, _ = trained
    copy = tmp_path / "opt_ml"
    shutil.copytree(base, copy, symlinks=True)
    shutil.rmtree(copy / "model")
    (copy / "model").mkdir()
    result = run_train(copy)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already finished" in result.stdout and "[metrics]" not in result.stdout
    assert (copy / "model" / "best.pt").is_file() and (copy / "model" / "exports" / "best.onnx").is_file()


def test_mlflow_run(trained, tracking):
    """One job, one run: the job's params, every epoch's metric line under its metric definitions' names, the
    final and per-class lines, tags and the model folder's files; ultralytics' own MLflow callback stayed off."""
    if not tracking:
        pytest.skip("no MLflow test server here (.venv-sm3)")
    from tests.mlflow_server import Server, artifacts, history, runs_of

    _, result = trained
    server = Server(tracking["MLFLOW_TRACKING_URI"], Path())
    (run,) = runs_of(server, "yolo-train")
    assert run.info.run_name == "yolo-1" and run.info.status == "FINISHED"
    run_id = run.info.run_id
    assert f"started run {run_id}" in result.stdout and "WARNING mlflow" not in result.stdout
    assert "WARNING mlflow" not in result.stderr  # MLflow's own loggers: no line per call
    logged = metric_values(result.stdout)  # what SageMaker's regexes read from the same log
    for name in ("val:mAP50-95", "train:box_loss", "epoch", "final:mAP50", "class:rectangle:mAP50"):
        points = history(server, run_id, name)
        assert [v for _, v in points] == pytest.approx(logged[name], abs=1e-6), name
    assert [step for step, _ in history(server, run_id, "val:mAP50-95")] == [1, 2]
    assert run.data.params["epochs"] == "2" and run.data.params["imgsz"] == "64" and run.data.params["model"] == \
        "yolo11n.yaml"
    assert run.data.tags["sagemaker.image"] == "yolo" and run.data.tags["sagemaker.channel.train"] == "File"
    assert {"metrics.json", "results.csv", "args.yaml", "data.yaml"} <= artifacts(server, run_id)
    assert "best.pt" not in str(artifacts(server, run_id))  # weights only with mlflow_log_model=true
    assert not any(k.startswith(("metrics/", "train/")) for k in run.data.metrics), "ultralytics' own names"


def test_mlflow_restart_continues_the_run_and_a_silent_server_costs_one_warning(trained, tracking, tmp_path):
    """The restarted job (same checkpoint folder) continues the run; the same restart with a server that accepts
    and never answers finishes with one warning."""
    import shutil
    import socket

    if not tracking:
        pytest.skip("no MLflow test server here (.venv-sm3)")
    from tests.mlflow_server import Server, runs_of

    base, _ = trained
    copies = []
    for name in ("restart", "silent"):
        copy = tmp_path / name
        shutil.copytree(base, copy, symlinks=True)
        shutil.rmtree(copy / "model")
        (copy / "model").mkdir()
        hps = json.loads((copy / "input/config/hyperparameters.json").read_text())
        (copy / "input/config/hyperparameters.json").write_text(json.dumps({**hps, "export": ""}))  # no re-export
        copies.append(copy)
    again = run_train(copies[0], env=tracking)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    (run,) = runs_of(Server(tracking["MLFLOW_TRACKING_URI"], Path()), "yolo-train")
    assert f"continuing run {run.info.run_id}" in again.stdout and run.info.status == "FINISHED"

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        quiet = run_train(copies[1], env={**tracking, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"})
    assert quiet.returncode == 0, quiet.stdout[-2000:] + quiet.stderr[-2000:]
    warnings = [line for line in quiet.stdout.splitlines() if line.startswith("WARNING mlflow")]
    assert len(warnings) == 1 and uri in warnings[0], quiet.stdout[-3000:]
    assert "training finished" in quiet.stdout and (copies[1] / "model" / "best.pt").is_file()
