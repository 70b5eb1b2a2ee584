"""The reference pages in docs/reference/ are generated from the schemas; they must not drift."""

from __future__ import annotations

import pytest

from container.schema import Schema
from container.schema_docs import images, markdown, page


@pytest.mark.parametrize("image", images())
def test_reference_page_matches_schema(image):
    committed = page(image).read_text(encoding="utf-8") if page(image).exists() else ""
    assert committed == markdown(Schema.load(image)), (
        f"docs/reference/{image}.md is out of date: run `python -m container.schema_docs --write`")


def test_every_metric_and_image_hyperparameter_is_in_the_page():
    for image in images():
        schema = Schema.load(image)
        text = markdown(schema)
        for metric in schema.metrics:
            assert f"`{metric.name}`" in text
        for name, param in schema.params.items():
            if param.source == "image":
                assert f"| `{name}` |" in text
