"""What every YOLO job does before training, on one instance or several: nothing fetched at run time,
fonts baked in, the weights channel read, the model chosen, the checkpoint folder reported.

Shared by :mod:`container.yolo.trainer` (one instance) and :mod:`container.yolo.distributed` (several),
so neither imports the other.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from container.archive import safe_extract
from container.contract import SAGEMAKER, Environment
from container.failure import UserError
from container.yolo.report import log

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


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


def choose_model(hps: Mapping[str, Any], explicit: bool, weights: list[Path]) -> tuple[str, str | None]:
    """(model for ``YOLO()``, pretrained weights path or None). Nothing that would make ultralytics download: a
    ``.pt`` (``model``, or a ``pretrained`` path) must be in the weights channel, a model YAML with a folder must be
    there (the schema has already refused URLs and names without a suffix, which ultralytics fetches)."""
    model, pretrained = _choose_model(hps, explicit, weights)
    wanted = hps["pretrained"]
    if isinstance(wanted, str) and wanted.strip():
        found = [w for w in weights if w.name == Path(wanted).name]
        if not found:
            have = ", ".join(w.name for w in weights) or "no weights channel"
            raise UserError(f"pretrained {wanted!r} is not in the weights channel ({have}). The image downloads "
                            "nothing: upload the .pt as the 'weights' channel and name it, or set pretrained=true")
        if not model.endswith(".pt"):
            pretrained = str(found[0])
    return model, pretrained


def _choose_model(hps: Mapping[str, Any], explicit: bool, weights: list[Path]) -> tuple[str, str | None]:
    model = str(hps["model"])
    if model.lower().endswith((".yaml", ".yml")) and Path(model).name != model and not Path(model).is_file():
        raise UserError(f"model {model!r} is no file: give a model YAML that ultralytics ships by its name "
                        "(yolo11n.yaml, yolov8s.yaml, ...), or the full path of one in a channel "
                        f"({SAGEMAKER.channel('cfg') / 'my-model.yaml'})")
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


# -- the job -------------------------------------------------------------------------------------
def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    total = count = 0
    for item in path.rglob("*") if path.is_dir() else ():
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
            count += 1
    return total, count


def log_checkpoint_folder(path: Path, when: str) -> None:
    size, files = folder_size(path)
    log(f"checkpoint folder {path} {when}: {files} file(s), {size / 2**20:.1f} MiB (synced to S3 when the job "
        "has a checkpoint location)")
