"""ultralytics' detection trainer in a torchrun worker of a job on several instances.

Imported only in a worker (it imports ultralytics). ultralytics 8.4 tolerates being started by torchrun
(it honours ``LOCAL_RANK``) but breaks across machines in three places, each fixed where it is decided:

* ``world_size`` is the local device list (``__init__``): here it is torchrun's ``WORLD_SIZE``, so
  ``batch`` stays the global batch (each rank loads ``batch // WORLD_SIZE``) and the samplers split the
  data over all ranks of all hosts;
* with one GPU per node (or none) the distributed set-up was skipped, and ``_setup_ddp`` indexes the
  device list by ``LOCAL_RANK``: here the process group is already up (ddp_worker.py, with the
  ``dist_timeout``), ``_setup_ddp`` only picks ``cuda:LOCAL_RANK`` or the CPU, and on the CPU the
  model is wrapped in DDP without ``device_ids`` (ultralytics passes ``[None]``, which DDP refuses);
* ``final_eval`` validated ``best.pt`` only where that file exists (the leader) while validation
  gathers across ranks: the other hosts waited forever. Here the workers only strip the checkpoints;
  the leader's launcher evaluates ``best.pt`` in one process after the workers end (package.py).

These are overrides of private methods, so they hold for one ultralytics version: :func:`check_version`
refuses any other until someone re-reads ``engine/trainer.py`` and moves the pin.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from ultralytics.engine import trainer as engine_trainer
from ultralytics.utils import LOCAL_RANK, RANK
from ultralytics.utils.torch_utils import strip_optimizer

from container.yolo.loader import FittedLoaders
from container.yolo.resumable import ResumableTrainer

CHECKED_VERSION = "8.4.190"  # engine/trainer.py read for the overrides below


def check_version() -> None:
    import ultralytics

    if ultralytics.__version__ != CHECKED_VERSION:
        raise RuntimeError(f"multi-instance training was checked against ultralytics {CHECKED_VERSION}, this image "
                           f"has {ultralytics.__version__}: re-read ultralytics/engine/trainer.py (_setup_ddp, "
                           "_setup_train's DDP wrap, final_eval) against container/yolo/ddp_trainer.py, then move "
                           "CHECKED_VERSION")


class DistributedTrainer(FittedLoaders, ResumableTrainer):
    """Loaders fitted to this host's CPUs, memory and /dev/shm (loader.py), stops and resumes as
    :class:`ResumableTrainer`, the overrides above for torchrun across machines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_version()
        super().__init__(*args, **kwargs)
        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer runs in a torchrun worker after ddp_worker set up the group")
        self.world_size = int(os.environ["WORLD_SIZE"])  # all ranks of all hosts, not this host's devices
        self.ddp = False  # already a worker: never spawn ultralytics' own launcher

    def _setup_ddp(self) -> None:
        if torch.cuda.is_available() and dist.get_backend() == "nccl":
            self.device = torch.device("cuda", LOCAL_RANK)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")

    def _setup_train(self) -> None:
        with _cpu_ddp(self.device.type == "cpu"):
            super()._setup_train()

    def final_eval(self) -> None:
        if RANK == 0:  # what ultralytics does before validating; the validation runs after the workers end
            ckpt = strip_optimizer(self.last) if self.last.exists() else {}
            if self.best.exists():
                strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})


@contextlib.contextmanager
def _cpu_ddp(on_cpu: bool) -> Iterator[None]:
    """Within the block, ultralytics' ``nn.parallel.DistributedDataParallel(..., device_ids=[None])`` drops
    ``device_ids`` on the CPU, as DDP requires there. Only ``engine/trainer.py``'s name ``nn`` is swapped."""
    if not on_cpu:
        yield
        return
    real_nn = engine_trainer.nn

    def cpu_ddp(module: torch.nn.Module, *args: Any, device_ids: Any = None, **kwargs: Any) -> Any:
        return real_nn.parallel.DistributedDataParallel(module, *args, **kwargs)

    shim = types.SimpleNamespace(parallel=types.SimpleNamespace(DistributedDataParallel=cpu_ddp))
    proxy = _Proxy(real_nn, shim)
    engine_trainer.nn = proxy  # type: ignore[assignment]
    try:
        yield
    finally:
        engine_trainer.nn = real_nn


class _Proxy(types.ModuleType):
    """torch.nn with ``parallel`` replaced; everything else read from torch.nn."""

    def __init__(self, real: types.ModuleType, shim: types.SimpleNamespace) -> None:
        super().__init__(real.__name__)
        self._real, self.parallel = real, shim.parallel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
