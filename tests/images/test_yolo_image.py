"""Dockerfile.yolo built and started the way SageMaker starts it: `--network none`, /opt/ml mounted,
command `train`. Skipped only where no container engine answers (see engine.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid

import pytest

from container.schema import Schema
from container.signals import PAUSE_VARIABLE
from tests.conftest import FAST, metric_values
from tests.images.engine import IMAGES, built_engine

pytestmark = [pytest.mark.image, pytest.mark.slow]
TAG = IMAGES["Dockerfile.yolo"]
SCHEMA = Schema.load("yolo")


@pytest.fixture(scope="module")
def engine():
    return built_engine("Dockerfile.yolo", TAG)


def sagemaker_run(engine, base, *args, name=None, detach=False, timeout=900, mounts=(), network="none", env=None):
    cmd = ["run", "--network", network, "-v", f"{base}:/opt/ml", *(f"-v{m}" for m in mounts)]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += ["-d", "--name", name] if detach else ["--rm"]
    return engine.run(*cmd, TAG, *args, check=False, capture_output=True, timeout=timeout)


def test_trains_like_sagemaker(engine, shapes, make_tree):
    base = make_tree({"train": shapes}, {**FAST, "export": "onnx"})
    result = sagemaker_run(engine, base, "train")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    for name in ("best.pt", "last.pt", "data.yaml", "results.csv", "metrics.json", "exports/best.onnx"):
        assert (base / "model" / name).is_file(), name
    found = set(metric_values(log))
    assert {"epoch", "val:mAP50-95", "train:box_loss", "final:mAP50-95"} <= found
    assert json.loads((base / "model" / "metrics.json").read_text())["exports"]["onnx"]["detections"] >= 0


@pytest.mark.parametrize("command", [("train",), ()], ids=["train", "no-command"])
def test_bad_input_writes_failure(engine, shapes, make_tree, command):
    """``IMAGE train`` as SageMaker runs it, and the image with no command as the SageMaker SDK v3's local mode
    starts it: with a job in /opt/ml/input/config both train (here: refuse the job at its first check)."""
    base = make_tree({"train": shapes}, {**FAST, "epochs": "ten"})
    result = sagemaker_run(engine, base, *command, timeout=300)
    assert result.returncode == 2
    assert "'epochs' must be an integer, got 'ten'" in (base / "output" / "failure").read_text()


def test_sigterm_checkpoint_then_resume(engine, shapes, make_tree):
    """PID 1 acts on SIGTERM: the job waits at the start of epoch 2 (a pause point) until the signal comes, so
    the stop lands mid-training whatever the machine's speed; the restart goes on from epoch 2."""
    base = make_tree({"train": shapes}, {**FAST, "epochs": "3", "batch": "4"})
    name = f"sm-yolo-stop-{uuid.uuid4().hex[:8]}"
    started = sagemaker_run(engine, base, "train", name=name, detach=True, env={PAUSE_VARIABLE: "epoch-start:2"})
    assert started.returncode == 0, started.stderr
    code, took, logs = engine.sigterm_after(name, "[pause] epoch-start:2:", wait_timeout=150)
    assert code == 143, logs.stdout[-3000:] + logs.stderr[-3000:]
    assert took < 100, f"PID 1 must act on SIGTERM; took {took:.0f}s"
    assert "stopped by SIGTERM in epoch 2/3" in logs.stdout + logs.stderr
    assert (base / "checkpoints" / "algo-1" / "train" / "weights" / "last.pt").is_file()

    result = sagemaker_run(engine, base, "train")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "resuming from" in result.stdout
    assert metric_values(result.stdout)["epoch"] == [2.0, 3.0]


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_read_only_channels(fmt, engine, shapes, make_tree, tmp_path):
    """Channels mounted read-only, as FastFile mounts them: the job trains, and leaves them byte for byte as
    they were (label caches and converted data go to the scratch folder, not beside the data)."""
    from container.annotations import convert

    channel = tmp_path / "channel"
    if fmt == "voc":
        convert(shapes, "voc", channel, log=lambda _: None)
    else:
        shutil.copytree(shapes, channel)

    def snapshot() -> dict[str, str]:
        return {str(p.relative_to(channel)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(channel.rglob("*")) if p.is_file()}

    before = snapshot()
    base = make_tree({"train": channel}, {**FAST, "epochs": "1"})
    result = sagemaker_run(engine, base, "train", mounts=[f"{channel}:/opt/ml/input/data/train:ro"])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert snapshot() == before, "the read-only channel is untouched"
    assert not list(channel.rglob("*.cache"))
    assert (base / "model" / "best.pt").is_file()
    assert list((base / "scratch").rglob("*.cache")), "ultralytics' label cache went to the scratch folder"
    assert not list((base / "checkpoints").rglob("*.jpg")), "no dataset in the synced checkpoint folder"


def test_describe(engine):
    for args in (("describe",), ()):  # `describe`, and the image's default command
        out = engine.run("run", "--rm", "--network", "none", TAG, *args, capture_output=True).stdout
        assert "HYPERPARAMETERS" in out and "val:mAP50-95" in out
        for d in SCHEMA.metric_definitions():
            assert d["Regex"] in out
    data = json.loads(engine.run("run", "--rm", TAG, "describe", "--json", capture_output=True).stdout)
    assert data["metric_definitions"] == SCHEMA.metric_definitions()


def test_sdk_local_mode_runs_the_image(engine, shapes, tmp_path, monkeypatch):
    """launch_job(instance_type="local", image=URI) runs the image as SageMaker would, on a COCO channel the
    image converts at start; then fetch_model reads the result."""
    import sdk
    from container.annotations import convert

    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    convert(shapes, "coco", tmp_path / "coco", log=lambda _: None)
    job = sdk.launch_job(instance_type="local", image=TAG, engine=engine.name, train=tmp_path / "coco",
                         hyperparameters=FAST, logs=False)
    assert job.status == "Completed", job.logs()[-3000:]
    assert "channel 'train' holds coco annotations: 20 images" in job.logs()
    model = sdk.fetch_model(job, dest=tmp_path / "model")
    assert model.best.is_file() and model.metrics["job_name"] == job.name


def test_two_hosts(engine, shapes, tmp_path):
    """Two containers training one model (torchrun, gloo), as two instances would; on one machine they share
    its network, so the hosts are 127.0.0.1 and localhost on the loopback interface (docs/multinode.md)."""
    import socket

    from container.local import build_tree

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts = ("127.0.0.1", "localhost")
    hps = {**FAST, "dist_timeout": "300", "dist_port": str(port)}
    names, bases = [], []
    for host in hosts:
        base = build_tree(tmp_path / host, {"train": shapes}, hps, hosts=hosts, current_host=host, interface="lo")
        name = f"sm-yolo-{host.replace('.', '-')}-{uuid.uuid4().hex[:6]}"
        started = sagemaker_run(engine, base, "train", name=name, detach=True, network="host")
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
    assert "distributed: host 127.0.0.1 rank 0 of 2 (leader 127.0.0.1, backend gloo)" in logs[0]
    assert "distributed: host localhost rank 1 of 2 (leader 127.0.0.1, backend gloo)" in logs[1]
    assert metric_values(logs[0])["epoch"] == [1.0, 2.0] and "final:mAP50-95" in metric_values(logs[0])
    assert metric_values(logs[1]) == {}, "only the leader prints metric lines"
    assert (bases[0] / "model" / "metrics.json").is_file()
    assert not any((bases[1] / "model").iterdir())


def test_processing_convert_to_tfrecords(engine, shapes, tmp_path):
    """`IMAGE convert` as SageMaker Processing starts it (input mounted read-only, no network): the
    TFRecords it writes are the records this checkout writes from the same source."""
    from container.annotations import convert
    from container.annotations.tfrecord import read_records

    out = tmp_path / "out"
    out.mkdir()
    result = engine.run("run", "--rm", "--network", "none", "-v", f"{shapes}:/opt/ml/processing/input/data:ro",
                        "-v", f"{out}:/opt/ml/processing/output/data", TAG, "convert", "--to", "tfrecord",
                        check=False, capture_output=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    convert(shapes, "tfrecord", tmp_path / "here", log=lambda _: None)
    shards = sorted(p.name for p in out.glob("*.tfrecord"))
    assert shards == sorted(p.name for p in (tmp_path / "here").glob("*.tfrecord")) == [
        "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    for name in shards:
        records = list(read_records(out / name))
        assert records == list(read_records(tmp_path / "here" / name)) and records, name
