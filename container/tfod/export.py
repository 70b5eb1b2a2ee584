"""Exports of a trained Model Garden detector (``official/vision/serving``), each run once before it counts.

* ``<model>/1/``: a SavedModel (``image_tensor`` input, uint8 [1, H, W, 3]) in a numeric version
  folder, as TF Serving wants it;
* ``<model>/model_float.tflite`` and, with ``quantize``, ``model_int8.tflite`` calibrated on the
  training images; run with the LiteRT interpreter the way ``sdk.edge`` runs them on a device. Both use
  TFLite's own detection post-processing op (``nms_version: tflite``), as Model Garden's mobile exports
  do: TensorFlow's NMS ops crash TFLite's int8 calibrator (SIGSEGV in ``_feed_tensors``, TF 2.20). Their
  input is an ImageNet-normalized RGB image, ``(pixel - mean) / std`` (``container.edge.normalize``, re-exported as
  ``sdk.edge.normalize``).

Everything is written to a staging folder in scratch space first and moved into ``/opt/ml/model`` by
:func:`publish` only once complete: SageMaker uploads ``/opt/ml/model`` when a job stops, and a stop in the
middle of an export must not leave a partial model there (a SavedModel without its TFLite files or
``metrics.json``). A restart with the same checkpoint folder exports again from the final checkpoint.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def _checkpoint(model_dir: Path) -> str:
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(model_dir))
    if not path:
        raise RuntimeError(f"no checkpoint in {model_dir} to export")
    return path


def sample_image(record_path: Path, size: int) -> Any:
    """One training image, uint8 [1, size, size, 3], from the first TFRecord."""
    import tensorflow as tf

    first = min(tf.io.gfile.glob(str(record_path).split(",")[0]))  # a file, or a pattern of shards
    raw = next(iter(tf.data.TFRecordDataset(first).take(1)))
    example = tf.io.parse_single_example(raw, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
    image = tf.io.decode_image(example["image/encoded"], channels=3, expand_animations=False)
    return tf.cast(tf.image.resize(image, [size, size])[tf.newaxis], tf.uint8)


def export_saved_model(exp: Any, model_dir: Path, out: Path, size: int, sample: Any) -> dict[str, Any]:
    import tensorflow as tf
    from official.vision.serving import export_saved_model_lib

    with tempfile.TemporaryDirectory() as tmp:
        export_saved_model_lib.export_inference_graph(
            input_type="image_tensor", batch_size=1, input_image_size=[size, size], params=exp,
            checkpoint_path=_checkpoint(model_dir), export_dir=tmp, export_saved_model_subdir="saved_model")
        target = out / "1"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(Path(tmp) / "saved_model"), target)
    detect = tf.saved_model.load(str(target)).signatures["serving_default"]
    result = detect(sample)
    return {"path": "1/", "num_detections": int(result["num_detections"].numpy()[0]),
            "outputs": sorted(result)}


def tflite_config(exp: Any) -> Any:
    """The experiment with TFLite's detection post-processing op in place of TensorFlow's NMS, and int8
    calibration on the training images as evaluation sees them: no augmentation, no shuffling, the same
    images in the same order every time."""
    import copy

    tflite = copy.deepcopy(exp)
    tflite.override({"task": {"model": {"detection_generator": {"nms_version": "tflite"}},
                              "train_data": {"is_training": False}}}, is_strict=False)
    return tflite


def tflite_saved_model(exp: Any, model_dir: Path, dest: Path, size: int) -> Path:
    """The SavedModel both TFLite conversions start from (TFLite's detection op, batch 1), exported once to
    ``dest``: the float and the int8 conversion share it, which saves one export of minutes on a small CPU."""
    from official.vision.serving import export_saved_model_lib

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    export_saved_model_lib.export_inference_graph(
        input_type="tflite", batch_size=1, input_image_size=[size, size], params=tflite_config(exp),
        checkpoint_path=_checkpoint(model_dir), export_dir=str(dest), export_saved_model_subdir="saved_model")
    return dest / "saved_model"


def export_tflite(exp: Any, saved_model: Path, out: Path, size: int, *, quant_type: str | None,
                  name: str, sample: Any = None, calibration_steps: int = 100) -> dict[str, Any]:
    """Convert ``saved_model`` (:func:`tflite_saved_model`; int8: calibrated on ``calibration_steps`` training
    images), write, then run once on ``sample``."""
    import numpy as np
    from official.vision.serving import export_tflite_lib

    data = export_tflite_lib.convert_tflite_model(
        saved_model_dir=str(saved_model), quant_type=quant_type, params=tflite_config(exp),
        calibration_steps=calibration_steps)
    path = out / name
    path.write_bytes(data)
    pixels = np.asarray(sample, np.float32) if sample is not None else np.full((1, size, size, 3), 127.0, np.float32)
    outputs = run_tflite(path, pixels)
    return {"path": name, "bytes": len(data), "quant_type": quant_type or "float", "outputs": sorted(outputs),
            "num_detections": int(np.asarray(outputs["num_detections"]).reshape(-1)[0]),
            "input": "RGB, (pixel - mean) / std, ImageNet mean and std (sdk.edge.normalize)"}


def publish(stage: Path, target: Path, stop: Any) -> list[str]:
    """Move each entry of the complete ``stage`` folder into ``target`` (``/opt/ml/model``), replacing only the
    entries of the same name (this run's outputs), never anything else there. SIGTERM is deferred while
    moving, so the folder is whole or untouched by this run; returns the names moved."""
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    with stop.deferred():
        for entry in sorted(stage.iterdir()):
            dst = target / entry.name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            shutil.move(str(entry), dst)
            moved.append(entry.name)
    return moved


def run_tflite(path: Path, pixels: Any) -> dict[str, Any]:
    """Run a TFLite model once on 0-255 ``pixels`` [1, H, W, 3], as ``python -m sdk.edge`` would on a device."""
    from container.edge import normalize, open_interpreter, run

    return run(open_interpreter(path), normalize(pixels))


def _child(experiment: str, exp_dict: dict, saved_model: str, out: str, size: int, quant_type: str | None,
           name: str, sample: Any, log_path: str, queue: Any) -> None:
    import os

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)  # the converter's own last words, for the parent to report if it dies
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401

    exp = exp_factory.get_exp_config(experiment)
    exp.override(exp_dict, is_strict=False)
    queue.put(export_tflite(exp, Path(saved_model), Path(out), size, quant_type=quant_type, name=name, sample=sample))


def export_tflite_isolated(experiment: str, exp: Any, saved_model: Path, out: Path, size: int, *,
                           quant_type: str | None, name: str, sample: Any = None, attempts: int = 2) -> dict[str, Any]:
    """:func:`export_tflite` in a child process: TFLite's converter can crash (seen: SIGSEGV with TensorFlow's NMS
    ops, and once in a while SIGABRT), and that must cost at most this one export, not the job and its other
    exports. A crash is retried once; what the converter printed last is reported."""
    import multiprocessing

    import numpy as np

    ctx = multiprocessing.get_context("spawn")
    pixels = None if sample is None else np.asarray(sample)
    crashes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(1, attempts + 1):
            queue = ctx.Queue()
            log_path = str(Path(tmp) / f"converter-{attempt}.log")
            child = ctx.Process(target=_child, args=(experiment, exp.as_dict(), str(saved_model), str(out), size,
                                                    quant_type, name, pixels, log_path, queue))
            child.start()
            try:
                child.join()
            finally:  # a stop (TrainingStopped raised here) must not leave the converter writing on its own
                if child.is_alive():
                    child.terminate()
                    child.join(10)
            if child.exitcode == 0:
                result = queue.get(timeout=30)
                if crashes:
                    result["earlier_crashes"] = crashes
                return result
            crashed: dict[int | None, str] = {-11: "a segmentation fault", -6: "an abort (SIGABRT)"}
            how = crashed.get(child.exitcode, f"exit code {child.exitcode}")
            said = [line for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
            last = next((line for line in reversed(said) if "W0000" not in line), "")[-300:]
            print(f"WARNING the TFLite converter ({quant_type}) crashed with {how}, attempt {attempt} of {attempts}; "
                  "its last lines:\n  " + "\n  ".join(said[-8:]), file=sys.stderr, flush=True)
            crashes.append(f"{how}: {last}")
            (out / name).unlink(missing_ok=True)
    return {"path": name, "quant_type": quant_type, "error": f"the TFLite converter crashed: {'; '.join(crashes)}"}
