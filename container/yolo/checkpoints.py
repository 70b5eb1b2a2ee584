"""Checkpoints that never wedge a job: checked before use, written whole or not at all, scrubbed of secrets.

The run folder ``/opt/ml/checkpoints/<host>/train`` is synced to S3 while the job runs, so whatever
is in it when a job stops is what the next attempt starts from. Rules kept here:

* a checkpoint is read (``torch.load``) before it is trusted; one that cannot be read is *moved
  aside* (``last.pt`` -> ``last.pt.damaged-1``), never deleted, and the job goes on from the next
  good one: ``last.pt``, else ``best.pt``, else from scratch, and says which;
* the ``checkpoint`` channel is checked before anything from it is copied into the run folder; a
  finished model there (no optimizer state: what ``fetch_model`` returns) is refused, since
  resuming it would "succeed" without training;
* files are written under a temporary name, flushed and renamed (``os.replace``), so a reader (or
  the next attempt) sees the previous good file or the new complete one, never half of one;
* credentials ultralytics records (``git.origin`` with a token in it) are removed.

Trust: ultralytics checkpoints are whole pickled ``nn.Module`` objects, which ``torch.load`` can
only read with ``weights_only=False``: loading one runs code the file names. Checkpoint and weights
channels are therefore trusted input, like the image itself (docs/lifecycle.md says so).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.failure import UserError

PARTIAL = ".partial"  # suffix of a file being written; never read as a checkpoint
DAMAGED = ".damaged-"  # suffix of a checkpoint moved aside
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # user:token@ in scheme://user:token@host/...


class BadCheckpoint(Exception):
    """A file that is not a readable ultralytics checkpoint."""


@dataclass(frozen=True)
class State:
    path: Path
    epochs_done: int  # epochs the checkpoint has finished (its ``epoch`` + 1)
    epochs: int  # epochs its run was asked for
    resumable: bool  # optimizer state present: an unfinished run

    @property
    def finished(self) -> bool:
        """Training is over: a stripped final checkpoint, or one saved after the last epoch."""
        return not self.resumable or self.epochs_done >= self.epochs


# -- files -----------------------------------------------------------------------------------------
def publish(tmp: Path, dest: Path) -> None:
    """Make the fully written ``tmp`` the file ``dest`` in one step; ``dest`` stays as it was until then."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    try:
        fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # the rename itself survives a crash
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + PARTIAL)
    tmp.write_bytes(data)
    publish(tmp, dest)


def copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + PARTIAL)
    shutil.copyfile(src, tmp)
    publish(tmp, dest)


def move_aside(path: Path) -> Path:
    """Rename a damaged file out of the way (kept for a post-mortem), never over an earlier one."""
    n = 1
    while (target := path.with_name(f"{path.name}{DAMAGED}{n}")).exists():
        n += 1
    os.replace(path, target)
    return target


# -- reading ---------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    """The checkpoint as a dict; :class:`BadCheckpoint` when it is truncated, not a torch file, or not ultralytics'."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # full modules: see the trust note above
    except Exception as err:
        raise BadCheckpoint(f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}") from err
    if not isinstance(ckpt, dict) or not (ckpt.get("ema") is not None or ckpt.get("model") is not None):
        raise BadCheckpoint("not an ultralytics checkpoint (no model in it)")
    return ckpt


def inspect(path: Path) -> State:
    ckpt = load(path)
    args = ckpt.get("train_args") or {}
    epoch = int(ckpt.get("epoch", -1))
    return State(path=path, epochs_done=epoch + 1, epochs=int(args.get("epochs") or 0),
                 resumable=ckpt.get("optimizer") is not None)


def resume_point(weights: Path, log: Callable[[str], None]) -> State | None:
    """The checkpoint to go on from in this host's run folder, damaged ones moved aside; None: from scratch."""
    for stale in weights.glob(f"*{PARTIAL}"):  # a write a kill interrupted: never complete, never used
        stale.unlink()
    good: dict[str, State] = {}
    damaged = []
    for name in ("last.pt", "best.pt"):
        path = weights / name
        if not path.exists():
            continue
        try:
            good[name] = inspect(path)
        except BadCheckpoint as err:
            moved = move_aside(path)
            damaged.append(name)
            log(f"WARNING checkpoint {path} cannot be read ({err}); moved aside to {moved.name}")
    if "last.pt" in good:
        return good["last.pt"]
    if "best.pt" in good:
        best = good["best.pt"]
        copy_atomic(best.path, weights / "last.pt")
        log(f"going on from best.pt ({best.epochs_done} epoch(s) done"
            + (", resumable)" if best.resumable else ", training finished)") + " since last.pt "
            + ("was damaged" if damaged else "is missing"))
        return inspect(weights / "last.pt")
    if damaged:
        log("WARNING no readable checkpoint left in " + str(weights) + ": training from scratch")
    return None


def from_channel(channel: Path, run_dir: Path, log: Callable[[str], None]) -> None:
    """Check the ``checkpoint`` channel's last.pt, then copy it (and its results.csv) into the run folder."""
    found = sorted(channel.rglob("last.pt")) or sorted(p for p in channel.rglob("*.pt") if p.is_file())
    if not found:
        log("checkpoint channel: no .pt file in it, training from scratch")
        return
    if len(found) > 1 and found[0].name != "last.pt":
        raise UserError("checkpoint channel holds several .pt files and no last.pt ("
                        + ", ".join(str(p.relative_to(channel)) for p in found[:5])
                        + "): give it the last.pt of the run to resume")
    given = found[0]
    rel = given.relative_to(channel)
    try:
        state = inspect(given)
    except BadCheckpoint as err:
        raise UserError(f"checkpoint channel: {rel} is not a readable ultralytics checkpoint ({err}). Give the "
                        "channel the last.pt of an unfinished run, or leave the channel out to train from "
                        "scratch") from None
    if state.finished:
        raise UserError(f"checkpoint channel: {rel} is a finished model ({state.epochs_done} epoch(s), no optimizer "
                        "state left to resume). To train on from it, pass it (or its model.tar.gz) as the 'weights' "
                        "channel instead; the checkpoint channel is for the last.pt of a stopped run")
    copy_atomic(given, run_dir / "weights" / "last.pt")
    results = given.parent.parent / "results.csv"
    if results.is_file() and results.is_relative_to(channel):
        copy_atomic(results, run_dir / "results.csv")
    log(f"checkpoint channel: resuming from {rel} ({state.epochs_done} of {state.epochs} epoch(s) done)")


# -- results.csv -----------------------------------------------------------------------------------
def trim_results(results: Path, epochs_done: int) -> int:
    """Drop rows after epoch ``epochs_done`` (epochs the resumed run will do again); how many went."""
    if not results.is_file():
        return 0
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return 0
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        try:
            epoch = int(float(row[0]))
        except (IndexError, ValueError):
            continue  # a line cut short by a kill
        if epoch <= epochs_done:
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        write_atomic(results, "".join(kept).encode("utf-8"))
    return dropped


# -- secrets -------------------------------------------------------------------------------------
def scrub_url(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``; other text unchanged."""
    return _USERINFO.sub("", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_url(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def scrub_git_info() -> None:
    """Make ultralytics record the origin URL without credentials in every checkpoint it saves from now on."""
    from ultralytics.utils import GIT

    origin = GIT.origin  # a cached property: read once, then replaced in the instance
    GIT.__dict__["origin"] = scrub_url(origin) if origin else origin


def scrub_checkpoint(path: Path) -> bool:
    """Remove URL credentials from a checkpoint's ``git`` and ``train_args`` records; True if it changed."""
    import torch

    ckpt = load(path)
    changed = False
    for key in ("git", "train_args"):
        if isinstance(ckpt.get(key), dict):
            clean = _scrub(ckpt[key])
            if clean != ckpt[key]:
                ckpt[key], changed = clean, True
    if changed:
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        write_atomic(path, buffer.getvalue())
    return changed
