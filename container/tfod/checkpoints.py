"""The TF image's checkpoints: the synced folder a restart resumes from, and the ``checkpoint`` channel.

* TensorFlow already writes each checkpoint the safe way: the tensors go to a temporary folder
  (``ckpt-N_temp/``) and are merged into ``ckpt-N.index`` + ``ckpt-N.data-*``; only then is the ``checkpoint``
  state file replaced (atomically), and ``CheckpointManager`` deletes old ones (``max_to_keep``) after that.
  What is left to us: a second SIGTERM must not raise in the middle of that Python sequence
  (``GracefulStop.shielded()`` around every save, in the trainer), and a checkpoint that was cut short
  anyway (SIGKILL, a full disk, a bad upload) must not wedge every restart (:func:`repair`).
* :func:`repair` reads every tensor of the newest checkpoint before Model Garden restores it; an unreadable
  one is renamed aside (``ckpt-N.index.corrupt``, never deleted), the state file is rewritten to the newest
  good one, and the log says where the job goes on from (an older checkpoint, or step 0).
* :func:`channel_checkpoint`: the ``checkpoint`` channel is a checkpoint to fine-tune from
  (``task.init_checkpoint``). It is read in place (nothing of it is copied into the synced folder) and
  checked before the job starts: an exported model there (what ``fetch_model`` returns) is refused.

Discovery, renaming and the state file need no TensorFlow (tested without it); ``readable`` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from container.contract import SAGEMAKER
from container.failure import UserError

STATE_FILE = "checkpoint"  # TensorFlow's name for the file that says which checkpoint is the latest
CORRUPT_SUFFIX = ".corrupt"
FINAL_EVAL = "final-eval.json"  # the last evaluation's numbers, kept with the checkpoints for a restart
_STEP = re.compile(r"-(\d+)$")

# What marks a finished, exported model: what the TF image writes to /opt/ml/model and fetch_model returns.
EXPORTED_MARKS = ("saved_model.pb", "saved_model.pbtxt", "*.tflite", "metrics.json")


def step_of(prefix: Path) -> int:
    found = _STEP.search(prefix.name)
    return int(found.group(1)) if found else -1


def prefixes(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Checkpoint prefixes (``ckpt-40`` for ``ckpt-40.index``) in ``folder``, newest (highest step) first."""
    if not folder.is_dir():
        return []
    found = folder.rglob("*.index") if recursive else folder.glob("*.index")
    return sorted((p.with_suffix("") for p in found if p.is_file()), key=lambda p: (step_of(p), str(p)), reverse=True)


def files_of(prefix: Path) -> list[Path]:
    """The files of one checkpoint: its index and its data shards."""
    return sorted(p for p in prefix.parent.glob(f"{glob_escape(prefix.name)}.*")
                  if p.name == f"{prefix.name}.index" or p.name.startswith(f"{prefix.name}.data-"))


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def quarantine(path: Path) -> Path:
    """Rename ``path`` aside (``<name>.corrupt``, ``.corrupt-2``...): kept for a post-mortem, never deleted,
    and no longer named ``*.index``, so neither TensorFlow nor :func:`prefixes` sees it again."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{n}")
        n += 1
    path.rename(target)
    return target


def read_state(folder: Path) -> str | None:
    """The ``model_checkpoint_path`` the state file names; None without one; ValueError if it is unreadable."""
    state = folder / STATE_FILE
    if not state.is_file():
        return None
    try:
        text = state.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {state}: {err}") from None
    found = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', text, re.MULTILINE)
    if not found:
        raise ValueError(f"{state} names no model_checkpoint_path")
    return found.group(1)


def write_state(folder: Path, good: list[Path]) -> None:
    """Point the state file at ``good[0]`` (newest first; all of them listed, oldest first, as TF does),
    written to a temporary name and renamed."""
    lines = [f'model_checkpoint_path: "{good[0].name}"']
    lines += [f'all_model_checkpoint_paths: "{p.name}"' for p in reversed(good)]
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)


def repair(folder: Path, readable: Callable[[Path], str | None], log: Callable[[str], None]) -> Path | None:
    """Make the newest checkpoint in ``folder`` one TensorFlow can restore; returns it (None: start from step 0).

    ``readable(prefix)`` is None for a good checkpoint, else why not. Unreadable ones are renamed aside,
    newest first, until a good one is found; the state file is rewritten when what it names changed."""
    candidates = prefixes(folder)
    try:
        named = read_state(folder)
        state_ok = True
    except ValueError as err:
        log(f"WARNING {err}; it is moved aside to {quarantine(folder / STATE_FILE).name}")
        named, state_ok = None, False
    if not candidates:
        if named is not None:
            log(f"WARNING the state file names {named} but {folder} holds no checkpoint; moved aside to "
                f"{quarantine(folder / STATE_FILE).name}: starting from step 0")
        return None
    set_aside: list[str] = []
    good: list[Path] = []
    for prefix in candidates:
        if good:
            good.append(prefix)  # older ones are kept as they are; only the one restored is read in full
            continue
        why = readable(prefix)
        if why is None:
            good.append(prefix)
            continue
        moved = [quarantine(f).name for f in files_of(prefix)]
        set_aside.append(prefix.name)
        log(f"WARNING checkpoint {prefix.name} in {folder} cannot be read ({why[:300]}); moved aside as "
            f"{', '.join(moved)}")
    if good and (set_aside or not state_ok or named is None or Path(named).name != good[0].name):
        write_state(folder, good)
    elif not good and (folder / STATE_FILE).exists():
        quarantine(folder / STATE_FILE)
    if set_aside:
        where = f"the last good checkpoint, {good[0].name} (step {step_of(good[0])})" if good else "step 0"
        log(f"tfod: resuming from {where}; {', '.join(set_aside)} set aside")
    return good[0] if good else None


def readable(prefix: Path) -> str | None:
    """None when every tensor of the checkpoint reads back (TensorFlow checks each one's CRC32C), else why not."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:
        return f"{type(err).__name__}: {' '.join(str(err).split())}"
    return None


def exported_model_files(folder: Path) -> list[Path]:
    return sorted({p for mark in EXPORTED_MARKS for p in folder.rglob(mark)})


def channel_checkpoint(folder: Path, readable: Callable[[Path], str | None], log: Callable[[str], None]) -> Path:
    """The checkpoint to fine-tune from in the ``checkpoint`` channel: the newest readable one. An exported
    model, or a channel with no readable checkpoint, is a user error (named, with the fix)."""
    exported = exported_model_files(folder)
    if exported:
        shown = ", ".join(str(p.relative_to(folder)) for p in exported[:4])
        raise UserError(
            f"channel 'checkpoint' holds an exported model ({shown}), what the job wrote to {SAGEMAKER.model} and "
            "fetch_model returns; it is not a training checkpoint. To fine-tune, give the checkpoint folder of the "
            "job that trained it (<its CheckpointConfig S3 URI>/algo-1/model/, with ckpt-N.index and "
            "ckpt-N.data-* files) as 'checkpoint'; to resume a stopped job, start it with the same checkpoint "
            "location instead.")
    found = prefixes(folder, recursive=True)
    if not found:
        raise UserError(f"channel 'checkpoint' holds no TF checkpoint (*.index + *.data-*) in {folder}")
    bad: list[str] = []
    for prefix in found:
        why = readable(prefix)
        if why is None:
            if bad:
                log(f"WARNING channel 'checkpoint': {'; '.join(bad)}; fine-tuning from {prefix.name}, the newest "
                    "that reads back")
            return prefix
        bad.append(f"{prefix.name} cannot be read ({why[:200]})")
    raise UserError(f"channel 'checkpoint' holds no readable TF checkpoint: {'; '.join(bad)[:600]}. "
                    "Give an intact one (ckpt-N.index with all its ckpt-N.data-* files).")


def folder_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) under ``folder``: what SageMaker syncs to S3 from the checkpoint folder."""
    files = total = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                files += 1
                total += path.stat().st_size
    return files, total
