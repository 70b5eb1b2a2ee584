"""The reference tables in ``docs/``, generated from each image's ``schema.yaml``.

``describe --markdown`` prints them; ``python -m container.schema_docs --write`` rewrites
``docs/reference/<image>.md``; ``tests/unit/test_docs.py`` fails when a committed page drifts
from its schema. Nothing here is written by hand, so the tables cannot disagree with the images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from container.schema import Schema, known_images

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "reference"


def images() -> list[str]:
    """The images that exist: one folder with a ``schema.yaml`` each (declared in container.schema)."""
    return known_images()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    return "—" if value is None or value == "" else f"`{json.dumps(value)}`"


def _rule(p: Any) -> str:
    """Choices and ranges, where the schema declares them (attributes added over time)."""
    parts = []
    if getattr(p, "choices", ()):
        parts.append("one of " + ", ".join(f"`{c}`" for c in p.choices))
    low, high = p.minimum, p.maximum
    if low is not None or high is not None:
        op = " < " if p.exclusive else " ≤ "
        parts.append(f"{'' if low is None else str(low) + op}value{'' if high is None else op + str(high)}")
    if p.item_choices:
        parts.append("each of " + ", ".join(f"`{c}`" for c in p.item_choices))
    return "; ".join(parts)


def markdown(schema: Schema) -> str:
    """Channels, hyperparameters and metric definitions of one image, as Markdown tables."""
    out = [f"# `{schema.image}` image reference", "",
           f"<!-- generated from container/{schema.image}/schema.yaml by `python -m container.schema_docs --write`;"
           " do not edit by hand -->", "", schema.title, "", "## Channels", "", "| channel | what |", "| --- | --- |"]
    out += [f"| `{c.name}` | {_cell(c.help)} |" for c in schema.channels.values()]
    needs = " or ".join(" + ".join(f"`{n}`" for n in g) for g in schema.required_channels)
    if needs:
        out += ["", f"Required: {needs}. Input modes: {', '.join(schema.input_modes)}."]
    out += ["", "## Hyperparameters of the image", "", "| name | type | default | rule | what |",
            "| --- | --- | --- | --- | --- |"]
    for p in schema.params.values():
        if p.source == "image":
            out.append(f"| `{p.name}` | {_cell(p.type_label)} | {_cell(_default(p.default))} | {_cell(_rule(p))} "
                       f"| {_cell(p.help)} |")
    if schema.framework:
        framework = [p for p in schema.params.values() if p.source == schema.framework]
        out += ["", f"## {schema.framework} arguments", "",
                f"Every key of {schema.framework}'s own `default.yaml` is accepted under its own name; the usual ones:",
                "", "| name | type | default | rule | what |", "| --- | --- | --- | --- | --- |"]
        featured = [p for p in framework if p.name in schema.featured]
        for p in featured:
            out.append(f"| `{p.name}` | {_cell(p.type_label)} | {_cell(_default(p.default))} | {_cell(_rule(p))} "
                       f"| {_cell(p.help)} |")
        rest = sorted(p.name for p in framework if p.name not in schema.featured)
        if rest:
            out += ["", "Also accepted: " + ", ".join(f"`{n}`" for n in rest) + "."]
        if schema.managed:
            out += ["", "Set by the image (refused as hyperparameters): "
                    + ", ".join(f"`{n}`" for n in sorted(schema.managed)) + "."]
    out += ["", "## Metric definitions", "", "Paste into the console (name, regex), or let the SDK send them.", "",
            "| name | line | regex |", "| --- | --- | --- |"]
    out += [f"| `{m.name}` | `[{m.line}]` | `{_cell(m.regex)}` |" for m in schema.metrics]
    if schema.per_class_metrics:
        out += ["", "Per class (with `per_class_metrics=true`), for a class called `NAME`, while under 40 in all:", "",
                "| name | regex |", "| --- | --- |"]
        for d in schema.metric_definitions(["NAME"])[len(schema.metrics):]:
            out.append(f"| `{d['Name']}` | `{_cell(d['Regex'])}` |")
    if schema.objective:
        out += ["", f"Default tuning objective: `{schema.objective}` (maximized)."]
    return "\n".join(out) + "\n"


def page(image: str) -> Path:
    return DOCS_DIR / f"{image}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.schema_docs",
                                     description="Print or rewrite the generated reference pages in docs/reference/.")
    parser.add_argument("--write", action="store_true", help="rewrite docs/reference/<image>.md for every image")
    args = parser.parse_args(argv)
    for image in images():
        text = markdown(Schema.load(image))
        if args.write:
            DOCS_DIR.mkdir(parents=True, exist_ok=True)
            page(image).write_text(text, encoding="utf-8")
            print(f"wrote {page(image)}")
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
