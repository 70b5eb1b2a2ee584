"""The model folder: weights, data YAML, results, metrics.json and verified exports, all or nothing.

SageMaker uploads whatever ``/opt/ml/model`` holds when the job ends, stopped jobs included. So the
folder is assembled in the scratch folder (exports included, each built and run there) and moved
into ``/opt/ml/model`` only when complete: a stop during packaging or export leaves the model
folder empty, exits 143, and the next attempt packages again from the checkpoint folder.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from container.archive import sha256
from container.contract import Environment
from container.failure import TrainingStopped
from container.schema import Hyperparameters
from container.signals import GracefulStop, pause_point
from container.yolo import checkpoints
from container.yolo import dataset as datasets
from container.yolo.report import Reporter, _short_key, export_formats, log


def export_and_verify(best: Path, formats: list[str], imgsz: Any, sample: Path, dest: Path,
                      stop: GracefulStop) -> dict[str, Any]:
    """Export best.pt to each format, load each export and run it on one image before it counts."""
    from ultralytics import YOLO

    results: dict[str, Any] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        log(f"export: {fmt} ...")
        stop.check()  # a stop pending since the last export: nothing more is started
        started = time.monotonic()
        pause_point(f"export:{fmt}", stop)
        try:
            exported = Path(YOLO(str(best)).export(format=fmt, imgsz=imgsz))
            # Any: ultralytics annotates predict as returning tensors or a generator too (modes not used here)
            detections: Any = YOLO(str(exported), task="detect").predict(str(sample), imgsz=imgsz, verbose=False)
        except TrainingStopped:
            raise
        except Exception as err:
            if stop.requested is not None:  # an exporter that wrapped the stop in its own error
                raise TrainingStopped(f"stopped by SIGTERM during the {fmt} export") from err
            raise RuntimeError(f"export to {fmt} failed: {type(err).__name__}: {err}") from err
        target = dest / exported.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(exported), target)
        results[fmt] = {"path": str(target.relative_to(dest.parent)), "verified_on": sample.name,
                        "detections": len(detections[0].boxes), "seconds": round(time.monotonic() - started, 1)}
        log(f"export: {fmt} -> {target.name}, ran on {sample.name}: {results[fmt]['detections']} detections")
    return results


def final_metrics(reporter: Reporter, best: Path, ds: datasets.Dataset, hps: Hyperparameters) -> None:
    """The final evaluation after a restart that found training finished: kept from before, else run again."""
    if reporter.restore_final():
        return
    from ultralytics import YOLO

    log(f"final evaluation of {best.name} (not done in training: a restart after a stop, or a job on several "
        "instances, where the leader runs it after the workers end)")
    # loader workers only when the job asked for them: this evaluation runs in the job's own process, after training
    workers = hps["workers"] if hps.is_set("workers") else 0
    validator_metrics = YOLO(str(best)).val(data=str(ds.data_yaml), imgsz=hps["imgsz"], batch=hps["batch"],
                                            workers=workers, plots=False, verbose=False)
    final = {_short_key(k): float(v) for k, v in validator_metrics.results_dict.items() if k != "fitness"}

    class _Validator:  # what report_final reads of ultralytics' validator
        metrics = validator_metrics
        names = validator_metrics.names

    reporter.report_final(final, _Validator())


def package(env: Environment, hps: Hyperparameters, ds: datasets.Dataset, run_dir: Path, reporter: Reporter,
            weights_used: dict[str, str], stop: GracefulStop) -> None:
    """Fill /opt/ml/model: weights, data YAML, results, arguments, plots, metrics.json, exports."""
    import ultralytics

    weights = run_dir / "weights"
    best = weights / "best.pt" if (weights / "best.pt").exists() else weights / "last.pt"
    if not best.exists():
        raise RuntimeError(f"training ended without weights in {weights}")
    if not reporter.final:
        final_metrics(reporter, best, ds, hps)
    stage = env.scratch_dir / "model"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copyfile(best, stage / "best.pt")
    if (weights / "last.pt").exists():
        shutil.copyfile(weights / "last.pt", stage / "last.pt")
    for name in ("best.pt", "last.pt"):
        if (stage / name).exists() and checkpoints.scrub_checkpoint(stage / name):
            log(f"{name}: credentials removed from the git origin URL ultralytics recorded")
        if (stage / name).exists() and checkpoints.inspect(stage / name).resumable:
            strip_final(stage / name)
    for name in ("results.csv", "args.yaml"):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, stage / name)
    (stage / "data.yaml").write_text(
        yaml.safe_dump({"nc": len(ds.names), "names": dict(enumerate(ds.names))}, sort_keys=False), encoding="utf-8")
    plots = [p for p in run_dir.iterdir() if p.suffix in (".png", ".jpg")]
    if plots:
        (stage / "plots").mkdir(exist_ok=True)
        for p in plots:
            shutil.copyfile(p, stage / "plots" / p.name)

    metrics: dict[str, Any] = {
        "final": reporter.final,
        "per_class": reporter.per_class_ap,
        "epochs_completed": _epochs_in(run_dir / "results.csv") or reporter.epochs_done or None,
        "dataset": ds.summary(),
        "hyperparameters": hps.shown(),
        "hyperparameter_sources": hps.set_sources(),
        "weights_sha256": weights_used,
        "best_pt_sha256": sha256(stage / "best.pt"),
        "ultralytics_version": ultralytics.__version__,
        "job_name": env.job_name,
        "exports": {},
    }
    formats = export_formats(hps["export"])
    if formats:
        metrics["exports"] = export_and_verify(stage / "best.pt", formats, hps["imgsz"], ds.val[0], stage / "exports",
                                               stop)
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
    publish_model(stage, env.model_dir, stop)
    log(f"model folder: {', '.join(sorted(p.name for p in env.model_dir.iterdir()))}")


def strip_final(path: Path) -> None:
    """Optimizer state out, as ultralytics' final evaluation does: the training that ended before it (a stop
    before the final evaluation, or the workers of a job on several instances) packages the same weights."""
    from ultralytics.utils.torch_utils import strip_optimizer

    strip_optimizer(str(path))
    log(f"{path.name}: optimizer state removed (as after ultralytics' final evaluation)")


def publish_model(stage: Path, model_dir: Path, stop: GracefulStop) -> None:
    """Move the complete folder's entries into /opt/ml/model, a signal held off until the last is in."""
    pause_point("package", stop)
    stop.check()
    model_dir.mkdir(parents=True, exist_ok=True)
    with stop.shielded():
        for item in sorted(stage.iterdir()):
            target = model_dir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(item), target)
    stage.rmdir()


def _epochs_in(results_csv: Path) -> int:
    """The last epoch results.csv records."""
    if not results_csv.exists():
        return 0
    rows = list(csv.reader(results_csv.open(encoding="utf-8")))[1:]
    try:
        return max(int(float(r[0])) for r in rows if r)
    except ValueError:
        return 0
