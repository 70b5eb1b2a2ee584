"""Training images for SageMaker: the /opt/ml contract, image schemas and trainers.

* :mod:`container.contract` - the SageMaker layout (``Environment``), no side effects at import
* :mod:`container.schema`   - each image's hyperparameters, channels and metrics, declared as data
* :mod:`container.failure`  - the failure file; :mod:`container.signals` - SIGTERM
* :mod:`container.cli`      - the ``train`` and ``describe`` entry points
* :mod:`container.local`    - a local run: build an /opt/ml tree, run ``train``, pack model.tar.gz
* :mod:`container.yolo`     - the ultralytics YOLO trainer
"""

from container.contract import Environment
from container.failure import TrainingStopped, UserError
from container.schema import Schema

__all__ = ["Environment", "Schema", "TrainingStopped", "UserError"]
