"""The TF image's lifecycle pieces that need no TensorFlow: checkpoint repair, the checkpoint channel, the model
folder published whole, scratch space, bad input, and the import arrows (container/ never imports sdk/).
What needs TensorFlow (reading real checkpoints) runs in .venv-tf: see the last tests here."""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from container.annotations import convert
from container.contract import Environment
from container.failure import FAILURE_LIMIT, UserError, failure_reason
from container.local import build_tree
from container.schema import Schema
from container.signals import GracefulStop
from container.tfod import checkpoints
from container.tfod.export import publish
from container.tfod.trainer import check_inputs, job_hyperparameters, read_label_map, resolve_data

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"


def _ckpt(folder: Path, step: int, data: bytes = b"tensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ckpt-{step}.index").write_bytes(b"index")
    (folder / f"ckpt-{step}.data-00000-of-00001").write_bytes(data)
    return folder / f"ckpt-{step}"


def _state(folder: Path, *steps: int) -> None:
    checkpoints.write_state(folder, [folder / f"ckpt-{s}" for s in sorted(steps, reverse=True)])


def test_prefixes_by_step_not_by_name(tmp_path):
    for step in (4, 8, 36, 40):
        _ckpt(tmp_path, step)
    assert checkpoints.prefixes(tmp_path)[0] == tmp_path / "ckpt-40"
    assert [checkpoints.step_of(p) for p in checkpoints.prefixes(tmp_path)] == [40, 36, 8, 4]
    assert checkpoints.prefixes(tmp_path / "missing") == []


def test_a_corrupt_latest_checkpoint_is_moved_aside_and_the_job_goes_on_from_the_last_good_one(tmp_path):
    for step in (4, 8):
        _ckpt(tmp_path, step)
    _state(tmp_path, 4, 8)
    said: list[str] = []
    bad = {"ckpt-8"}
    good = checkpoints.repair(tmp_path, lambda p: "DataLossError: truncated" if p.name in bad else None, said.append)
    assert good == tmp_path / "ckpt-4"
    assert sorted(p.name for p in tmp_path.glob("ckpt-8*")) == ["ckpt-8.data-00000-of-00001.corrupt",
                                                                 "ckpt-8.index.corrupt"], "renamed, not deleted"
    assert checkpoints.read_state(tmp_path) == "ckpt-4"
    assert any("ckpt-8 in" in s and "cannot be read (DataLossError: truncated)" in s for s in said), said
    assert "tfod: resuming from the last good checkpoint, ckpt-4 (step 4); ckpt-8 set aside" in said
    # a second repair finds nothing to do, and a later corrupt ckpt-8 does not collide with the first one's name
    assert checkpoints.repair(tmp_path, lambda p: None, said.append) == tmp_path / "ckpt-4"
    _ckpt(tmp_path, 8)
    checkpoints.repair(tmp_path, lambda p: "bad" if p.name in bad else None, said.append)
    assert (tmp_path / "ckpt-8.index.corrupt-2").is_file() and (tmp_path / "ckpt-8.index.corrupt").is_file()


def test_no_good_checkpoint_starts_from_step_zero_saying_so(tmp_path):
    _ckpt(tmp_path, 4)
    _state(tmp_path, 4)
    said: list[str] = []
    assert checkpoints.repair(tmp_path, lambda p: "bad", said.append) is None
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / "checkpoint.corrupt").is_file()
    assert "tfod: resuming from step 0; ckpt-4 set aside" in said
    assert checkpoints.prefixes(tmp_path) == []


def test_a_damaged_state_file_is_rebuilt_from_the_checkpoints_there(tmp_path):
    _ckpt(tmp_path, 4)
    _ckpt(tmp_path, 8)
    (tmp_path / "checkpoint").write_bytes(b"\xff\xfe garbage")
    said: list[str] = []
    assert checkpoints.repair(tmp_path, lambda p: None, said.append) == tmp_path / "ckpt-8"
    assert checkpoints.read_state(tmp_path) == "ckpt-8"
    assert (tmp_path / "checkpoint.corrupt").read_bytes() == b"\xff\xfe garbage"
    # a checkpoint newer than the state file (killed between writing it and updating the state) is used
    _ckpt(tmp_path, 12)
    assert checkpoints.repair(tmp_path, lambda p: None, said.append) == tmp_path / "ckpt-12"
    assert checkpoints.read_state(tmp_path) == "ckpt-12"


def test_an_empty_folder_is_a_fresh_start(tmp_path):
    assert checkpoints.repair(tmp_path, lambda p: pytest.fail("nothing to read"), print) is None


def test_exported_model_in_the_checkpoint_channel_is_refused_with_the_right_channel(tmp_path):
    model = tmp_path / "model"
    (model / "1" / "variables").mkdir(parents=True)
    (model / "1" / "saved_model.pb").write_bytes(b"pb")
    (model / "1" / "variables" / "variables.index").write_bytes(b"i")
    (model / "1" / "variables" / "variables.data-00000-of-00001").write_bytes(b"d")
    (model / "model.tflite").write_bytes(b"tfl")
    (model / "metrics.json").write_text("{}")
    with pytest.raises(UserError) as err:
        checkpoints.channel_checkpoint(model, lambda p: None, print)
    text = str(err.value)
    assert "holds an exported model (1/saved_model.pb, metrics.json, model.tflite)" in text
    assert "fetch_model" in text and "algo-1/model/" in text and "same checkpoint location" in text
    assert len(failure_reason(err.value)) <= FAILURE_LIMIT


def test_the_checkpoint_channel_is_checked_before_use(tmp_path):
    said: list[str] = []
    for step in (4, 8):
        _ckpt(tmp_path / "model", step)
    before = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    found = checkpoints.channel_checkpoint(tmp_path, lambda p: "truncated" if p.name == "ckpt-8" else None, said.append)
    assert found == tmp_path / "model" / "ckpt-4"
    assert "ckpt-8 cannot be read (truncated)" in said[0] and "fine-tuning from ckpt-4" in said[0]
    assert {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()} == before, "a channel is never changed"
    with pytest.raises(UserError, match="holds no readable TF checkpoint: ckpt-8 cannot be read"):
        checkpoints.channel_checkpoint(tmp_path, lambda p: "truncated", print)
    with pytest.raises(UserError, match="holds no TF checkpoint"):
        checkpoints.channel_checkpoint(tmp_path / "model" / "empty", lambda p: None, print)


def test_the_model_folder_is_published_whole_and_user_files_stay(tmp_path):
    stage, target = tmp_path / "stage", tmp_path / "model"
    (stage / "1").mkdir(parents=True)
    (stage / "1" / "saved_model.pb").write_bytes(b"new")
    (stage / "metrics.json").write_text("{}")
    (target / "1").mkdir(parents=True)
    (target / "1" / "stale.pb").write_bytes(b"from an earlier export")
    (target / "notes.txt").write_text("mine")
    stop = GracefulStop()
    assert publish(stage, target, stop) == ["1", "metrics.json"]
    assert sorted(p.name for p in (target / "1").iterdir()) == ["saved_model.pb"], "1/ replaced as a whole"
    assert (target / "notes.txt").read_text() == "mine" and (target / "metrics.json").is_file()
    assert not list(stage.iterdir())


def _env(base: Path, **environ: str) -> Environment:
    return Environment.from_base_dir(base, environ=environ, num_gpus=0, num_cpus=1)


def test_scratch_space_is_declared_once_outside_the_synced_and_input_folders(tmp_path):
    base = build_tree(tmp_path / "opt_ml", {}, {})
    env = _env(base)
    assert _env(base, SM_DETECTORS_SCRATCH=str(tmp_path / "s")).scratch_dir.is_relative_to(tmp_path / "s")
    for synced in (env.checkpoint_dir, env.input_dir, env.model_dir):
        assert not env.scratch_dir.is_relative_to(synced)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _voc(shapes: Path, out: Path, rename: tuple[str, str] | None = None) -> Path:
    convert(shapes, "voc", out, log=lambda _: None)
    if rename:
        for xml in out.rglob("*.xml"):
            xml.write_text(xml.read_text().replace(f"<name>{rename[0]}</name>", f"<name>{rename[1]}</name>"))
    return out


def test_converted_data_goes_to_scratch_and_the_channels_stay_as_they_were(shapes, tmp_path):
    voc = _voc(shapes, tmp_path / "voc")
    before = _tree_digest(voc)
    base = build_tree(tmp_path / "opt_ml", {"train": voc}, {})
    env = _env(base, SM_DETECTORS_SCRATCH=str(tmp_path / "scratch"))
    hps = job_hyperparameters(env, Schema.load("tfod"))
    train, val, names = resolve_data(env, hps, env.scratch_dir / "tfod")
    assert train.is_relative_to(tmp_path / "scratch") and val.is_relative_to(tmp_path / "scratch")
    assert sorted(names) == ["ellipse", "rectangle"]
    assert _tree_digest(base / "input" / "data" / "train") == before
    assert not any((base / "checkpoints").rglob("*")), "nothing converted lands in the synced folder"


def test_a_val_channel_with_a_class_the_labels_do_not_know_fails_like_train(shapes, tmp_path):
    train = _voc(shapes, tmp_path / "train")
    val = _voc(shapes, tmp_path / "val", rename=("ellipse", "triangle"))
    base = build_tree(tmp_path / "opt_ml", {"train": train, "val": val}, {})
    env = _env(base, SM_DETECTORS_SCRATCH=str(tmp_path / "scratch"))
    hps = job_hyperparameters(env, Schema.load("tfod"))
    with pytest.raises(UserError) as err:
        resolve_data(env, hps, env.scratch_dir / "tfod")
    assert "channel 'val'" in str(err.value) and "triangle" in str(err.value)
    assert len(failure_reason(err.value)) <= FAILURE_LIMIT


def test_tfrecords_with_a_class_the_label_map_does_not_know_are_refused(shapes, tmp_path):
    records = tmp_path / "records"
    convert(_voc(shapes, tmp_path / "voc", rename=("ellipse", "triangle")), "tfrecord", records, log=lambda _: None)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "label_map.csv").write_text("1,rectangle\n2,ellipse\n")
    base = build_tree(tmp_path / "opt_ml", {"train": records, "labels": labels}, {})
    env = _env(base, SM_DETECTORS_SCRATCH=str(tmp_path / "scratch"))
    unknown = r"TFRecords hold classes the label map does not know: 'triangle' \(\d+ boxes\)"
    with pytest.raises(UserError, match=unknown):
        resolve_data(env, job_hyperparameters(env, Schema.load("tfod")), env.scratch_dir / "tfod")


@pytest.mark.parametrize("hyperparameters, words", [
    ({"num_steps": "0"}, "'num_steps' must be at least 1, got '0'"),
    ({"num_steps": "-5"}, "'num_steps' must be at least 1, got '-5'"),
    ({"learning_rate": "NaN"}, "'learning_rate' must be a finite number, got nan"),
    ({"learning_rate": "1e999"}, "'learning_rate' must be a finite number, got inf"),
    ({"learning_rate": "-Infinity"}, "'learning_rate' must be a finite number, got -inf"),
    ({"learning_rate": "0"}, "'learning_rate' must be above 0.0, got '0'"),  # schema.yaml's bound: the SDK's too
    ({"batch_size": "0"}, "'batch_size' must be at least 1"),
    ({"image_size": "1048576"}, "'image_size' must be between 128 and 2048"),
    ({"model_dir": "/opt/ml/mo\x00del"}, "hyperparameter 'model_dir' holds a NUL character"),
    ({"overrides": "x" * 5000 + "\x00"}, "hyperparameter 'overrides' holds a NUL character ('xxx"),
])
def test_bad_values_fail_at_start_within_the_failure_limit(tmp_path, hyperparameters, words):
    base = build_tree(tmp_path / "opt_ml", {}, hyperparameters)
    env = _env(base)
    with pytest.raises(UserError) as err:
        check_inputs(env, job_hyperparameters(env, Schema.load("tfod")))
    assert words in str(err.value)
    assert len(failure_reason(err.value)) <= FAILURE_LIMIT


def test_a_channel_that_is_a_file_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    base = build_tree(tmp_path / "opt_ml", {"train": data}, {})  # declared in inputdataconfig.json, as SageMaker does
    (base / "input" / "data" / "train").rmdir()
    (base / "input" / "data" / "train").write_bytes(b"a zip, say")
    env = _env(base)
    with pytest.raises(UserError, match="channel 'train' is a file \\(train\\), not a folder"):
        check_inputs(env, job_hyperparameters(env, Schema.load("tfod")))


def test_a_label_map_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "labels" / "label_map.csv"
    path.parent.mkdir()
    path.write_bytes(b"1,caf\xe9\n")
    with pytest.raises(UserError, match=r"label map labels/label_map.csv is not UTF-8 text \(byte 0xe9 at offset 5\)"):
        read_label_map(path)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_images_never_import_the_sdk():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n == "sdk" or n.startswith("sdk."))
                 for p in (ROOT / "container").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    for dockerfile in ("Dockerfile.tfod", "Dockerfile.yolo"):
        assert "COPY sdk" not in (ROOT / dockerfile).read_text(), dockerfile


def test_sdk_edge_is_the_image_side_runner():
    import container.edge
    import sdk.edge

    for name in container.edge.__all__:
        assert getattr(sdk.edge, name) is getattr(container.edge, name)
    ran = subprocess.run([sys.executable, "-m", "sdk.edge", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert ran.returncode == 0 and "a .tflite file exported by the TensorFlow image" in ran.stdout


_TF_CHECK = r'''
import sys
from pathlib import Path
import tensorflow as tf
from container.tfod import checkpoints

folder = Path(sys.argv[1])
step = tf.Variable(0, dtype=tf.int64)
weights = tf.Variable(tf.random.normal([256, 64]))
manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, weights=weights), str(folder), max_to_keep=5)
for n in (4, 8, 12):
    step.assign(n)
    manager.save(checkpoint_number=n)
assert checkpoints.readable(folder / "ckpt-4") is None
data = folder / "ckpt-12.data-00000-of-00001"
data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])     # cut short, as a SIGKILL mid-write would
flipped = bytearray((folder / "ckpt-8.data-00000-of-00001").read_bytes())
flipped[len(flipped) // 2] ^= 0xFF                                     # same size, one byte wrong
(folder / "ckpt-8.data-00000-of-00001").write_bytes(bytes(flipped))
said = []
good = checkpoints.repair(folder, checkpoints.readable, said.append)
print("\n".join(said))
assert good == folder / "ckpt-4", good
assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-4")
fresh = tf.Variable(0, dtype=tf.int64)
restored = tf.train.CheckpointManager(tf.train.Checkpoint(step=fresh, weights=tf.Variable(tf.zeros([256, 64]))),
                                      str(folder), max_to_keep=5).restore_or_initialize()
assert restored.endswith("ckpt-4") and int(fresh.numpy()) == 4
print("OK", sorted(p.name for p in folder.iterdir()))
'''


@pytest.mark.skipif(not TF_PYTHON.exists(), reason="no .venv-tf (made by .ci/run from requirements/tf-test.txt)")
def test_real_tf_checkpoints_cut_short_or_flipped_are_set_aside(tmp_path):
    """TensorFlow's own reader finds a truncated data file and a flipped byte (per-tensor CRC32C); the job then
    restores the last good checkpoint through TensorFlow's CheckpointManager."""
    ran = subprocess.run([str(TF_PYTHON), "-c", _TF_CHECK, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300,
                         check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "ckpt-12.data-00000-of-00001.corrupt" in ran.stdout and "ckpt-8.index.corrupt" in ran.stdout
    assert "tfod: resuming from the last good checkpoint, ckpt-4 (step 4); ckpt-12, ckpt-8 set aside" in ran.stdout
