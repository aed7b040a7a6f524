"""`make mutate`'s report: each module's mutation score, leaving out mutants that only change
the text of a message (an exception's or a log line's strings), and the hand mutants.

Reads what `mutmut run` left in mutants/: each module's `.meta` (exit code per mutant) and
the mutated source, where every mutant is a copy of its function. A mutant counts as a
message mutant when its function's syntax tree equals the original's once the string
constants inside `raise …` statements and `logger.…(…)` calls are blanked. The hand
mutants' results are tests/hand_mutation.py's (mutants/hand.json).

Exits 1 when a module is below the goal, or a hand mutant survived, went stale (its
original text is gone) or could not be run. `--survivors` shows each mutant not killed.
"""

from __future__ import annotations

import ast
import difflib
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


Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(source: str) -> dict[str, Function]:
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _MUTANT.match(node.name):
            found[node.name] = node
    return found


def _diff(original: Function, mutant: Function) -> str:
    before = ast.unparse(original).splitlines()[1:]
    after = ast.unparse(mutant).splitlines()[1:]
    lines = difflib.unified_diff(before, after, lineterm="", n=0)
    changed = [line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return "\n".join(f"    {line}" for line in changed)


def module_score(path: str, survivors: list[str] | None = None) -> tuple[int, int, int, int]:
    """(killed, not killed, message mutants, all mutants) for one mutated module; each
    mutant not killed is described in `survivors`."""
    mutated = ROOT / "mutants" / path
    meta = json.loads(mutated.with_name(mutated.name + ".meta").read_text())
    functions = _functions(mutated.read_text())
    killed = missed = messages = 0
    for key, code in meta["exit_code_by_key"].items():
        name = key.rsplit(".", 1)[1]
        match = _MUTANT.match(name)
        assert match is not None, name
        original = functions.get(f"{match['function']}__mutmut_orig")
        mutant = functions.get(name)
        if original is not None and mutant is not None and _shape(mutant) == _shape(original):
            messages += 1
            continue
        status = status_by_exit_code[code]
        if status in ("killed", "timeout", "caught by type check"):
            killed += 1
            continue
        missed += 1
        if survivors is not None and original is not None and mutant is not None:
            survivors.append(f"{key} ({status})\n{_diff(original, mutant)}")
    return killed, missed, messages, len(meta["exit_code_by_key"])


def _hand() -> list[dict[str, str]] | None:
    path = ROOT / "mutants" / "hand.json"
    if not path.exists():
        return None
    results: list[dict[str, str]] = json.loads(path.read_text())
    return results


def main(show_survivors: bool = False) -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    hand = _hand()
    by_file: dict[str, list[str]] = {}
    for result in hand or []:
        by_file.setdefault("src/pgkeep/" + result["file"], []).append(result["status"])
    failures = []
    survivors: list[str] = []
    print(f"{'module':36} {'score':>7} {'killed':>7} {'missed':>7} {'messages':>9} {'hand':>6}")
    for path in [*config["only_mutate"], *(p for p in by_file if p not in config["only_mutate"])]:
        statuses = by_file.get(path, [])
        hand_cell = f"{statuses.count('killed')}/{len(statuses)}" if statuses else "-"
        name = path.removeprefix("src/pgkeep/")
        if path not in config["only_mutate"]:
            print(f"{name:36} {'-':>7} {'-':>7} {'-':>7} {'-':>9} {hand_cell:>6}")
            continue
        killed, missed, messages, _ = module_score(path, survivors)
        score = 100.0 * killed / max(1, killed + missed)
        print(f"{name:36} {score:6.1f}% {killed:7} {missed:7} {messages:9} {hand_cell:>6}")
        if score < GOAL:
            failures.append(f"{name} below {GOAL:.0f}%")
    if hand is None:
        failures.append("no hand mutant results (tests/hand_mutation.py did not finish)")
    for result in hand or []:
        if result["status"] != "killed":
            failures.append(f"hand mutant {result['status']}: {result['file']}: {result['why']}")
    if show_survivors:
        print("\n".join(survivors))
    if failures:
        print("\n".join(failures))
        return 1
    print(f"every module at {GOAL:.0f}% or more of its non-message mutants killed; ", end="")
    print(f"all {len(hand or [])} hand mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main(show_survivors="--survivors" in sys.argv[1:]))
