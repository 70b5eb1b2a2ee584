"""The YOLO trainer: ultralytics behind the SageMaker contract.

Order of work: hyperparameters (defaults < cfg channel files < job hyperparameters), the dataset
(found, checked, split), the model (a YAML name, or weights from the weights channel), resume
(from this host's checkpoint folder, else the checkpoint channel), training with one metric
line per epoch, then the model folder and the requested exports, each run once on an image.

Everything ultralytics writes during training lives in ``/opt/ml/checkpoints/<host>/train``
(``weights/last.pt`` every epoch), which SageMaker syncs to S3 while the job runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from container.archive import safe_extract, sha256
from container.contract import Environment
from container.failure import TrainingStopped, UserError
from container.schema import Schema, format_metric_line
from container.signals import GracefulStop
from container.yolo import dataset as datasets

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def log(msg: str) -> None:
    print(msg, flush=True)


# -- hyperparameters -----------------------------------------------------------------------------
def resolve_hyperparameters(env: Environment, schema: Schema) -> tuple[dict[str, Any], dict[str, str]]:
    """Merged values and where each came from: defaults < hyperparameter YAML < train-args.json < job."""
    merged: dict[str, Any] = schema.defaults()
    source = {k: "default" for k in merged}
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
            except ValueError as err:
                raise UserError(f"cfg/train-args.json is not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise UserError("cfg/train-args.json must hold a JSON object of argument: value")
            layers.append(("cfg/train-args.json", data))
    layers.append(("hyperparameters", dict(env.hyperparameters_raw)))
    for origin, raw in layers:
        typed = schema.parse(raw, origin=f"{origin} key" if origin != "hyperparameters" else "hyperparameter")
        merged.update(typed)
        source.update({k: origin for k in typed})
    return merged, source


def _list(value: Any) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip().lower() for v in items if str(v).strip()]


# -- offline set-up ------------------------------------------------------------------------------
def configure_offline() -> None:
    """Nothing downloaded, installed or reported at run time. Call before importing ultralytics."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_ANALYTICS", "false")


def install_fonts(config_dir: Path) -> None:
    """ultralytics downloads Arial for its plots when missing; give it matplotlib's DejaVu Sans instead."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONTS:
        if not (config_dir / name).exists() and source.exists():
            shutil.copyfile(source, config_dir / name)


# -- weights -------------------------------------------------------------------------------------
def find_weights(env: Environment, workdir: Path) -> list[Path]:
    """``.pt`` files in the weights channel, with any ``*.tar.gz`` in it safely extracted first."""
    channel = env.channel("weights")
    if channel is None:
        return []
    found = []
    for item in sorted(channel.rglob("*")):
        if item.name.endswith((".tar.gz", ".tgz", ".tar")):
            dest = workdir / item.name.split(".")[0]
            shutil.rmtree(dest, ignore_errors=True)
            found += [p for p in safe_extract(item, dest) if p.suffix == ".pt"]
        elif item.suffix == ".pt" and item.is_file():
            found.append(item)
    if not found:
        raise UserError("channel 'weights' holds no .pt file and no model.tar.gz with one")
    return found


def choose_model(hps: dict[str, Any], explicit: bool, weights: list[Path]) -> tuple[str, str | None]:
    """(model for ``YOLO()``, pretrained weights path or None)."""
    model = str(hps["model"])
    if model.endswith(".pt"):
        matches = [w for w in weights if w.name == Path(model).name]
        if not matches:
            have = ", ".join(w.name for w in weights) or "no weights channel"
            raise UserError(f"model {model!r} is not in the weights channel ({have}). The image downloads nothing: "
                            f"upload the .pt as the 'weights' channel, or train from a YAML such as "
                            f"{Path(model).stem}.yaml")
        return str(matches[0]), None
    if not weights:
        return model, None
    by_name = {w.name: w for w in weights}
    chosen = by_name.get("best.pt") or by_name.get("last.pt") or (weights[0] if len(weights) == 1 else None)
    if chosen is None:
        raise UserError("several .pt files in the weights channel (" + ", ".join(sorted(by_name))
                        + "): name one with the hyperparameter model")
    if not explicit:
        return str(chosen), None
    return model, str(chosen)  # the YAML architecture, initialised from the weights where layers match


def read_checkpoint_state(path: Path) -> tuple[bool, int]:
    """(resumable, epochs done) of an ultralytics checkpoint; a finished run has no optimizer."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from err
    epoch = int(ckpt.get("epoch", -1))
    return ckpt.get("optimizer") is not None and epoch >= 0, epoch + 1


# -- the callbacks -------------------------------------------------------------------------------
class Reporter:
    """Metric lines, progress lines and the stop check, as ultralytics callbacks."""

    def __init__(self, stop: GracefulStop, progress_interval: float, per_class: bool) -> None:
        self.stop = stop
        self.interval = progress_interval
        self.per_class = per_class
        self.in_epoch = False
        self.batches = 0
        self.last_progress = 0.0
        self.epoch_start = 0.0
        self.final: dict[str, float] = {}
        self.per_class_ap: dict[str, dict[str, float]] = {}
        self.epochs_done = 0

    def attach(self, model) -> None:
        for event in ("on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "on_fit_epoch_end"):
            model.add_callback(event, getattr(self, event))

    def on_train_epoch_start(self, trainer) -> None:
        self.batches = 0
        self.epoch_start = self.last_progress = time.monotonic()

    def on_train_batch_end(self, trainer) -> None:
        self.batches += 1
        if self.stop.requested is not None:
            self._save_and_stop(trainer)
        now = time.monotonic()
        if self.interval and now - self.last_progress >= self.interval:
            self.last_progress = now
            total = len(trainer.train_loader)
            elapsed = now - self.epoch_start
            left = elapsed / self.batches * (total - self.batches)
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            loss = " ".join(f"{k.split('/')[-1]}={float(v):.4f}" for k, v in losses.items())
            log(f"[progress] epoch {trainer.epoch + 1}/{trainer.epochs} batch {self.batches}/{total} "
                f"({self.batches / total:.0%}) {elapsed:.0f}s elapsed, ~{left:.0f}s left in epoch; {loss}")

    def _save_and_stop(self, trainer) -> None:
        """Save a resumable last.pt now (the interrupted epoch counts as done), keep best.pt as it was."""
        best = trainer.best
        trainer.best = trainer.wdir / "interrupted.pt"
        try:
            trainer.save_model()
        finally:
            trainer.best.unlink(missing_ok=True)
            trainer.best = best
        raise TrainingStopped(f"stopped by SIGTERM in epoch {trainer.epoch + 1}/{trainer.epochs} after "
                              f"{self.batches} batches; checkpoint saved to {trainer.last}")

    def on_train_epoch_end(self, trainer) -> None:
        self.in_epoch = True

    def on_fit_epoch_end(self, trainer) -> None:
        metrics = {_short_key(k): v for k, v in trainer.metrics.items()}
        if self.in_epoch:  # after an epoch's validation
            self.in_epoch = False
            self.epochs_done = trainer.epoch + 1
            losses = {_short_key(k): v for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
            lr = next(iter(trainer.lr.values()), None) if getattr(trainer, "lr", None) else None
            values = {"epoch": trainer.epoch + 1, **losses,
                      **{k: v for k, v in metrics.items() if k.startswith("val_")},
                      **{k: v for k, v in metrics.items() if not k.startswith("val_")}, "lr": lr}
            print(format_metric_line("metrics", values), flush=True)
            return
        # ultralytics' final evaluation of best.pt
        self.final = {k: float(v) for k, v in metrics.items() if not k.startswith("val_")}
        print(format_metric_line("final", self.final), flush=True)
        box = getattr(getattr(trainer.validator, "metrics", None), "box", None)
        if box is not None and len(getattr(box, "ap_class_index", [])):
            names = trainer.validator.names
            for i, cls in enumerate(box.ap_class_index):
                name = str(names[int(cls)])
                self.per_class_ap[name] = {"mAP50": float(box.ap50[i]), "mAP50-95": float(box.ap[i])}
                if self.per_class:
                    print(format_metric_line("class", self.per_class_ap[name], prefix=[f"class={name}"]), flush=True)


def _short_key(key: str) -> str:
    group, _, name = key.partition("/")
    name = name.replace("(B)", "")
    return name if group in ("train", "metrics") else f"{group}_{name}"


def quiet_progress_bars() -> None:
    """ultralytics' bars redraw with carriage returns; where stdout is no terminal, print them once."""
    if not sys.stdout.isatty():
        import ultralytics.utils.tqdm as tq

        tq.is_noninteractive_console = lambda: True


# -- exports -------------------------------------------------------------------------------------
def export_and_verify(best: Path, formats: list[str], imgsz: Any, sample: Path, dest: Path) -> dict[str, Any]:
    """Export best.pt to each format, load each export and run it on one image before it counts."""
    from ultralytics import YOLO

    results: dict[str, Any] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        log(f"export: {fmt} ...")
        started = time.monotonic()
        try:
            exported = Path(YOLO(str(best)).export(format=fmt, imgsz=imgsz))
            detections = YOLO(str(exported), task="detect").predict(str(sample), imgsz=imgsz, verbose=False)
        except Exception as err:
            raise RuntimeError(f"export to {fmt} failed: {type(err).__name__}: {err}") from err
        target = dest / exported.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(exported), target)
        results[fmt] = {"path": str(target.relative_to(dest.parent)), "verified_on": sample.name,
                        "detections": len(detections[0].boxes), "seconds": round(time.monotonic() - started, 1)}
        log(f"export: {fmt} -> {target.name}, ran on {sample.name}: {results[fmt]['detections']} detections")
    return results


# -- the job -------------------------------------------------------------------------------------
def train(env: Environment, schema: Schema, stop: GracefulStop) -> None:
    hps, sources = resolve_hyperparameters(env, schema)
    if len(env.hosts) > 1:
        raise UserError(f"this job has {len(env.hosts)} instances ({', '.join(env.hosts)}) but ultralytics cannot "
                        "train across machines (no multi-node DDP). Use InstanceCount=1; a multi-GPU instance "
                        "trains on all its GPUs.")
    framework_args = {k: v for k, v in hps.items() if schema.params[k].source == "ultralytics"}
    log("hyperparameters: " + json.dumps({k: hps[k] for k in sorted(hps)}, default=str))
    log("set by: " + json.dumps({k: v for k, v in sorted(sources.items()) if v != "default"}))

    configure_offline()
    host_dir = env.host_checkpoint_dir
    run_dir = host_dir / "train"
    last = run_dir / "weights" / "last.pt"
    ds = datasets.resolve(env, hps, host_dir / "data", seed=int(hps.get("seed") or 0), log=log)
    stop.check()

    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    install_fonts(Path(USER_CONFIG_DIR))
    SETTINGS.update({"sync": False})
    quiet_progress_bars()
    log(f"ultralytics {ultralytics.__version__}; {env.num_gpus} GPU(s), {env.num_cpus} CPU(s); run folder {run_dir}")

    if "device" not in framework_args and env.num_gpus > 1:
        framework_args["device"] = ",".join(str(i) for i in range(env.num_gpus))  # ultralytics' DDP on one host
        log(f"training on {env.num_gpus} GPUs with DDP (device={framework_args['device']})")

    resume = False
    finished = False
    if not last.exists():
        channel = env.channel("checkpoint")
        given = sorted(channel.rglob("last.pt")) if channel else []
        if given:
            last.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(given[0], last)
            log(f"checkpoint channel: starting from {given[0]}")
    if last.exists():
        resume, done = read_checkpoint_state(last)
        finished = not resume
        log(f"found {last} ({'resumable, ' + str(done) + ' epoch(s) done' if resume else 'a finished run'})")

    reporter = Reporter(stop, float(hps.get("progress_interval") or 0), bool(hps.get("per_class_metrics")))
    weights_used: dict[str, str] = {}
    if finished:
        log("training already finished in an earlier attempt; packaging its results")
    else:
        common = {"data": str(ds.data_yaml), "save_dir": str(run_dir), "exist_ok": True}
        if resume:
            model = YOLO(str(last))
            weights_used[last.name] = sha256(last)
            kwargs = {**framework_args, **common, "resume": str(last)}
            log(f"resuming from {last} (sha256 {weights_used[last.name]})")
        else:
            explicit = sources.get("model", "default") != "default"
            model_name, pretrained = choose_model(hps, explicit, find_weights(env, host_dir / "weights-in"))
            for path in filter(None, (model_name if model_name.endswith(".pt") else None, pretrained)):
                weights_used[Path(path).name] = sha256(Path(path))
                log(f"weights: {path} sha256 {weights_used[Path(path).name]}")
            try:
                model = YOLO(model_name)
            except (FileNotFoundError, ValueError) as err:
                raise UserError(f"cannot build model {model_name!r}: {err}. Use a model YAML that ultralytics "
                                "ships (yolo11n.yaml, yolov8s.yaml, ...) or a .pt in the weights channel") from err
            if pretrained:
                framework_args["pretrained"] = pretrained
            kwargs = {**framework_args, **common}
        reporter.attach(model)
        with stop.deferred():
            model.train(**kwargs)
    stop.check()
    package(env, hps, ds, run_dir, reporter, weights_used, sources)


def package(env: Environment, hps: dict[str, Any], ds: datasets.Dataset, run_dir: Path,
            reporter: Reporter, weights_used: dict[str, str], sources: dict[str, str]) -> None:
    """Fill /opt/ml/model: weights, data YAML, results, arguments, plots, metrics.json, exports."""
    import ultralytics

    model_dir = env.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = run_dir / "weights"
    best = weights / "best.pt" if (weights / "best.pt").exists() else weights / "last.pt"
    if not best.exists():
        raise RuntimeError(f"training ended without weights in {weights}")
    shutil.copyfile(best, model_dir / "best.pt")
    if (weights / "last.pt").exists():
        shutil.copyfile(weights / "last.pt", model_dir / "last.pt")
    for name in ("results.csv", "args.yaml"):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, model_dir / name)
    (model_dir / "data.yaml").write_text(
        yaml.safe_dump({"nc": len(ds.names), "names": dict(enumerate(ds.names))}, sort_keys=False), encoding="utf-8")
    plots = [p for p in run_dir.iterdir() if p.suffix in (".png", ".jpg")]
    if plots:
        (model_dir / "plots").mkdir(exist_ok=True)
        for p in plots:
            shutil.copyfile(p, model_dir / "plots" / p.name)

    final = reporter.final or _final_from_results(run_dir / "results.csv")
    metrics: dict[str, Any] = {
        "final": final,
        "per_class": reporter.per_class_ap,
        "epochs_completed": reporter.epochs_done or None,
        "dataset": ds.summary(),
        "hyperparameters": hps,
        "hyperparameter_sources": {k: v for k, v in sources.items() if v != "default"},
        "weights_sha256": weights_used,
        "best_pt_sha256": sha256(model_dir / "best.pt"),
        "ultralytics_version": ultralytics.__version__,
        "job_name": env.job_name,
        "exports": {},
    }
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
    formats = _list(hps.get("export"))
    if formats:
        sample = ds.val[0]
        imgsz = hps.get("imgsz") or 640
        metrics["exports"] = export_and_verify(model_dir / "best.pt", formats, imgsz, sample, model_dir / "exports")
        (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
    log(f"model folder: {', '.join(sorted(p.name for p in model_dir.iterdir()))}")


def _final_from_results(results_csv: Path) -> dict[str, float]:
    """Final metrics from results.csv, for a run finished in an earlier attempt."""
    if not results_csv.exists():
        return {}
    import csv

    rows = list(csv.DictReader(results_csv.open(encoding="utf-8")))
    if not rows:
        return {}
    row = {k.strip(): v for k, v in rows[-1].items()}
    return {_short_key(k): float(v) for k, v in row.items() if k.startswith("metrics/")}
