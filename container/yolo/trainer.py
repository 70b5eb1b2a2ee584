"""The YOLO trainer: ultralytics behind the SageMaker contract.

Order of work: hyperparameters (defaults < cfg channel files < job hyperparameters), the dataset
(found, checked, split), the model (a YAML name, or weights from the weights channel), resume
(from this host's checkpoint folder, else the checkpoint channel), training with one metric
line per epoch, then the model folder and the requested exports, each run once on an image.

Everything ultralytics writes during training lives in ``/opt/ml/checkpoints/<host>/train``
(``weights/last.pt`` every epoch), which SageMaker syncs to S3 while the job runs; derived data
(converted datasets, label caches) lives in the scratch folder, never synced. A stop at any moment
exits 143 and the next attempt with the same checkpoint folder ends with the same model folder
(docs/lifecycle.md): checkpoints are checked before use, epochs are never skipped or repeated, and
the model folder is filled in one move at the end.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from container import tracking
from container.archive import sha256
from container.contract import Environment
from container.failure import TrainingStopped, UserError, shorten
from container.schema import Hyperparameters, Schema
from container.signals import GracefulStop, pause_point
from container.yolo import checkpoints, distributed, image_cache, loader, validate
from container.yolo import dataset as datasets
from container.yolo.package import package
from container.yolo.prepare import (  # re-exported: the Dockerfile bakes fonts in with install_fonts
    choose_model,
    configure_offline,
    find_weights,
    install_fonts,
    log_checkpoint_folder,
)
from container.yolo.report import Reporter, log, quiet_progress_bars


# -- hyperparameters -----------------------------------------------------------------------------
def resolve_hyperparameters(env: Environment, schema: Schema) -> Hyperparameters:
    """Every hyperparameter, typed, and where each came from: defaults < hyperparameter YAML < train-args.json <
    job."""
    cfg = env.channel("cfg")
    layers: list[tuple[str, dict[str, Any]]] = []
    if cfg is not None:
        for path in sorted(cfg.glob("*.y*ml")):
            data = datasets.read_yaml(path)
            if isinstance(data, dict) and "names" not in data and "nc" not in data:
                layers.append((f"cfg/{path.name}", data))
        args_file = cfg / "train-args.json"
        if args_file.is_file():
            try:
                data = json.loads(args_file.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise UserError(f"cfg/train-args.json is not UTF-8 text ({err.reason} at byte {err.start}): "
                                "save it as UTF-8") from err
            except ValueError as err:
                raise UserError(f"cfg/train-args.json is not valid JSON: {err}") from err
            except RecursionError:  # brackets nested past the parser
                raise UserError("cfg/train-args.json is not valid JSON: nested too deeply") from None
            if not isinstance(data, dict):
                raise UserError("cfg/train-args.json must hold a JSON object of argument: value")
            layers.append(("cfg/train-args.json", data))
    layers.append(("hyperparameters", dict(env.hyperparameters_raw)))
    return schema.resolve(layers)


# -- offline set-up ------------------------------------------------------------------------------


def train(env: Environment, schema: Schema, stop: GracefulStop) -> None:
    """The job, as named steps: inputs checked, data prepared, framework set up, resume point found, model
    built, input pipeline, fit (stoppable at any batch), packaged. One instance and several differ only in
    how ``fit`` runs: in this process, or torchrun on every host (distributed.py) with a typed worker spec;
    on several, only the leader packages."""
    validate.check_environment(env)
    hps = resolve_hyperparameters(env, schema)
    validate.check_values(hps, hps.sources)
    framework_args = hps.framework_args()
    cluster = distributed.cluster_from(env, hps) if len(env.hosts) > 1 else None
    if cluster is not None:
        log(cluster.describe())
        distributed.check_framework_args(hps, cluster)
    shown = hps.shown()
    log("hyperparameters: " + json.dumps({k: shown[k] for k in sorted(shown)}, default=str))
    tracking.log_params(shown, env)  # MLflow, when the job names a server (container/tracking.py); the leader only
    log("set by: " + json.dumps(dict(sorted(hps.set_sources().items()))))

    configure_offline()
    host_dir = env.host_checkpoint_dir
    run_dir = host_dir / "train"
    log_checkpoint_folder(host_dir, "at start")
    ds = datasets.resolve(env, hps, env.scratch_dir / "data", seed=hps["seed"], log=log)
    pause_point("data", stop)
    stop.check()
    set_up_framework(env, framework_args, run_dir, several=cluster is not None)
    leads = cluster is None or cluster.is_leader
    state = find_resume_point(env, run_dir, from_channel=leads)
    reporter = Reporter(hps["progress_interval"], hps["per_class_metrics"], run_dir / "final.json")
    weights_used: dict[str, str] = {}
    if state is not None and state.finished and cluster is None:
        log("training already finished in an earlier attempt; packaging its results")
    elif state is not None and state.finished and cluster is not None and leads:  # the others learn it from it
        weights_used[state.path.name] = sha256(state.path)
        distributed.fit(cluster, distributed.worker_spec(None, {**framework_args, **_common(ds.data_yaml, run_dir)},
                                                         run_dir, state, hps), env.scratch_dir, stop, log)
    else:
        # a follower is told by the leader whether to resume (ddp_worker.py), so it builds from the job's model
        model, kwargs, name = build_model(env, hps, framework_args, ds.data_yaml, run_dir,
                                          state if leads else None, weights_used)
        if cluster is not None and state is not None:
            log("every host resumes from the leader's checkpoint")
        # input pipeline (docs/input-pipeline.md): large images decoded once, at the size training uses
        image_cache.apply(ds.data_yaml, imgsz=image_cache.training_imgsz(model, kwargs), threads=env.num_cpus,
                          cache_dir=env.scratch_dir / "image-cache", log=log,
                          enabled=hps["image_cache"])
        stop.check()
        if cluster is None:
            reporter.attach(model)
            fit(model, kwargs, stop)
        else:
            del model  # each worker builds its own
            distributed.fit(cluster, distributed.worker_spec(None if state is not None and leads else name,
                                                             kwargs, run_dir, state if leads else None, hps),
                            env.scratch_dir, stop, log)
    stop.check()
    if cluster is not None and not cluster.is_leader:
        log(f"distributed: host {cluster.current_host} done; the leader {cluster.leader} writes the model folder")
        return
    log_checkpoint_folder(host_dir, "after training")
    package(env, hps, ds, run_dir, reporter, weights_used, stop)


def set_up_framework(env: Environment, framework_args: dict[str, Any], run_dir: Path, *, several: bool) -> None:
    """ultralytics offline and quiet, its arguments checked, workers and devices fitted to the instance."""
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if several:
        from container.yolo.ddp_trainer import check_version

        check_version()  # the workers' trainer overrides private methods of one ultralytics version
    install_fonts(Path(USER_CONFIG_DIR))
    SETTINGS.update({"sync": False, "mlflow": False})  # one job, one MLflow run: ours (container/tracking.py)
    quiet_progress_bars()
    validate.check_framework_args(framework_args)
    log(f"ultralytics {ultralytics.__version__}; {env.num_gpus} GPU(s), {env.num_cpus} CPU(s); run folder {run_dir}")
    # input pipeline (docs/input-pipeline.md): workers that fit the instance's CPUs, /dev/shm logged
    if (workers := loader.plan(cpus=env.num_cpus, gpus=env.num_gpus, user_workers=framework_args.get("workers"),
                               log=log)) is not None:
        framework_args["workers"] = workers
    if not several and "device" not in framework_args and env.num_gpus > 1:
        framework_args["device"] = ",".join(str(i) for i in range(env.num_gpus))  # ultralytics' DDP on one host
        log(f"training on {env.num_gpus} GPUs with DDP (device={framework_args['device']})")


def _common(data_yaml: Path, run_dir: Path) -> dict[str, Any]:
    """train() arguments every run gets: the data, and the run folder in the checkpoint folder."""
    return {"data": str(data_yaml), "save_dir": str(run_dir), "exist_ok": True}


def find_resume_point(env: Environment, run_dir: Path, *, from_channel: bool = True) -> checkpoints.State | None:
    """This host's checkpoint, else the checkpoint channel's (checked before anything is copied; on several
    instances only the leader reads the channel and sends the others its start point)."""
    weights_dir = run_dir / "weights"
    state = checkpoints.resume_point(weights_dir, log)
    if state is None and from_channel and (channel := env.channel("checkpoint")) is not None:
        checkpoints.from_channel(channel, run_dir, log)
        state = checkpoints.resume_point(weights_dir, log)
    if state is not None:
        log(f"found {weights_dir / 'last.pt'} ({state.epochs_done} of {state.epochs} epoch(s) done"
            + (", training finished)" if state.finished else ", resumable)"))
    return state


def build_model(env: Environment, hps: Hyperparameters, framework_args: dict[str, Any],
                data_yaml: Path, run_dir: Path, state: checkpoints.State | None,
                weights_used: dict[str, str]) -> tuple[Any, dict[str, Any], str]:
    """(the YOLO model, its train() arguments, what it was built from): resumed from last.pt, or built from a
    YAML or the weights channel."""
    from ultralytics import YOLO

    common = _common(data_yaml, run_dir)
    last = run_dir / "weights" / "last.pt"
    if state is not None:
        weights_used[last.name] = sha256(last)
        log(f"resuming from {last} (sha256 {weights_used[last.name]})")
        return YOLO(str(last)), {**framework_args, **common, "resume": str(last)}, str(last)
    model_name, pretrained = choose_model(hps, hps.is_set("model"), find_weights(env, env.scratch_dir / "weights-in"))
    for path in filter(None, (model_name if model_name.endswith(".pt") else None, pretrained)):
        weights_used[Path(path).name] = sha256(Path(path))
        log(f"weights: {path} sha256 {weights_used[Path(path).name]}")
    try:
        model = YOLO(model_name)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"cannot build model {shorten(model_name, 100)!r}: {err}. Use a model YAML that "
                        "ultralytics ships (yolo11n.yaml, yolov8s.yaml, ...) or a .pt in the weights "
                        "channel") from err
    extra = {"pretrained": pretrained} if pretrained else {}
    return model, {**framework_args, **extra, **common}, model_name


def fit(model: Any, kwargs: dict[str, Any], stop: GracefulStop) -> None:
    """model.train with our trainer class; a SIGTERM (forwarded to DDP workers) ends it as TrainingStopped."""
    from container.yolo.fed_trainer import FedTrainer
    from container.yolo.resumable import ResumableTrainer

    ResumableTrainer.graceful = stop
    multi_gpu = "," in str(kwargs.get("device") or "")
    forwarding = stop.forwarding() if multi_gpu else contextlib.nullcontext()
    try:
        with stop.deferred(), forwarding:
            model.train(trainer=FedTrainer, **kwargs)
    except TrainingStopped:
        raise
    except Exception as err:
        if stop.requested is not None:  # a DDP worker stopped on the forwarded signal, or a loader torn down
            raise TrainingStopped(f"stopped by SIGTERM ({type(err).__name__} on the way out)") from err
        raise
