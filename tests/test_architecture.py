"""Dependencies point inward, and every error has a status and an exit code."""

import ast
import re
from pathlib import Path

import pytest

from pgkeep import cli, errors
from pgkeep.http.errors import STATUS

SRC = Path(__file__).parents[1] / "src" / "pgkeep"
FORBIDDEN_IN_CORE = (
    "pgkeep.http",
    "pgkeep.postgres",
    "pgkeep.storage",
    "pgkeep.cli",
    "fastapi",
    "starlette",
    "subprocess",
    "psycopg",
    "uvicorn",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_adapter(path: Path) -> None:
    bad = {n for n in _imports(path) if n.startswith(FORBIDDEN_IN_CORE)}
    assert not bad, f"{path.name} imports {bad}"


def _error_classes() -> list[type[errors.PgkeepError]]:
    found, todo = [], [errors.PgkeepError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_a_status_and_exit_code(cls: type[errors.PgkeepError]) -> None:
    public = [c for c in cls.__mro__ if c in STATUS]
    assert public, f"{cls.__name__} has no HTTP status"
    assert cli.exit_code_for(cls("x")) >= 1


def test_status_table_names_every_public_error() -> None:
    public = {c for c in _error_classes() if not c.__name__.startswith("_")}
    assert public <= set(STATUS)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _pgkeep_imports(path: Path) -> set[str]:
    """Every pgkeep module `path` imports, at any level (TYPE_CHECKING and functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module in MODULES:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
    return found


def test_no_import_cycles() -> None:
    graph = {name: _pgkeep_imports(path) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package importing its own modules
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


LONG = 300


def test_no_module_is_over_300_lines() -> None:
    """No exceptions: a module that grows past 300 lines is split (`wc -l`)."""
    long = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := len(path.read_bytes().splitlines())) > LONG
    }
    assert not long, long


def test_the_architecture_page_names_what_exists_and_every_top_level_module() -> None:
    """docs/architecture.md: every module it names exists; every top-level module and
    package of src/pgkeep is named."""
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", page))
    root = SRC.parents[1]
    missing = sorted(n for n in named if not (SRC / n).exists() and not (root / n).exists())
    assert not missing, missing
    top = {p.name for p in SRC.glob("*.py") if p.name != "__init__.py"}
    top |= {p.name + "/" for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("_")}
    unnamed = sorted(t for t in top if t not in named)
    assert not unnamed, unnamed
