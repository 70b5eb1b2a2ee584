"""The one-way house (docs/architecture.md), checked on the source: every import, including those
inside functions, read with ``ast`` (nothing is imported, so a hidden cycle cannot hide)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("container", "sdk")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path, set(_modules())) for name, path in _modules().items()}


def _edges_from(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{src} -> {dst}" for src, dsts in GRAPH.items() if src == prefix or src.startswith(prefix + ".")
                  for dst in dsts if any(dst == f or dst.startswith(f + ".") for f in forbidden))


def test_images_never_import_the_sdk():
    assert _edges_from("container", ("sdk",)) == []


def test_annotation_library_never_imports_an_image_adapter():
    assert _edges_from("container.annotations", ("container.yolo", "container.tfod")) == []


def test_no_import_cycles():
    """Between modules (a package's ``__init__`` re-exporting its own modules is not a cycle)."""
    def own_init(src: str, dst: str) -> bool:
        return src.startswith(dst + ".")  # a module importing its package's __init__ is usual

    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if own_init(node, nxt):
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


def test_one_error_boundary():
    """Only sdk/_errors.py translates the images' UserError (user_errors()); every other SDK module raises SDKErrors,
    so a notebook that catches SDKError catches everything the SDK refuses (sdk.data's calls included)."""
    found = []
    for path in sorted((ROOT / "sdk").rglob("*.py")):
        if path.name == "_errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            imports = isinstance(node, ast.ImportFrom) and node.module == "container.failure" and "UserError" in names
            catches = isinstance(node, ast.ExceptHandler) and "UserError" in ast.unparse(node.type or ast.Constant(0))
            if imports or catches:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"translate with sdk._errors.user_errors(), not by hand: {found}"


def test_sdk_data_raises_sdk_errors(tmp_path):
    import pytest

    import sdk
    from sdk import data

    with pytest.raises(sdk.SDKError, match="does not exist|no such|not found"):
        data.read(tmp_path / "missing")


def test_the_sdk_names_the_opt_ml_tree_through_the_contract():
    """container/contract.py declares the /opt/ml tree (Layout, SAGEMAKER); the SDK spells none of its paths."""
    found = [f"{path.relative_to(ROOT)}:{number}"
             for path in sorted((ROOT / "sdk").rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "/opt/ml" in line or '"output" / "failure"' in line]
    assert not found, f"name the path through container.contract.Layout / SAGEMAKER: {found}"


def test_no_module_fills_another_modules_registry():
    """One-way means one-way: no module puts its function into a list or attribute of a module it imports (the
    way sdk._launch once filled sdk._job.LAUNCHER so that job.restart() could reach launch_job unseen)."""
    found = []
    for path in sorted((ROOT / "sdk").rglob("*.py")) + sorted((ROOT / "container").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    and (node.module or "").split(".")[0] in PACKAGES for a in node.names}
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            calls = [node.value.func] if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else []
            for target in [*targets, *calls]:
                base = target
                while isinstance(base, (ast.Subscript, ast.Attribute)):
                    base = base.value
                if base is not target and isinstance(base, ast.Name) and base.id in imported:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"a module changes another module's object at import: {found}"


def test_the_serving_instance_type_default_is_declared_once():
    """deploy, transform, Endpoint.update, the deploy CLI and the registry's recorded types share one default."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted((ROOT / "sdk").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Constant) and node.value == "ml.m5.large"]
    assert len(found) == 1, found


# sdk/ by concern (docs/architecture.md): each package imports only those below it; the public modules at the top
# (registry, tuning, pipeline, leaderboard, predict, estimator, trainer_v3, edge) use the packages, never the CLI.
SDK_LAYERS = ("sdk.jobs", "sdk.serving", "sdk.data", "sdk.cli")
SDK_TOP_MODULES = 12


def test_sdk_is_grouped_by_concern_with_few_modules_at_the_top():
    top = sorted(p.name for p in (ROOT / "sdk").glob("*.py"))
    assert len(top) <= SDK_TOP_MODULES, top
    assert all((ROOT / name.replace(".", "/") / "__init__.py").is_file() for name in SDK_LAYERS)


@pytest.mark.parametrize("layer", SDK_LAYERS[:-1])
def test_an_sdk_package_imports_only_what_lies_below_it(layer):
    above = SDK_LAYERS[SDK_LAYERS.index(layer) + 1:]
    public = tuple(f"sdk.{p.stem}" for p in (ROOT / "sdk").glob("*.py") if not p.stem.startswith("_"))
    into_init = [e for e in _edges_from(layer, ("sdk",)) if e.endswith(" -> sdk")]
    upward = [e for e in _edges_from(layer, above + public) if not e.startswith(ENTRY_POINTS)]
    assert upward == [] and into_init == []


ENTRY_POINTS = ("sdk.__main__", "sdk.data.__main__")  # python -m sdk / python -m sdk.data: the CLI's own doors


def test_only_the_cli_imports_the_cli():
    entry_points = ("sdk.cli", *ENTRY_POINTS)
    assert [e for e in _edges_from("sdk", ("sdk.cli",)) if not e.startswith(entry_points)] == []
