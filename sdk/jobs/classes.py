"""Class names of a local dataset, read the way the image will read them (for per-class metrics).

``MetricDefinitions`` are fixed when the job is created, so per-class metrics need the class
names up front. The image takes them from the ``names`` hyperparameter, else from the data; the
SDK reads the same data before uploading it: a YOLO tree's data.yaml / classes.txt (cheap, no
image opened), else any format ``container.annotations`` reads (VOC, COCO, Ground Truth, CSV).
"""

from __future__ import annotations

from pathlib import Path

from sdk._errors import user_errors


def class_names_of(root: Path, *, data_format: str = "auto") -> list[str]:
    """The dataset's class names in id order; ConfigurationError when none can be read."""
    root = Path(root).expanduser()
    if root.is_dir() and data_format in ("auto", "yolo"):
        found = _yolo_names(root)
        if found:
            return found
    from container.annotations import read

    with user_errors(f"per_class_metrics: cannot read class names from {root} (",
                     fix="); pass class_names=[...] or the hyperparameter names"):
        return list(read(root, data_format).names)


def _yolo_names(root: Path) -> list[str] | None:
    from container.annotations.yolo_tree import search_names  # the lookup the image uses

    with user_errors("per_class_metrics: "):
        found = search_names([root])
    return list(found[0]) if found else None
