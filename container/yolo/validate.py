"""Start-time checks of a YOLO job's inputs: a bad value fails in seconds as a user error (exit 2).

ultralytics checks most arguments only when it reaches them (an optimizer typo at the first step,
with a traceback), and some not at all (``epochs=0`` "trains" nothing; ``lr0=nan`` trains to NaN).
Each message names the key, the value (cut short: SageMaker keeps 1,024 characters) and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from container.contract import Environment, count_gpus
from container.failure import UserError, plain, shorten

# ultralytics' optimizer names (BaseTrainer.build_optimizer keeps them in a local set; a unit test
# reads that source so this copy cannot drift).
OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop")
CACHE_CHOICES = ("true", "false", "ram", "disk")  # ultralytics reads any other string as True (ram)
MAX_IMGSZ = 8192  # 8K: beyond it one image is larger than any GPU's memory allows at batch 1


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _numbers(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


def check_environment(env: Environment) -> None:
    """The layout itself: this host among ``hosts``, each channel a folder."""
    if env.current_host not in env.hosts:
        raise UserError(f"resourceconfig.json: current_host {shorten(env.current_host, 40)!r} is not in hosts "
                        f"({shorten(', '.join(env.hosts), 200)}). Give every host's name in hosts, this one included")
    for name, path in env.channels.items():
        if not path.is_dir():
            raise UserError(f"channel {name!r} is a file ({path}), not a folder. A channel is an S3 prefix (a folder): "
                            f"put the file in a folder and give that folder's prefix")


def check_values(hps: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Every problem at once: NUL bytes, NaN/inf, epochs, imgsz, optimizer."""
    problems = []

    def where(key: str) -> str:
        origin = sources.get(key, "default")
        return f"{key!r}" + (f" (from {origin})" if origin not in ("default", "hyperparameters") else "")

    for key, value in hps.items():
        if any("\x00" in s for s in _strings(value)):
            shown = shorten(str(value).replace("\x00", "\\0"), 60)
            problems.append(f"{where(key)} holds a NUL byte ({shown}): remove it")
        if any(not math.isfinite(n) for n in _numbers(value)):
            problems.append(f"{where(key)} must be a finite number, got {shorten(str(value), 40)}")
    epochs = hps.get("epochs")
    if isinstance(epochs, int) and epochs < 1:
        problems.append(f"{where('epochs')} must be at least 1, got {epochs}")
    imgsz = hps.get("imgsz")
    sizes = imgsz if isinstance(imgsz, list) else [imgsz]
    if imgsz is not None and (not 1 <= len(sizes) <= 2 or any(  # [] was an int() TypeError traceback in training
            not isinstance(s, (int, float)) or isinstance(s, bool) or not 32 <= s <= MAX_IMGSZ for s in sizes)):
        problems.append(f"{where('imgsz')} must be between 32 and {MAX_IMGSZ} pixels, got {shorten(str(imgsz), 40)}")
    optimizer = hps.get("optimizer")
    if optimizer is not None and str(optimizer).lower() not in {o.lower() for o in OPTIMIZERS}:
        problems.append(f"{where('optimizer')} {shorten(str(optimizer), 40)!r} is not one of ultralytics' "
                        f"optimizers: {', '.join(OPTIMIZERS)}")
    cache = hps.get("cache")
    if cache is not None and not isinstance(cache, bool) and str(cache).lower() not in CACHE_CHOICES:
        problems.append(f"{where('cache')} must be true, false, ram or disk, got {shorten(str(cache), 40)!r}")
    if problems:
        raise UserError("; ".join(problems))


def check_devices(hps: Mapping[str, Any], sources: Mapping[str, str], gpus: int) -> None:
    """``device`` against this instance: a GPU index it does not have (``device=0`` on a CPU instance) is the user's
    to fix (ultralytics' own refusal comes later, as a ValueError traceback). ``cpu``, ``-1`` (any free GPU) and
    no value (the image's choice: every GPU) always fit."""
    device = hps.get("device")
    if device is None or isinstance(device, bool):
        return
    items = device if isinstance(device, list) else str(device).replace(" ", "").split(",")
    wanted = []
    for item in items:
        text = str(item).strip().lower().removeprefix("cuda:")
        if text in ("", "cpu", "-1"):
            continue
        if not text.isdigit():
            raise UserError(f"{where(sources, 'device')} {shorten(str(device), 40)!r} is no device of this "
                            "instance: give GPU indexes (0 or 0,1), cpu, or leave it out to use every GPU")
        wanted.append(int(text))
    if wanted and max(wanted) >= gpus:
        have = f"GPUs 0..{gpus - 1}" if gpus else "no GPU"
        raise UserError(f"{where(sources, 'device')} {shorten(str(device), 40)!r} asks for GPU {max(wanted)}, this "
                        f"instance has {have}: leave device out (the image uses every GPU there is), set device=cpu, "
                        "or choose a GPU instance type")


def where(sources: Mapping[str, str], key: str) -> str:
    origin = sources.get(key, "default")
    return f"{key!r}" + (f" (from {origin})" if origin not in ("default", "hyperparameters") else "")


def check_framework_args(args: dict[str, Any], gpus: int | None = None) -> None:
    """ultralytics' own argument check (types, ranges, choices such as amp and quantize), run now, not mid-job,
    and ``device`` against this instance's ``gpus`` (default: those it has).

    Its errors (SyntaxError for unknown keys, TypeError/ValueError for values) are a user's to fix.
    """
    from ultralytics.cfg import get_cfg

    check_devices(args, {}, count_gpus() if gpus is None else gpus)

    try:
        get_cfg(overrides={k: v for k, v in args.items() if v is not None or k == "amp"})
    except (SyntaxError, TypeError, ValueError) as err:
        text = " ".join(plain(str(err)).split()).rstrip(".")
        raise UserError(f"ultralytics refuses the arguments: {shorten(text, 700)}. Run `describe` for each "
                        "argument's type and default") from None
