"""Dockerfile.tfod built and started the way SageMaker starts it (`--network none`, /opt/ml mounted,
command `train`), on the same cases as the YOLO image: success, bad input, stop and resume, describe;
plus a raw dataset format through the SDK's local mode, the exports run by a stranger, the edge script,
and two workers. Skipped only where no container engine answers (see engine.py)."""

from __future__ import annotations

import csv
import json
import re
import socket
import uuid

import pytest

from container.annotations import convert
from container.schema import Schema
from container.signals import PAUSE_VARIABLE
from tests.conftest import metric_values
from tests.images.conftest import TF_FAST, TF_TAG
from tests.images.engine import ROOT, built_engine

pytestmark = [pytest.mark.image, pytest.mark.slow]
TAG, FAST = TF_TAG, TF_FAST
SCHEMA = Schema.load("tfod")


@pytest.fixture(scope="module")
def engine():
    return built_engine("Dockerfile.tfod", TAG)


def _voc(shapes, out, rename=None):
    """The shapes as a Pascal VOC folder (converted at start by the image); ``rename`` one class in every file."""
    if not out.exists():
        convert(shapes, "voc", out, log=lambda _: None)
    if rename:
        for xml in out.rglob("*.xml"):
            xml.write_text(xml.read_text().replace(f"<name>{rename[0]}</name>", f"<name>{rename[1]}</name>"))
    return out


def _digest(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sagemaker_run(engine, base, *args, name=None, detach=False, timeout=900, network="none", env=None,
                  read_only=()):
    cmd = ["run", "--network", network, "-v", f"{base}:/opt/ml"]
    for channel in read_only:  # a read-only mount over the channel, as FastFile gives
        cmd += ["-v", f"{base / 'input' / 'data' / channel}:/opt/ml/input/data/{channel}:ro"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += ["-d", "--name", name] if detach else ["--rm"]
    return engine.run(*cmd, TAG, *args, check=False, capture_output=True, timeout=timeout)


def test_trains_on_tfrecords_and_exports(tfod_trained):
    """TFRecords + a pbtxt label map; SavedModel, float and int8 TFLite, each run again here by a stranger."""
    engine, base, log = tfod_trained.engine, tfod_trained.base, tfod_trained.log
    assert tfod_trained.returncode == 0, log[-4000:]
    model = base / "model"
    for name in ("1/saved_model.pb", "model_float.tflite", "model_int8.tflite", "model.tflite", "label_map.csv",
                 "metrics.json"):
        assert (model / name).is_file(), name
    assert (model / "model.tflite").read_bytes() == (model / "model_int8.tflite").read_bytes()
    found = metric_values(log, image="tfod")
    assert {"train:total_loss", "train:cls_loss", "step", "eval:AP", "eval:AP50", "eval:ARmax100"} <= set(found)
    assert found["step"][-1] == 8
    assert "np.float32" not in "\n".join(line for line in log.splitlines() if line.startswith("["))
    assert list((base / "output" / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((base / "output" / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["classes"] == ["rectangle", "ellipse"]
    assert "error" not in metrics["exports"]["tflite_int8"], metrics["exports"]

    # the SavedModel, loaded by a process that did not train it, from TF Serving's layout
    check = ("import tensorflow as tf;"
             "m = tf.saved_model.load('/opt/ml/model/1').signatures['serving_default'];"
             "out = m(tf.zeros([1, 128, 128, 3], tf.uint8));"
             "print('saved_model', sorted(out), int(out['num_detections'][0]))")
    ran = engine.run("run", "--rm", "--network", "none", "-v", f"{base}:/opt/ml", TAG, "python", "-c", check,
                     check=False, capture_output=True, timeout=300)
    assert ran.returncode == 0 and "saved_model ['detection_boxes'" in ran.stdout, ran.stdout + ran.stderr[-2000:]


def test_raw_dataset_through_sdk_local_mode(engine, shapes, tmp_path, monkeypatch):
    """launch_job(instance_type="local", image=...) validates against the image's schema, runs the image on a
    Pascal VOC folder that it converts at start, and fetch_model finds the result."""
    import sdk

    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    convert(shapes, "voc", tmp_path / "voc", log=lambda _: None)
    with pytest.raises(sdk.ConfigurationError, match="num_step"):
        sdk.launch_job(instance_type="local", image=TAG, kind="tfod", engine=engine.name, train=tmp_path / "voc",
                       hyperparameters={"num_step": 8})
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "experiment.yaml").write_text("task:\n  model:\n    head:\n      num_filters: 64\n")
    job = sdk.launch_job(instance_type="local", image=TAG, kind="tfod", engine=engine.name, train=tmp_path / "voc",
                         channels={"cfg": cfg}, hyperparameters={**FAST, "export": "tflite"}, logs=False)
    assert job.status == "Completed", job.logs()[-3000:]
    assert "channel 'train' holds voc annotations: 20 images" in job.logs()
    assert "tfod: cfg/experiment.yaml applied to retinanet_mobile_coco" in job.logs()
    model = sdk.fetch_model(job, dest=tmp_path / "model")
    assert model.exports["model"].name == "model.tflite" and model.best is None

    # the seed's Raspberry Pi step (the TFLite model on an image, boxes drawn), then predict and the
    # leaderboard on the fetched folder: in the image, which has LiteRT, Pillow, OpenCV and matplotlib
    import shutil

    picture = min((shapes / "images" / "val").iterdir())
    work = tmp_path / "edge"
    shutil.copytree(model.directory, work / "model")
    (work / picture.name).write_bytes(picture.read_bytes())
    # the image has no sdk/ (images never import it): the edge runner is container.edge; predict and leaderboard
    # come from this checkout's sdk/, mounted read-only, as a user's own environment would have them
    script = (f"python -m container.edge /work/model/model.tflite /work/{picture.name} --threshold 0 "
              f"--out /work/drawn.jpg && python -c 'import sdk' 2>/dev/null && echo 'sdk/ is in the image' && exit 3;"
              f" PYTHONPATH=/opt/sdk-src python -m sdk predict /work/model /work/{picture.name}"
              " --conf 0 --out /work/pred"
              " && PYTHONPATH=/opt/sdk-src python -m sdk leaderboard /work/model --count 3 --out /work/board")
    ran = engine.run("run", "--rm", "--network", "none", "-v", f"{work}:/work",
                     "-v", f"{ROOT / 'sdk'}:/opt/sdk-src/sdk:ro",
                     TAG, "sh", "-c", script, check=False, capture_output=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
    assert f"{picture.name}: " in ran.stdout and "drawn to /work/drawn.jpg" in ran.stdout
    assert (work / "drawn.jpg").stat().st_size > 0
    predicted = json.loads((work / "pred" / "detections.json").read_text())
    assert len(predicted["frames"]) == 1 and (work / "pred" / f"{picture.stem}_pred{picture.suffix}").is_file()
    for d in predicted["frames"][0]["detections"]:
        assert d["label"] in ("rectangle", "ellipse") and len(d["box"]) == 4
    (row,) = list(csv.DictReader((work / "board" / "leaderboard.csv").open()))
    assert row["image"] == "tfod" and row["model"] == "retinanet_mobile_coco" and float(row["ms_per_image"]) > 0
    assert (work / "board" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("hyperparameters, channels, words", [
    ({"num_steps": "ten"}, "tfrecords", "'num_steps' must be an integer, got 'ten'"),
    ({"image_size": "200"}, "tfrecords", "image_size must be a multiple of 128"),  # in range, not a multiple
    ({"overrides": "task.model.no_such_key=1"}, "tfrecords", "do not fit experiment 'retinanet_mobile_coco'"),
    ({}, "records without labels", "TFRecords need a label map"),
    ({}, "checkpoint without a checkpoint", "channel 'checkpoint' holds no TF checkpoint"),
    ({}, "an exported model as checkpoint", "channel 'checkpoint' holds an exported model (1/saved_model.pb"),
    ({}, "val with an unknown class", "channel 'val'"),
    ({"num_steps": "0"}, "tfrecords", "'num_steps' must be at least 1, got '0'"),
    ({"learning_rate": "NaN"}, "tfrecords", "'learning_rate' must be a finite number, got nan"),
])
def test_bad_input_writes_failure(engine, tfrecords, shapes, make_tree, tmp_path, hyperparameters, channels, words):
    train = tfrecords
    if channels == "records without labels":
        train = tmp_path / "bare"
        train.mkdir()
        for shard in tfrecords.glob("*.tfrecord"):
            (train / shard.name).hardlink_to(shard)
    channels_given = {"train": train}
    if channels == "an exported model as checkpoint":  # what fetch_model returns, given back as `checkpoint`
        exported = tmp_path / "fetched"
        (exported / "1" / "variables").mkdir(parents=True)
        (exported / "1" / "saved_model.pb").write_bytes(b"pb")
        (exported / "1" / "variables" / "variables.index").write_bytes(b"index")
        (exported / "model.tflite").write_bytes(b"tflite")
        channels_given["checkpoint"] = exported
    if channels == "val with an unknown class":
        channels_given = {"train": _voc(shapes, tmp_path / "train"),
                          "val": _voc(shapes, tmp_path / "val", rename=("ellipse", "triangle"))}
    if channels == "checkpoint without a checkpoint":
        weights = tmp_path / "weights"
        weights.mkdir()
        (weights / "model.h5").write_bytes(b"not a TF checkpoint")
        channels_given["checkpoint"] = weights
    base = make_tree(channels_given, {**FAST, **hyperparameters})
    result = sagemaker_run(engine, base, "train", timeout=300)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    failure = (base / "output" / "failure").read_text()
    assert words in failure and "triangle" in failure if channels == "val with an unknown class" else words in failure
    assert "Traceback" not in failure and len(failure) <= 1024


def test_sigterm_checkpoint_then_resume(engine, tfrecords, make_tree):
    base = make_tree({"train": tfrecords}, {**FAST, "num_steps": "12", "validation_interval": "12",
                                            "export": "none"})
    name = f"sm-tfod-stop-{uuid.uuid4().hex[:8]}"
    # the job waits after step 4's interval (a pause point) until the signal comes: the stop lands at step 4
    started = sagemaker_run(engine, base, "train", name=name, detach=True, env={PAUSE_VARIABLE: "step:4"})
    assert started.returncode == 0, started.stderr
    code, took, logs = engine.sigterm_after(name, "[pause] step:4:", wait_timeout=200)
    assert code == 143, logs.stdout[-3000:] + logs.stderr[-3000:]
    assert took < 120, f"PID 1 must act on SIGTERM; took {took:.0f}s"
    saved = sorted((base / "checkpoints" / "algo-1" / "model").glob("ckpt-*.index"))
    stopped_at = max(int(p.name.split("-")[1].split(".")[0]) for p in saved)
    said = re.search(r"stopped at step (\d+); checkpoint saved", logs.stderr)
    assert said, logs.stderr[-3000:]
    assert int(said.group(1)) == stopped_at, "SIGTERM saved a checkpoint of the step it stopped at"
    assert stopped_at == 4, "the stop landed where the job paused"
    assert "resumes from it" in logs.stderr
    assert not (base / "output" / "failure").exists(), "a stop is not a failure"

    result = sagemaker_run(engine, base, "train", timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"restored model from /opt/ml/checkpoints/algo-1/model/ckpt-{stopped_at}" in log
    steps = metric_values(log, image="tfod")["step"]
    assert steps[0] > stopped_at and steps[-1] == 12, steps

    # the finished model directory as the `checkpoint` channel of a new job: fine-tuning, as the seed did
    tuned = make_tree({"train": tfrecords, "checkpoint": base / "checkpoints" / "algo-1" / "model"},
                      {**FAST, "num_steps": "4", "validation_interval": "4", "export": "none",
                       "overrides": "task.init_checkpoint_modules=all"}, name="finetune")
    result = sagemaker_run(engine, tuned, "train", timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "fine-tuning from /opt/ml/input/data/checkpoint/ckpt-12 (modules: all)" in log
    assert "tfod: initialized from /opt/ml/input/data/checkpoint/ckpt-12 (modules: all)" in log


def test_read_only_channels_and_a_stop_during_export(engine, shapes, tfrecords, make_tree, tmp_path):
    """A VOC train channel and a label map mounted read-only: converted in scratch space, never written; a
    SIGTERM during the export exits 143 with nothing in /opt/ml/model (SageMaker would upload it); the restart
    with the same checkpoint folder trains nothing more, prints the final evaluation and writes the whole model."""
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "label_map.pbtxt").write_text((tfrecords / "label_map.pbtxt").read_text())
    base = make_tree({"train": _voc(shapes, tmp_path / "voc"), "labels": labels},
                     {**FAST, "export": "saved_model"})  # one export: TFLite's are checked on the shared model
    before = {c: _digest(base / "input" / "data" / c) for c in ("train", "labels")}
    name = f"sm-tfod-export-stop-{uuid.uuid4().hex[:8]}"
    started = sagemaker_run(engine, base, "train", name=name, detach=True, read_only=("train", "labels"),
                            env={PAUSE_VARIABLE: "export"})  # waits in the export until the signal comes
    assert started.returncode == 0, started.stderr
    code, took, logs = engine.sigterm_after(name, "[pause] export:", wait_timeout=200)
    log = logs.stdout + logs.stderr
    assert code == 143 and took < 120, log[-3000:]
    assert "channel 'train' holds voc annotations: 20 images" in log
    assert not (base / "output" / "failure").exists(), "a stop is not a failure"
    assert sorted(p.name for p in (base / "model").iterdir()) == [], "no partial model for SageMaker to upload"
    synced = [str(p.relative_to(base / "checkpoints")) for p in (base / "checkpoints").rglob("*") if p.is_file()]
    assert all(s.startswith("algo-1/model/") for s in synced), "only what resume needs is in the synced folder"
    assert not [s for s in synced if s.endswith((".tfrecord", ".jpg", ".png", ".xml"))], synced
    assert re.search(r"checkpoints: /opt/ml/checkpoints holds \d+ files, [\d.]+ MB", log), log[-3000:]

    result = sagemaker_run(engine, base, "train", timeout=1500, read_only=("train", "labels"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "tfod: training finished at step 8 in an earlier run; its final evaluation:" in log
    assert metric_values(log, image="tfod")["eval:AP"], "the final metric line is printed again"
    assert "[train] step=" not in log, "nothing was trained twice"
    for name in ("1/saved_model.pb", "label_map.csv", "label_map.pbtxt", "metrics.json"):
        assert (base / "model" / name).is_file(), name
    assert json.loads((base / "model" / "metrics.json").read_text())["final"]["step"] == 8
    assert {c: _digest(base / "input" / "data" / c) for c in ("train", "labels")} == before, "channels untouched"


def test_describe(engine):
    for args in (("describe",), ()):  # `describe`, and the image's default command
        out = engine.run("run", "--rm", "--network", "none", TAG, *args, capture_output=True).stdout
        assert "HYPERPARAMETERS" in out and "num_steps" in out and "eval:AP50" in out
        for d in SCHEMA.metric_definitions():
            assert d["Regex"] in out
    data = json.loads(engine.run("run", "--rm", TAG, "describe", "--json", capture_output=True).stdout)
    assert data["metric_definitions"] == SCHEMA.metric_definitions()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers(engine, tfrecords, tmp_path):
    """Two hosts as SageMaker describes them in resourceconfig.json; on one machine they share its network,
    so TFOD_WORKER_ADDRESSES gives their loopback ports in place of algo-1:2222 and algo-2:2222."""
    from container.local import build_tree

    addresses = f"127.0.0.1:{_free_port()},127.0.0.1:{_free_port()}"
    hps = {**FAST, "num_steps": "4", "validation_interval": "4", "export": "none"}
    names, bases = [], []
    for host in ("algo-1", "algo-2"):
        base = build_tree(tmp_path / host, {"train": tfrecords}, hps, hosts=("algo-1", "algo-2"), current_host=host)
        name = f"sm-tfod-{host}-{uuid.uuid4().hex[:6]}"
        started = sagemaker_run(engine, base, "train", name=name, detach=True, network="host",
                                env={"TFOD_WORKER_ADDRESSES": addresses})
        assert started.returncode == 0, started.stderr
        names.append(name)
        bases.append(base)
    try:
        codes, logs = [], []
        for name in names:
            waited = engine.run("wait", name, capture_output=True, timeout=900)
            codes.append(int(waited.stdout.strip().splitlines()[-1]))
            out = engine.run("logs", name, check=False, capture_output=True)
            logs.append(out.stdout + out.stderr)
    finally:
        engine.run("rm", "-f", *names, check=False, capture_output=True)
    assert codes == [0, 0], "\n----\n".join(log[-3000:] for log in logs)
    tfod_lines = "\n".join(line for log in logs for line in log.splitlines() if line.startswith(("tfod:", "[")))
    assert "tfod: multi_worker_mirrored strategy with 2 replica(s)" in logs[0], tfod_lines
    assert "worker 1 of" in logs[1] and "worker 0 exports" in logs[1], tfod_lines
    assert metric_values(logs[0], image="tfod")["step"][-1] == 4
    assert (bases[0] / "model" / "metrics.json").is_file()
    assert not (bases[1] / "model" / "metrics.json").exists()
