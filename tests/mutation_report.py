"""`make mutate`'s report: each module's mutation score, leaving out mutants that only change
the text of a message (an exception's or a log line's strings).

Reads what `mutmut run` left in mutants/: each module's `.meta` (exit code per mutant) and
the mutated source, where every mutant is a copy of its function. A mutant counts as a
message mutant when its function's syntax tree equals the original's once the string
constants inside `raise …` statements and `logger.…(…)` calls are blanked.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).parents[1]
GOAL = 90.0
_MUTANT = re.compile(r"(?P<function>.+)__mutmut_(?P<id>orig|[0-9]+)$")


class _Blank(ast.NodeTransformer):
    """Blank the strings of messages: inside raise statements and logger calls."""

    def __init__(self) -> None:
        self.inside = 0

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return self._within(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        is_log = isinstance(func, ast.Attribute) and (
            isinstance(func.value, ast.Name) and func.value.id == "logger"
        )
        return self._within(node) if is_log else self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if self.inside and isinstance(node.value, str):
            return ast.Constant("<message>")
        return node

    def _within(self, node: ast.AST) -> ast.AST:
        self.inside += 1
        try:
            return self.generic_visit(node)
        finally:
            self.inside -= 1


def _shape(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    copy = ast.parse(ast.unparse(node)).body[0]
    assert isinstance(copy, ast.FunctionDef | ast.AsyncFunctionDef)
    copy.name = "f"
    return ast.dump(_Blank().visit(copy))


def _functions(source: str) -> dict[str, str]:
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _MUTANT.match(node.name):
            found[node.name] = _shape(node)
    return found


def module_score(path: str) -> tuple[int, int, int, int]:
    """(killed, not killed, message mutants, all mutants) for one mutated module."""
    mutated = ROOT / "mutants" / path
    meta = json.loads(mutated.with_name(mutated.name + ".meta").read_text())
    shapes = _functions(mutated.read_text())
    killed = missed = messages = 0
    for key, code in meta["exit_code_by_key"].items():
        name = key.rsplit(".", 1)[1]
        match = _MUTANT.match(name)
        assert match is not None, name
        original = shapes.get(f"{match['function']}__mutmut_orig")
        if original is not None and shapes.get(name) == original:
            messages += 1
            continue
        status = status_by_exit_code[code]
        if status in ("killed", "timeout", "caught by type check"):
            killed += 1
        else:
            missed += 1
    return killed, missed, messages, len(meta["exit_code_by_key"])


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    below = []
    print(f"{'module':40} {'score':>7} {'killed':>7} {'missed':>7} {'messages':>9}")
    for path in config["only_mutate"]:
        killed, missed, messages, _ = module_score(path)
        score = 100.0 * killed / max(1, killed + missed)
        print(f"{path.removeprefix('src/'):40} {score:6.1f}% {killed:7} {missed:7} {messages:9}")
        if score < GOAL:
            below.append(path)
    if below:
        print(f"below {GOAL:.0f}%: {', '.join(below)}")
        return 1
    print(f"every module at {GOAL:.0f}% or more of its non-message mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
