"""Training images for SageMaker: the /opt/ml contract, image schemas and trainers.

* :mod:`container.contract` - the SageMaker layout (``Environment``), no side effects at import
* :mod:`container.schema`   - each image's hyperparameters, channels and metrics, declared as data
* :mod:`container.failure`  - the failure file; :mod:`container.signals` - SIGTERM
* :mod:`container.cli`      - the ``train`` and ``describe`` entry points
* :mod:`container.local`    - a local run: build an /opt/ml tree, run ``train``, pack model.tar.gz
* :mod:`container.yolo`     - the ultralytics YOLO trainer
"""

from importlib.metadata import PackageNotFoundError, version

from container.contract import Environment
from container.failure import TrainingStopped, UserError
from container.schema import Schema

try:  # declared once, in pyproject.toml
    __version__ = version("sm-detectors")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Environment", "Schema", "TrainingStopped", "UserError", "__version__"]
