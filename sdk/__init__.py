"""Launch and follow training jobs of this project's images (see the SDK issue for what is coming).

For now: the images' schemas, so a notebook can validate hyperparameters and build
``MetricDefinitions`` from the same data the image reads.
"""

from container.schema import Schema


def image_schema(image: str = "yolo") -> Schema:
    """The schema an image reads at run time (hyperparameters, channels, metrics)."""
    return Schema.load(image)


def metric_definitions(image: str = "yolo", class_names: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """``MetricDefinitions`` for ``create_training_job``, generated from the image's schema."""
    return Schema.load(image).metric_definitions(class_names)


def validate_hyperparameters(hyperparameters: dict, image: str = "yolo") -> dict:
    """Typed values, or :class:`container.UserError` naming every problem (unknown keys get suggestions)."""
    return Schema.load(image).parse(hyperparameters)


__all__ = ["image_schema", "metric_definitions", "validate_hyperparameters"]
