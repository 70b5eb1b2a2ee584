"""Class names of a local dataset, read the way the image will read them (for per-class metrics).

``MetricDefinitions`` are fixed when the job is created, so per-class metrics need the class
names up front. The image takes them from the ``names`` hyperparameter, else from the data; the
SDK reads the same data before uploading it: a YOLO tree's data.yaml / classes.txt (cheap, no
image opened), else any format ``container.annotations`` reads (VOC, COCO, Ground Truth, CSV).
"""

from __future__ import annotations

from pathlib import Path

from container.failure import UserError
from sdk._errors import ConfigurationError


def class_names_of(root: Path, *, data_format: str = "auto") -> list[str]:
    """The dataset's class names in id order; ConfigurationError when none can be read."""
    root = Path(root).expanduser()
    if root.is_dir() and data_format in ("auto", "yolo"):
        found = _yolo_names(root)
        if found:
            return found
    from container.annotations import read

    try:
        return list(read(root, data_format).names)
    except UserError as err:
        raise ConfigurationError(f"per_class_metrics: cannot read class names from {root} ({err}); pass "
                                 "class_names=[...] or the hyperparameter names") from None


def _yolo_names(root: Path) -> list[str] | None:
    from container.annotations.yolo_tree import search_names  # the lookup the image uses

    try:
        found = search_names([root])
    except UserError as err:
        raise ConfigurationError(f"per_class_metrics: {err}") from None
    return list(found[0]) if found else None
