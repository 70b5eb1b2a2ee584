"""ultralytics' detection trainer, made safe to stop at any batch and to resume without loss.

Imported only after ``configure_offline()`` (it imports ultralytics). Three changes to
``DetectionTrainer``, each where ultralytics decides the matter:

* ``run_callbacks``: after each batch, a SIGTERM recorded by :class:`GracefulStop` saves a
  checkpoint *with the interrupted epoch marked not done* (``epoch`` = interrupted - 1), so the
  resumed run trains that epoch again from the weights saved at the stop. ultralytics' own stop
  handler saved it as done: a stop mid-epoch skipped the epoch, a stop in the last epoch left a
  checkpoint ultralytics refuses ("nothing to resume"). On several GPUs the ranks agree on the
  stop (one all-reduce per batch) so they leave the loop at the same batch, and rank 0 saves.
* ``save_model``: ultralytics writes ``last.pt``/``best.pt`` in place; here they are written under a
  temporary name and renamed, with further signals held off until both are in place.
* ``run_callbacks("on_fit_epoch_end")`` and ``final_eval``: a stop that arrived after the epoch's last
  batch (during its validation) ends the job once the epoch's checkpoint is saved, the epoch counted
  as done; in the last epoch that is before the final evaluation, which the restart runs (with the
  packaging). A stop during the final evaluation ends it at the next batch: training is saved.
* ``resume_training``: a checkpoint saved in the first epoch (``epoch`` = -1) resumes at epoch 1
  (ultralytics asserts a start epoch above 0), and ``results.csv`` loses rows after the
  checkpoint's epoch so that every epoch appears once.

In a DDP worker (a process ultralytics starts) no :class:`GracefulStop` was installed by the job:
the trainer installs its own, and the launcher forwards the job's SIGTERM to it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK

from container.failure import TrainingStopped
from container.signals import GracefulStop, pause_point
from container.yolo import checkpoints


class ResumableTrainer(DetectionTrainer):
    graceful: GracefulStop | None = None  # the job's, set before training; a DDP worker installs its own

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        checkpoints.scrub_git_info()
        if ResumableTrainer.graceful is None:  # a DDP worker: the stop is acted on between batches
            ResumableTrainer.graceful = GracefulStop(deferred=True).install()
        self._stop_save = False
        self._in_final_eval = False

    # -- stopping ------------------------------------------------------------------------------------
    def run_callbacks(self, event: str) -> None:
        if event == "on_train_epoch_start" and RANK in {-1, 0}:
            pause_point(f"epoch-start:{self.epoch + 1}", ResumableTrainer.graceful)
        super().run_callbacks(event)
        if event == "on_train_batch_end":
            self._stop_if_asked()
        elif event == "on_train_epoch_end" and RANK in {-1, 0}:
            pause_point(f"epoch-end:{self.epoch + 1}", ResumableTrainer.graceful)
        elif event == "on_fit_epoch_end" and not self._in_final_eval and self._asked():
            # the epoch is validated and its checkpoint saved (epoch done): nothing is lost by stopping here
            raise TrainingStopped(f"stopped by SIGTERM after epoch {self.epoch + 1}/{self.epochs}; checkpoint "
                                  f"saved to {self.last} (epoch {self.epoch + 1} done"
                                  + ("; the restart runs the final evaluation and packages)"
                                     if self.epoch + 1 >= self.epochs else "; the restart goes on with the next)"))
        elif event == "on_val_batch_end" and self._in_final_eval and self._asked():
            raise TrainingStopped("stopped by SIGTERM during the final evaluation; training is finished and "
                                  f"saved to {self.last} (the restart evaluates and packages)")

    def final_eval(self) -> None:
        pause_point("final-eval", ResumableTrainer.graceful)
        if self._asked():  # pending since the last epoch: the restart evaluates; SIGKILL comes 120 s after SIGTERM
            raise TrainingStopped(f"stopped by SIGTERM before the final evaluation; training is finished and saved "
                                  f"to {self.last} (the restart evaluates and packages)")
        self._in_final_eval = True
        try:
            super().final_eval()
        finally:
            self._in_final_eval = False

    def _asked(self) -> bool:
        """A stop was requested (on any rank, when training on several)."""
        graceful = ResumableTrainer.graceful
        asked = graceful is not None and graceful.requested is not None
        if self.world_size > 1 and not self._in_final_eval:
            asked = _any_rank(asked, self.device)
        return asked

    def _stop_if_asked(self) -> None:
        if not self._asked():
            return
        if RANK in {-1, 0}:
            epoch = self.epoch
            self.epoch, self._stop_save = epoch - 1, True  # the interrupted epoch is not done: resume redoes it
            try:
                self.save_model()
            finally:
                self.epoch, self._stop_save = epoch, False
        raise TrainingStopped(f"stopped by SIGTERM in epoch {self.epoch + 1}/{self.epochs}; checkpoint saved to "
                              f"{self.last} (epoch {self.epoch + 1} is trained again on restart)")

    # -- saving ----------------------------------------------------------------------------------------
    def save_model(self) -> bool:
        last, best = self.last, self.best
        tmp_last = last.with_name(last.name + checkpoints.PARTIAL)
        tmp_best = best.with_name(best.name + checkpoints.PARTIAL)
        graceful = ResumableTrainer.graceful
        with graceful.shielded() if graceful is not None else contextlib.nullcontext():
            self.last, self.best = tmp_last, tmp_best
            try:
                saved = super().save_model()
            finally:
                self.last, self.best = last, best
            if tmp_last.exists():
                checkpoints.publish(tmp_last, last)
            if tmp_best.exists():
                if self._stop_save:  # mid-epoch weights never become best.pt
                    tmp_best.unlink()
                else:
                    checkpoints.publish(tmp_best, best)
        return saved

    # -- resuming --------------------------------------------------------------------------------------
    def resume_training(self, ckpt: dict | None) -> None:
        if ckpt is not None and self.resume and int(ckpt.get("epoch", -1)) == -1:
            # stopped in the first epoch: its weights and optimizer state, and epoch 1 to train again
            LOGGER.info(f"Resuming training {self.args.model} from epoch 1 to {self.epochs} total epochs")
            self._load_checkpoint_state(ckpt)
            self.start_epoch = 0
        else:
            super().resume_training(ckpt)
        if self.resume and RANK in {-1, 0}:
            dropped = checkpoints.trim_results(self.csv, self.start_epoch)
            if dropped:
                LOGGER.info(f"results.csv: {dropped} row(s) after epoch {self.start_epoch} removed (trained again)")


def _any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when any rank has the flag: the ranks leave the loop at the same batch."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
