"""Dependencies point inward, and every error has a status and an exit code."""

import ast
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
