"""Ultralytics' argument table, derived from the pinned ultralytics' own sources and shipped as data.

The SDK must know every argument the YOLO image accepts (names, types, defaults, choices, ranges)
on a notebook install without ultralytics. So the table is generated once from the pinned
version and committed as ``container/yolo/ultralytics_args.yaml``; ``container.schema`` reads that
file on both sides (SDK preflight and the image's start-up check), so both refuse the same values.
A unit test regenerates it from the installed ultralytics and fails when they differ.

Sources, read as text (``ast``), never imported, so generating needs no torch:

* ``cfg/default.yaml``: names, defaults and help (``key: default # (type) help``);
* ``cfg/__init__.py``: ``CFG_FLOAT_KEYS``, ``CFG_FRACTION_KEYS``, ``CFG_INT_KEYS``, ``CFG_INT_MIN``,
  ``CFG_BOOL_KEYS``, ``CFG_STR_KEYS``: the types and ranges ``check_cfg`` enforces at train time;
* ``engine/exporter.py`` ``export_formats()``: the export format names;
* ``engine/trainer.py`` ``build_optimizer``: the optimizer names.

    python -m container.yolo.args_table            # rewrite ultralytics_args.yaml from the installed ultralytics
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import yaml

TABLE = Path(__file__).resolve().parent / "ultralytics_args.yaml"
PACKAGE = "ultralytics"
KNOWN_TYPES = ("bool", "int", "float", "str", "list", "dict")
_TYPE_COMMENT = re.compile(r"^\(([^)]*)\)\s*(.*)$")


def package_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_version(root: Path) -> str:
    text = (root / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def _module_constants(path: Path) -> dict[str, Any]:
    """Top-level ``NAME = <literal>`` (``frozenset({...})`` included) of a source file."""
    out: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "frozenset" and value.args:
                value = value.args[0]
            try:
                out[node.targets[0].id] = ast.literal_eval(value)
            except ValueError:
                continue
    return out


def _function_literal(path: Path, function: str, name: str) -> Any:
    """The literal first assigned to ``name`` inside ``function`` (a method or a module function)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name)
                        and sub.targets[0].id == name):
                    return ast.literal_eval(sub.value)
    raise LookupError(f"{path.name}: no literal {name} in {function}()")


def _format_aliases(path: Path) -> list[str]:
    """Names ``Exporter.__call__`` maps to a format (``if fmt in {"tflite", "tfjs"}: fmt = "litert"``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == "Exporter":
            call = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__call__")
            aliases: list[str] = []
            for sub in ast.walk(call):
                if (isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Name) and sub.left.id == "fmt"
                        and isinstance(sub.ops[0], ast.In) and isinstance(sub.comparators[0], (ast.Set, ast.Tuple))):
                    aliases += sorted(ast.literal_eval(sub.comparators[0]))
            return aliases
    raise LookupError(f"{path.name}: no Exporter.__call__")


def build_table(root: Path) -> dict[str, Any]:
    """The table: ``{"version", "args": {name: {type, default, optional, help, choices?, min?, max?}}}``."""
    default_yaml = root / "cfg" / "default.yaml"
    text = default_yaml.read_text(encoding="utf-8")
    defaults = yaml.safe_load(text) or {}
    consts = _module_constants(root / "cfg" / "__init__.py")
    floats, fractions = set(consts["CFG_FLOAT_KEYS"]), set(consts["CFG_FRACTION_KEYS"])
    ints, bools, strs = set(consts["CFG_INT_KEYS"]), set(consts["CFG_BOOL_KEYS"]), set(consts["CFG_STR_KEYS"])
    int_min: dict[str, int] = dict(consts["CFG_INT_MIN"])
    formats = [row[1] for row in _function_literal(root / "engine" / "exporter.py", "export_formats", "x")
               if row[1] != "-"]
    optimizers = _function_literal(root / "engine" / "trainer.py", "build_optimizer", "optimizers")
    args: dict[str, Any] = {}
    for raw in text.splitlines():
        if not raw or raw[0] in " #" or ":" not in raw:
            continue
        key = raw.split(":", 1)[0].strip()
        if key not in defaults:
            continue
        default = defaults[key]
        comment = raw.split(" # ", 1)[1].strip() if " # " in raw else ""
        types: list[str] = []
        optional = default is None
        match = _TYPE_COMMENT.match(comment)
        if match:
            declared, comment = match.group(1), match.group(2)
            optional = optional or "optional" in declared
            names = [t.strip().split("[")[0] for t in declared.replace(", optional", "").split("|")]
            types = [t for t in names if t in KNOWN_TYPES]
        if not types and default is not None:
            types = [type(default).__name__]
        entry: dict[str, Any] = {}
        # check_cfg's sets win over the comment: they are what ultralytics enforces
        if key in bools:
            types = ["bool"]
        elif key in ints:
            types = ["int"]
        elif key in strs:
            types = ["str"]
        elif key in floats or (key in fractions and key != "fraction"):
            types = ["int", "float"]  # both accepted ("x=2" and "x=2.0"); an int stays one (batch=16 is not 16.0)
        if key in int_min:
            entry["min"] = int_min[key]
        if key in fractions and key != "fraction":  # fraction also takes a count > 1 or split values
            entry["min"], entry["max"] = 0.0, 1.0
        if key == "fraction":
            entry["min"] = 0.0
        if key == "optimizer":
            entry["choices"] = sorted(optimizers, key=str.lower)
        if key == "format":  # ultralytics lowercases the format and maps its aliases (tflite -> litert)
            entry["choices"] = formats + [a for a in _format_aliases(root / "engine" / "exporter.py")
                                          if a not in formats]
        args[key] = {"type": " | ".join(types), "default": default, "optional": optional, "help": comment, **entry}
    return {"package": PACKAGE, "version": installed_version(root), "args": args}


def render(table: dict[str, Any]) -> str:
    head = ("# GENERATED by `python -m container.yolo.args_table` from the pinned ultralytics' sources "
            "(cfg/default.yaml,\n# cfg/__init__.py check_cfg sets, export_formats, build_optimizer). Do not edit; "
            "regenerate after a pin change.\n")
    return head + yaml.safe_dump(table, sort_keys=False, allow_unicode=True, width=200)


def load_table(path: Path = TABLE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    root = package_dir()
    if root is None:
        print("ultralytics is not installed; install the pinned version (pip install -e '.[yolo]')", file=sys.stderr)
        return 2
    TABLE.write_text(render(build_table(root)), encoding="utf-8")
    print(f"wrote {TABLE} (ultralytics {installed_version(root)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
