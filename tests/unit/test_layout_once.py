"""The /opt/ml tree is declared once, in container/contract.py (``Layout``): read from the source with ``ast``, no
other module of the images or the SDK spells a path of it. Docstrings, comments and messages that mention /opt/ml
for a person are fine; a string that *is* such a path (``"/opt/ml/checkpoints"``), a config file's name used as a
path piece (``config / "resourceconfig.json"``) or the failure file put together (``base / "output" / "failure"``)
is not."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "container" / "contract.py"
BASE = "/opt/ml"
CONFIG_FILES = {"hyperparameters.json", "inputdataconfig.json", "resourceconfig.json", "checkpointconfig.json"}
TREE_PIECES = {("output", "failure"), ("output/failure",)}  # the failure file, by its parts


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that stand alone as statements (docstrings, attribute notes)."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _path_pieces(node: ast.AST) -> list[str] | None:
    """The string constants of a path put together: ``a / "b" / "c"`` or ``os.path.join(a, "b", "c")``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        parts: list[ast.AST] = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts.insert(0, node.right)
            node = node.left
        parts.insert(0, node)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" \
            and ast.unparse(node.func.value) in ("os.path", "path", "posixpath"):
        parts = list(node.args)
    else:
        return None
    return [p.value if isinstance(p, ast.Constant) and isinstance(p.value, str) else "" for p in parts]


def offences(source: str) -> list[str]:
    """Where ``source`` spells a path of the /opt/ml tree: ``line: what``."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
                and (node.value == BASE or node.value.startswith(BASE + "/"))):
            found.append(f"{node.lineno}: {node.value!r}")
        pieces = _path_pieces(node)
        if pieces is None:
            continue
        pairs = set(itertools.pairwise(pieces)) | {(p,) for p in pieces}
        named = ["/".join(pair) for pair in sorted(pairs & TREE_PIECES)] + sorted(set(pieces) & CONFIG_FILES)
        found.extend(f"{node.lineno}: {ast.unparse(node)} ({piece})" for piece in named)
    return found


@pytest.mark.parametrize("package", ["container", "sdk"])
def test_no_path_of_the_tree_is_spelled_outside_the_contract(package):
    spelled = {str(path.relative_to(ROOT)): hits for path in sorted((ROOT / package).rglob("*.py")) if path != CONTRACT
               if (hits := offences(path.read_text(encoding="utf-8")))}
    assert spelled == {}, "name these paths through container.contract.Layout (SAGEMAKER, Layout.from_environ())"


def test_the_check_finds_what_it_is_for():
    """Each way of spelling the tree is found; the ways of mentioning it to a person are not."""
    spelled = '''
CHECKPOINTS = "/opt/ml/checkpoints"
failure = base / "output" / "failure"
joined = os.path.join(base, "output", "failure")
config = base / "input" / "config" / "resourceconfig.json"
base = "/opt/ml"
'''
    mentioned = '''
"""Runs against /opt/ml: reads /opt/ml/input/config/resourceconfig.json."""
def f(x):
    """/opt/ml/model is tarred."""
    print(f"the model is exported to /opt/ml/model, {x}")  # /opt/ml/model
    raise ValueError("resourceconfig.json: current_host is not in hosts")
parser.add_argument("--out", help="folder for the /opt/ml tree")
data = base / "output" / "data"
'''
    assert [hit.split(":")[0] for hit in offences(spelled)] == ["2", "3", "4", "5", "6"]
    assert offences(mentioned) == []
    assert offences(CONTRACT.read_text(encoding="utf-8")), "the contract itself spells them: the check reads it"
