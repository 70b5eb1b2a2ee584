"""The TF Model Garden trainer: an adapter from the /opt/ml contract to ``official.core.train_lib``.

* data: TFRecords as given, or any dataset format ``container.annotations`` reads, converted at start;
  class names from the ``labels`` channel (pbtxt, ``id,name`` CSV, YAML) or from the dataset;
* config: a Model Garden experiment (``experiment``), the ``cfg`` channel's YAML files, the image's
  hyperparameters, then free-form ``overrides`` (strict: an unknown key is an error);
* the model directory is ``/opt/ml/checkpoints/<host>/model``: a restarted job resumes from its last
  good checkpoint (``checkpoints.py``), SIGTERM saves one before the job exits, and a stop at any later
  moment (final evaluation, export, packaging) is picked up by the restart; converted data and the model
  being exported live in scratch space (``Environment.scratch_dir``), and ``/opt/ml/model`` receives the
  model only once it is complete (see docs/lifecycle-tfod.md);
* metric lines from orbit's train and eval actions (plain numbers, never NumPy reprs), TensorBoard
  events copied to ``/opt/ml/output/tensorboard`` as they are written;
* one GPU or several (MirroredStrategy), several hosts (MultiWorkerMirroredStrategy, ``TF_CONFIG``
  from resourceconfig.json); worker 0 exports (see ``export.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from container import tracking
from container.contract import Environment
from container.failure import TrainingStopped, UserError
from container.schema import Hyperparameters, Schema
from container.signals import GracefulStop, pause_point
from container.tfod.checkpoints import (
    FINAL_EVAL,
    channel_checkpoint,
    folder_size,
    readable,
    repair,
    step_of,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def read_label_map(path: Path) -> list[str]:
    """:func:`container.annotations.labelmap.read_label_map`, with a file that is not UTF-8 named as a user error."""
    from container.annotations import labelmap

    read_text(path, what="label map")
    return labelmap.read_label_map(path)


def read_text(path: Path, *, what: str) -> str:
    """A user's text file, or a user error naming it when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path.parent.name}/{path.name} is not UTF-8 text (byte {err.object[err.start]:#04x} "
                        f"at offset {err.start}): save it as UTF-8") from None


def resolve_data(env: Environment, hps: Mapping[str, Any], workdir: Path) -> tuple[Path, Path, list[str]]:
    """(train TFRecord pattern, val pattern, class names): TFRecords as given, anything else converted."""
    from container import annotations

    train = env.channel("train")
    if train is None:
        raise UserError("no training data: give a 'train' channel (TFRecords, or a dataset in any supported format)")
    labels = env.channel("labels")
    names: list[str] | None = None
    if labels is not None:
        maps = sorted(p for p in labels.rglob("*") if p.suffix in (".pbtxt", ".csv", ".yaml", ".yml"))
        if not maps:
            raise UserError("channel 'labels' holds no label map (label_map.pbtxt, an id,name CSV, or a YAML)")
        names = read_label_map(maps[0])
    records = _records(train)
    fmt = hps["data_format"]
    if records and fmt in ("auto", "tfrecord"):
        if names is None:
            found = sorted(p for p in train.rglob("label_map.*") if p.suffix in (".pbtxt", ".csv"))
            if not found:
                raise UserError("TFRecords need a label map: a 'labels' channel, or label_map.pbtxt/.csv beside them")
            names = read_label_map(found[0])
        val_ch = env.channel("val")
        val_records = _records(val_ch) if val_ch else [p for p in records if "val" in p.name]
        train_records = [p for p in records if p not in val_records] or records
        if not val_records:
            raise UserError("no validation TFRecords: give a 'val' channel or a val*.tfrecord beside the train ones")
        check_record_classes(train_records, names, "train")
        check_record_classes(val_records, names, "val" if val_ch else "train")
        return _pattern(train_records), _pattern(val_records), names
    out = workdir / "tfrecords"
    shutil.rmtree(out, ignore_errors=True)
    ann, report = annotations.convert(train, "tfrecord", out, fmt=fmt if fmt != "tfrecord" else "auto",
                                      names=names, ratios=None if env.channel("val") else (0.8, 0.2),
                                      strict=hps["strict_data"], log=lambda s: None)
    summary = ann.summary()
    log(f"dataset: channel 'train' holds {summary['format']} annotations: {summary['images']} images, "
        f"{summary['boxes']} boxes {json.dumps(summary['boxes_per_class'])}; converted to TFRecords")
    log(f"dataset: {report.text()}")  # the words and counts `python -m sdk.data check` prints
    if (val_channel := env.channel("val")) is not None:
        val_out = workdir / "val-tfrecords"
        shutil.rmtree(val_out, ignore_errors=True)
        # as strict as train: a class the label map does not know fails here instead of vanishing from the eval
        try:
            annotations.convert(val_channel, "tfrecord", val_out, fmt=fmt if fmt != "tfrecord" else "auto",
                                names=list(ann.names), strict=hps["strict_data"], log=lambda s: None)
        except UserError as err:
            raise UserError(f"channel 'val' (classes {echo(list(ann.names), 200)}): {err}") from None
        val = _pattern(sorted(val_out.glob("*.tfrecord")))
    else:
        val = out / "val-*.tfrecord"
    return out / "train-*.tfrecord", val, list(ann.names)  # shards: Model Garden's input reader globs them


def _records(folder: Path) -> list[Path]:
    """TFRecord files under ``folder`` (``train.tfrecord``, ``train-00000-of-00004.tfrecord``,
    ``train.tfrecord-00000-of-00010``), not a conversion's unfinished ``.partial`` shards."""
    from container.annotations.writers import PARTIAL

    return sorted(p for p in folder.rglob("*.tfrecord*") if not p.name.endswith(PARTIAL))


def check_record_classes(paths: list[Path], names: list[str], channel: str) -> None:
    """Every box's class in TFRecords must be one the label map names: Model Garden's label-map decoder looks up
    ``image/object/class/text`` (else the id), and a class it does not know silently becomes background.
    Read without TensorFlow (``container.annotations.tfrecord``), record checksums skipped: one quick pass."""
    from container.annotations.tfrecord import decode_example, read_records

    known = set(names)
    unknown: dict[str, int] = {}
    for path in paths:
        try:
            for data in read_records(path, verify=False):
                example = decode_example(data)
                texts = [t.decode("utf-8", "replace") for t in example.get("image/object/class/text", [])]
                ids = example.get("image/object/class/label", [])
                for label in texts or [str(i) for i in ids if not 1 <= int(i) <= len(names)]:
                    if label not in known:
                        unknown[label] = unknown.get(label, 0) + 1
        except (ValueError, IndexError, struct.error) as err:
            raise UserError(f"channel {channel!r}: {path.name} is not a TFRecord file of tf.Example protos "
                            f"({str(err)[:200]})") from None
    if unknown:
        shown = ", ".join(f"{echo(k, 40)} ({n} boxes)" for k, n in sorted(unknown.items())[:8])
        raise UserError(f"channel {channel!r}: TFRecords hold classes the label map does not know: {shown}; the label "
                        f"map names {echo(names, 300)}. Give the label map the records were written with (a 'labels' "
                        "channel), or records of these classes only")


def _pattern(paths: list[Path]) -> Path:
    return paths[0] if len(paths) == 1 else Path(",".join(str(p) for p in paths))


def parse_overrides(value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` from a mapping, a YAML/JSON text, or ``a.b=1,c.d=x`` pairs."""
    if not value:
        return {}
    if isinstance(value, dict):
        return value
    text = str(value).strip()
    try:
        if text.startswith("{") or "\n" in text or ": " in text:
            data = yaml.safe_load(text)
            if not isinstance(data, dict):
                raise UserError("overrides must be a mapping")
            return data
        out: dict[str, Any] = {}
        for pair in text.split(","):
            key, sep, raw = pair.partition("=")
            if not sep:
                raise UserError(f"overrides {pair!r}: expected a.b.c=value")
            node = out
            parts = key.strip().split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = yaml.safe_load(raw)
        return out
    except (yaml.YAMLError, RecursionError, AttributeError, TypeError) as err:  # a.b=1,a.b.c=2: b is no mapping
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0][:200]
        raise UserError(f"overrides {echo(value)} are not YAML/JSON or a.b.c=value pairs ({why})") from None


def experiment_config(hps: Mapping[str, Any], train: Path, val: Path, label_map: Path, num_classes: int,
                      init_checkpoint: str | None, cfg_files: list[Path]) -> Any:
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401 - registers the experiments

    size = hps["image_size"]
    if size % 128:
        raise UserError(f"image_size must be a multiple of 128 (RetinaNet's coarsest level), got {size}")
    exp = exp_factory.get_exp_config(hps["experiment"])
    for path in cfg_files:
        try:
            data = yaml.safe_load(read_text(path, what="config file")) or {}
        except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nested past the parser
            raise UserError(f"cfg/{path.name} is not valid YAML: {str(err)[:400] or 'nested too deeply'}") from None
        if not isinstance(data, dict):
            raise UserError(f"cfg/{path.name} must be a Model Garden config mapping (runtime:, task:, trainer:)")
        try:
            exp.override(data, is_strict=True)
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise UserError(f"cfg/{path.name} does not fit experiment {hps['experiment']!r}: "
                            f"{str(err).strip(chr(39))[:400]}") from None
        log(f"tfod: cfg/{path.name} applied to {hps['experiment']}")
    decoder = {"type": "label_map_decoder", "label_map_decoder": {"label_map": str(label_map)}}
    batch = hps["batch_size"]
    exp.override({
        "runtime": {"distribution_strategy": "one_device", "mixed_precision_dtype": "float32"},
        "task": {
            "init_checkpoint": init_checkpoint, "annotation_file": None,
            "model": {"num_classes": num_classes + 1, "input_size": [size, size, 3],
                      "norm_activation": {"use_sync_bn": False}},
            "train_data": {"input_path": str(train), "global_batch_size": batch, "dtype": "float32",
                           "decoder": decoder},
            "validation_data": {"input_path": str(val), "global_batch_size": batch, "dtype": "float32",
                                "decoder": decoder, "drop_remainder": False},  # a small val set still evaluates
        },
        "trainer": {
            "train_steps": hps["num_steps"], "validation_interval": hps["validation_interval"],
            "validation_steps": -1, "steps_per_loop": hps["log_interval"],
            "summary_interval": hps["log_interval"], "checkpoint_interval": hps["checkpoint_interval"],
            "optimizer_config": {
                "learning_rate": {"type": "constant", "constant": {"learning_rate": hps["learning_rate"]}},
                "warmup": {"type": "linear", "linear": {"warmup_steps": hps["warmup_steps"],
                                                        "warmup_learning_rate": hps["learning_rate"] / 10}},
            },
        },
    }, is_strict=False)
    try:
        exp.override(parse_overrides(hps["overrides"]), is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"overrides {echo(hps['overrides'])} do not fit experiment {hps['experiment']!r}: "
                        f"{str(err).strip(chr(39))[:400]}") from None
    return exp


def sync_tensorboard(model_dir: Path, target: Path) -> int:
    """Copy Model Garden's event files (``train/``, ``validation/``) where SageMaker uploads TensorBoard logs;
    only files that grew since the last copy. Returns how many were copied."""
    copied = 0
    for src in model_dir.glob("*/events.out.tfevents.*"):
        dst = target / src.parent.name / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied += 1
    return copied


EXPORTS = ("saved_model", "tflite")


def export_list(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").replace(" ", "").split(",")
    items = [str(i).strip().lower() for i in items if str(i).strip()]
    if items in ([], ["none"]):
        return []
    unknown = [i for i in items if i not in EXPORTS]
    if unknown:
        raise UserError(f"export {unknown[0]!r} is not one of: {', '.join(EXPORTS)}, none")
    return items


def train_metric_line(step: int, output: dict[str, Any]) -> str:
    """``[train] step=... total_loss=...`` from Model Garden's train output, through the schema."""
    return Schema.load("tfod").metric_line("train", {"step": step, **_numbers(output)})


def eval_metric_line(values: dict[str, Any]) -> str:
    """``[eval] AP=... AP50=...`` from Model Garden's COCO evaluation, through the schema."""
    return Schema.load("tfod").metric_line("eval", _numbers(values))


def report_train(step: int, output: dict[str, Any]) -> None:
    """The train metric line, printed and (with a tracking server) logged to MLflow at ``step``."""
    log(train_metric_line(step, output))
    tracking.log_metric_line(Schema.load("tfod"), "train", {"step": step, **_numbers(output)}, step)


def report_eval(values: dict[str, Any]) -> None:
    """An evaluation's metric line (``values`` holds its ``step``), printed and logged to MLflow."""
    log(eval_metric_line(values))
    tracking.log_metric_line(Schema.load("tfod"), "eval", _numbers(values), int(values.get("step") or 0))


def _numbers(output: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in output.items():
        try:
            out[key] = round(float(value), 6)
        except (TypeError, ValueError):
            continue
    return out


WORKER_PORT = 2222


def tf_config(env: Environment) -> dict[str, Any] | None:
    """``TF_CONFIG`` for multi-worker training, from resourceconfig.json (None on one host).

    Hosts are reached by their SageMaker names (``algo-1:2222``...); ``TFOD_WORKER_ADDRESSES``
    (comma-separated host:port, in host order) replaces them, for a two-worker run on one machine.
    """
    hosts = list(env.hosts)
    if len(hosts) <= 1:
        return None
    given = os.environ.get("TFOD_WORKER_ADDRESSES")
    workers = [a.strip() for a in given.split(",")] if given else [f"{h}:{WORKER_PORT}" for h in hosts]
    if len(workers) != len(hosts):
        raise UserError(f"TFOD_WORKER_ADDRESSES names {len(workers)} workers for {len(hosts)} hosts")
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": hosts.index(env.current_host)}}


def job_hyperparameters(env: Environment, schema: Schema) -> Hyperparameters:
    """Every hyperparameter, typed: the schema's defaults, then the job's (checked, ranges included). The ``cfg``
    channel's YAML files are Model Garden configs, applied to the experiment (:func:`experiment_config`), not
    hyperparameters."""
    return schema.resolve([("hyperparameters", dict(env.hyperparameters_raw))])


def check_inputs(env: Environment, hps: Mapping[str, Any]) -> None:
    """Bad input fails at start, as a user error that names it. The values are the schema's to check (types,
    bounds, NaN, NUL: container/schema.py), so the SDK refuses the same before a job is made; this checks the
    channels."""
    for name, path in env.channels.items():
        if not path.is_dir():
            raise UserError(f"channel {name!r} is a file ({path.name}), not a folder: SageMaker puts each channel's "
                            "files in a folder; give the S3 prefix or local folder that holds it")


def echo(value: Any, limit: int = 120) -> str:
    """A value quoted in a failure message, cut short: the message and its fix must fit in 1,024 characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def checkpoint_folder_report(folder: Path) -> str:
    files, size = folder_size(folder)
    return (f"checkpoints: {folder} holds {files} files, {size / 1e6:.1f} MB "
            "(synced to S3 when the job has a checkpoint location)")


def job_folders(env: Environment) -> tuple[Path, Path]:
    """(scratch, model_dir): converted data, label maps and the model being staged live in scratch space, which is
    neither uploaded nor an input; the model directory (checkpoints, events) in this host's synced folder."""
    scratch = env.scratch_dir / "tfod"  # scratch_dir is this host's already
    scratch.mkdir(parents=True, exist_ok=True)
    model_dir = env.host_checkpoint_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    return scratch, model_dir


def pick_strategy(env: Environment) -> tuple[Any, dict[str, Any] | None, str]:
    """(the tf.distribute strategy, TF_CONFIG or None, its name as Model Garden's runtime config spells it)."""
    import tensorflow as tf

    config = tf_config(env)
    gpus = tf.config.list_physical_devices("GPU")
    if config is not None:  # must be in the environment before the strategy reads it
        os.environ["TF_CONFIG"] = json.dumps(config)
        log(f"tfod: multi-worker training, worker {config['task']['index']} of {config['cluster']['worker']}")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif Path("/dev/nvidia0").exists() and not gpus:
        log("WARNING this host has an NVIDIA GPU that TensorFlow cannot use (no CUDA libraries in the image?): "
            "training on the CPU")
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    name = ("multi_worker_mirrored" if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else
            "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else "one_device")
    log(f"tfod: {name} strategy with {strategy.num_replicas_in_sync} replica(s), {len(gpus)} GPU(s) on this host")
    return strategy, config, name


def fit(env: Environment, exp: Any, strategy: Any, model_dir: Path, init: str | None,
        stop: GracefulStop) -> dict[str, Any]:
    """Train (resuming from ``model_dir``'s newest good checkpoint) and evaluate; returns the final evaluation.

    A stop during training saves a checkpoint at the end of the interval and raises TrainingStopped. A run
    whose checkpoint is already at ``num_steps`` (it was stopped after training: during the final evaluation,
    the export or the packaging) trains nothing and reprints the final evaluation kept beside the checkpoints,
    or runs it again if the stop came before it was kept."""
    import orbit
    from official.core import task_factory, train_lib

    holder: dict[str, Any] = {}

    class Controller(orbit.Controller):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            holder["controller"] = self
            manager = self.checkpoint_manager
            if manager is not None:  # every save, periodic or on a stop: a second SIGTERM waits until it is whole
                save = manager.save

                def shielded_save(*a: Any, **kw: Any) -> Any:
                    with stop.shielded():
                        return save(*a, **kw)

                manager.save = shielded_save

    def on_train(output: dict[str, Any]) -> None:
        step = int(holder["controller"].global_step.numpy())
        report_train(step, output)
        sync_tensorboard(model_dir, env.tensorboard_dir)
        pause_point(f"step:{step}", stop)
        if stop.requested:
            holder["controller"].save_checkpoint()
            raise TrainingStopped(f"stopped at step {step}; checkpoint saved in {model_dir}")

    def on_eval(output: dict[str, Any]) -> None:
        step = int(holder["controller"].global_step.numpy())
        holder["eval"] = {"step": step, **_numbers(output)}
        report_eval(holder["eval"])
        sync_tensorboard(model_dir, env.tensorboard_dir)
        write_atomically(model_dir / FINAL_EVAL, json.dumps(holder["eval"]))

    with strategy.scope():
        task = task_factory.get_task(exp.task, logging_dir=str(model_dir))
    if init:
        initialize = task.initialize  # Model Garden calls it when model_dir holds no checkpoint yet

        def initialize_and_say(model: Any) -> None:
            initialize(model)  # raises if the checkpoint does not match the model
            log(f"tfod: initialized from {init} (modules: {exp.task.init_checkpoint_modules})")

        task.initialize = initialize_and_say
    with stop.deferred():  # SIGTERM is recorded; on_train saves a checkpoint at the end of the interval and stops
        train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train_and_eval", params=exp,
                                 model_dir=str(model_dir), train_actions=[on_train], eval_actions=[on_eval],
                                 controller_cls=Controller)
        sync_tensorboard(model_dir, env.tensorboard_dir)
        if stop.requested:
            raise TrainingStopped(f"stopped; checkpoint saved in {model_dir}")
        if "eval" not in holder:  # nothing left to train: the run that trained it was stopped after training
            step = int(holder["controller"].global_step.numpy())
            kept = read_json(model_dir / FINAL_EVAL)
            if kept.get("step") == step:
                log(f"tfod: training finished at step {step} in an earlier run; its final evaluation:")
                holder["eval"] = kept
                log(eval_metric_line(kept))
            else:
                log(f"tfod: training finished at step {step} in an earlier run; evaluating it again")
                with strategy.scope():
                    holder["controller"].evaluate(steps=int(exp.trainer.validation_steps))
    if stop.requested:
        raise TrainingStopped(f"stopped during the final evaluation; checkpoint in {model_dir}")
    return holder.get("eval", {})


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: a stop leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_model(env: Environment, hps: Mapping[str, Any], exp: Any, model_dir: Path, scratch: Path,
                 train_path: Path, labels: tuple[Path, Path], names: list[str], final: dict[str, Any],
                 stop: GracefulStop) -> None:
    """Every export, the label maps and metrics.json, staged in scratch space, then moved into /opt/ml/model whole."""
    from container.tfod import export

    try:
        staged = _export_model(env, hps, exp, model_dir, scratch, train_path, labels, names, final, stop)
        stop.check()  # a stop during the last export step: nothing is published
    except TrainingStopped:
        if stop.requested is None:
            raise
        # raised wherever the signal landed, sometimes re-raised by Keras with a layer's name in it: said plainly
        raise TrainingStopped(f"stopped during the export; nothing was written to {env.model_dir}, and a restart "
                              "with the same checkpoint location exports again") from None
    moved = export.publish(staged, env.model_dir, stop)
    log(f"export: {env.model_dir} holds {', '.join(moved)}")
    if stop.requested:  # came while moving: the model folder is whole, and the stop is still a stop
        raise TrainingStopped(f"stopped after the model was written to {env.model_dir}")


def _export_model(env: Environment, hps: Mapping[str, Any], exp: Any, model_dir: Path, scratch: Path,
                  train_path: Path, labels: tuple[Path, Path], names: list[str], final: dict[str, Any],
                  stop: GracefulStop) -> Path:
    import logging

    from container.tfod import export

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the exporter warns once per unbuilt Keras layer
    exports_wanted = export_list(hps["export"])
    out = scratch / "model-staging"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log(f"export: {', '.join(exports_wanted) or 'label maps and metrics only'}, staged in {out}; moved into "
        f"{env.model_dir} once complete")
    pause_point("export", stop)
    label_pbtxt, label_map = labels
    shutil.copyfile(label_map, out / "label_map.csv")
    shutil.copyfile(label_pbtxt, out / "label_map.pbtxt")
    size = hps["image_size"]
    exports: dict[str, Any] = {}
    sample = export.sample_image(train_path, size) if exports_wanted else None
    if "saved_model" in exports_wanted:
        exports["saved_model"] = export.export_saved_model(exp, model_dir, out, size, sample)
        log(f"export: SavedModel in 1/ ran on a training image: {exports['saved_model']}")
    if "tflite" in exports_wanted:
        # not in `out`: the staged folder is published whole, and this SavedModel is only the converters' input
        source = export.tflite_saved_model(exp, model_dir, scratch / "tflite-source", size)
        exports["tflite"] = export.export_tflite(exp, source, out, size, quant_type=None, name="model_float.tflite",
                                                sample=sample)
        log(f"export: {exports['tflite']}")
        if hps["quantize"]:
            exports["tflite_int8"] = export.export_tflite_isolated(hps["experiment"], exp, source, out, size,
                                                                   quant_type="int8", name="model_int8.tflite",
                                                                   sample=sample)
            log(("WARNING " if "error" in exports["tflite_int8"] else "") + f"export: {exports['tflite_int8']}")
        shutil.rmtree(source.parent, ignore_errors=True)
        chosen = "tflite_int8" if hps["inference_type"] == "int8" else "tflite"
        if "error" not in exports.get(chosen, {"error": "missing"}):
            shutil.copyfile(out / exports[chosen]["path"], out / "model.tflite")
            log(f"export: model.tflite is the {hps['inference_type']} model (inference_type)")
    summary = {"hyperparameters": dict(hps), "classes": names, "final": final, "exports": exports,
               "job_name": env.job_name}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    return out


def train(env: Environment, schema: Schema, stop: GracefulStop) -> None:
    """The job, as named steps in the YOLO trainer's order (container/yolo/trainer.py): inputs checked, data
    prepared, framework set up, resume point found, model built, fit (stoppable at any interval), packaged. The
    input pipeline is Model Garden's own (tf.data reading the TFRecords the data step names, as the experiment's
    ``train_data`` and ``validation_data`` say). On several hosts every worker fits; worker 0 packages."""
    hps = check_job(env, schema)
    scratch, model_dir = job_folders(env)
    log(checkpoint_folder_report(env.checkpoint_dir))
    init = fine_tune_checkpoint(env)  # an input, checked before the data is converted
    data = prepare_data(env, hps, scratch)
    framework = set_up_framework(env)
    find_resume_point(model_dir)
    exp = build_model(env, hps, data, init, model_dir, framework)
    final = fit(env, exp, framework.strategy, model_dir, init, stop)
    log(checkpoint_folder_report(env.checkpoint_dir))
    if not framework.exports:
        log("training finished (worker 0 exports the model)")
        return
    package(env, hps, exp, model_dir, scratch, data, final, stop)


def check_job(env: Environment, schema: Schema) -> Hyperparameters:
    """Inputs checked: every hyperparameter typed and in range (the schema), the channels, the exports asked for;
    MLflow, when the job names a server, gets the parameters."""
    hps = job_hyperparameters(env, schema)
    if hps["model_dir"]:
        log(f"WARNING model_dir={echo(hps['model_dir'])} is ignored: the model directory is "
            f"{env.host_checkpoint_dir / 'model'}, so a restarted job resumes; the model is exported to "
            f"{env.model_dir}")
    check_inputs(env, hps)
    tracking.log_params(hps, env)  # MLflow, when the job names a server (container/tracking.py)
    export_list(hps["export"])
    if hps["inference_type"] == "int8" and not hps["quantize"]:
        raise UserError("inference_type int8 needs quantize true (the int8 model is calibrated on training images)")
    return hps


def fine_tune_checkpoint(env: Environment) -> str | None:
    """The ``checkpoint`` channel's newest readable checkpoint, to fine-tune from (None without the channel)."""
    ckpt = env.channel("checkpoint")
    return str(channel_checkpoint(ckpt, readable, log)) if ckpt is not None else None


@dataclass(frozen=True)
class Data:
    """What the data step prepared: TFRecord patterns, the class names, and their label maps (pbtxt, csv)."""

    train: Path
    val: Path
    names: list[str]
    labels: tuple[Path, Path]


def prepare_data(env: Environment, hps: Mapping[str, Any], scratch: Path) -> Data:
    """Data prepared: TFRecords as given or converted into scratch space (:func:`resolve_data`), label maps written."""
    from container.annotations.labelmap import write_label_map

    train_path, val_path, names = resolve_data(env, hps, scratch)
    return Data(train_path, val_path, names, write_label_map(names, scratch / "label-map"))


@dataclass(frozen=True)
class Framework:
    """TensorFlow set up for this host: the strategy, ``TF_CONFIG`` (None on one host), and the runtime section
    the experiment records (strategy name, GPUs)."""

    strategy: Any
    tf_config: dict[str, Any] | None
    runtime: dict[str, Any]

    @property
    def exports(self) -> bool:
        """One host, or worker 0 of several: the one that packages the model."""
        return self.tf_config is None or self.tf_config["task"]["index"] == 0


def set_up_framework(env: Environment) -> Framework:
    """Framework set up: the tf.distribute strategy for this host's GPUs and the cluster (:func:`pick_strategy`)."""
    strategy, config, name = pick_strategy(env)
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return Framework(strategy, config, {"num_gpus": gpus, "distribution_strategy": name})


def find_resume_point(model_dir: Path) -> Path | None:
    """Resume point: the newest checkpoint in the model directory that reads back (damaged ones set aside); Model
    Garden resumes from it in :func:`fit`. None: a fresh start."""
    resumed = repair(model_dir, readable, log)
    if resumed is not None:
        log(f"tfod: {model_dir} holds {resumed.name}: resuming from step {step_of(resumed)}")
    return resumed


def build_model(env: Environment, hps: Mapping[str, Any], data: Data, init: str | None, model_dir: Path,
                framework: Framework) -> Any:
    """Model built: the Model Garden experiment (:func:`experiment_config`) for this data, the ``cfg`` channel's
    YAML files, the hyperparameters and the framework's runtime."""
    cfg = env.channel("cfg")
    exp = experiment_config(hps, data.train, data.val, data.labels[1], len(data.names), init,
                            sorted(cfg.glob("*.y*ml")) if cfg else [])
    log(f"tfod: {hps['experiment']}, {len(data.names)} classes {data.names}, {hps['num_steps']} steps, "
        f"model_dir {model_dir}")
    if init:
        log(f"tfod: fine-tuning from {init} (modules: {exp.task.init_checkpoint_modules}); a checkpoint in "
            f"{model_dir} takes precedence")
    exp.override({"runtime": framework.runtime}, is_strict=False)  # saved in params
    return exp


def package(env: Environment, hps: Mapping[str, Any], exp: Any, model_dir: Path, scratch: Path, data: Data,
            final: dict[str, Any], stop: GracefulStop) -> None:
    """Packaged: the exports, label maps and metrics.json, moved into the model folder whole (:func:`export_model`)."""
    export_model(env, hps, exp, model_dir, scratch, data.train, data.labels, data.names, final, stop)
