"""The trainer class the YOLO job runs: :class:`ResumableTrainer` with loaders fitted to the instance.

A module of its own (imported only after ``configure_offline()``, like resumable.py) so that
ultralytics' DDP launcher finds the class by name in its worker processes.
"""

from __future__ import annotations

from container.yolo.loader import FittedLoaders
from container.yolo.resumable import ResumableTrainer


class FedTrainer(FittedLoaders, ResumableTrainer):
    """Stops and resumes as :class:`ResumableTrainer`; builds loaders as :class:`FittedLoaders`."""
