"""The package's rooms import only downward, never from inside a function, and its modules stay short.

Each module belongs to a room (its first name under ``headstart``); rooms are ordered bottom to top, and a
module may import from its own room or from rooms below it. Imports inside functions would hide cycles, so
any ``headstart`` import inside a function fails the test; third-party libraries may be imported late (to
keep start-up fast), and ``if TYPE_CHECKING:`` blocks are only read by type checkers. Modules and functions
have a size limit, so that a module does one job and a function reads at a glance.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import headstart

PACKAGE = Path(headstart.__file__).parent

#: Bottom to top; a room may import from its own level and the levels below.
LAYERS: list[set[str]] = [
    {"errors", "registry", "locks", "io", "progress", "display"},
    {"data"},
    {"backbones"},
    {"model"},
    {"training"},
    {"strategies"},
    {"evaluation"},
    {"fitting", "held_out"},
    {"transferability", "shift", "studies", "onnx_export", "sklearn", "tuning"},
    {"reports", "server", "tracking"},
    {"api", "shipping"},
    {"cli", "__main__"},
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
#: Most lines in a module, and in a function (its ``def`` line to its last, docstring and decorators included).
MAX_MODULE_LINES = 320
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def _room(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_rooms(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [node.module]
        if node.module == "headstart":  # `from headstart import api` names the room in the alias
            names = [f"headstart.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        return []
    return [name.split(".")[1] for name in names if name.startswith("headstart.")]


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _walk(node: ast.AST, in_function: bool, found: list[tuple[int, str, bool]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        for room in _imported_rooms(child):
            found.append((child.lineno, room, in_function))
        _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)), found)


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    found: list[tuple[int, str, bool]] = []
    _walk(ast.parse(path.read_text(), filename=str(path)), False, found)
    return found


def test_every_module_belongs_to_a_room() -> None:
    rooms = {_room(path) for path in _modules()}
    assert rooms <= set(LEVEL), f"rooms missing from LAYERS: {sorted(rooms - set(LEVEL))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down_and_never_hide_in_functions(path: Path) -> None:
    room = _room(path)
    upward = [f"line {line}: {room} imports {target}" for line, target, _ in _imports(path)
              if target in LEVEL and LEVEL[target] > LEVEL[room]]
    hidden = [f"line {line}: import of headstart.{target} inside a function" for line, target, inside in
              _imports(path) if inside]
    assert not upward + hidden


def test_the_checker_sees_upward_and_hidden_imports(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from headstart.api import fit\n\ndef f():\n    from headstart.model import TransferModel\n")
    assert _imports(module) == [(1, "api", False), (4, "model", True)]


def _oversized(path: Path, name: str) -> list[str]:
    source = path.read_text()
    lines = source.count("\n")
    found = [f"{name}: {lines} lines"] if lines > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_modules_and_functions_stay_short() -> None:
    offenders = [entry for path in _modules() for entry in _oversized(path, str(path.relative_to(PACKAGE)))]
    assert not offenders, (f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function; "
                           f"split by meaning: {offenders}")


def test_the_size_check_sees_long_modules_and_functions(tmp_path: Path) -> None:
    module = tmp_path / "long.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    module.write_text(f"@staticmethod\ndef long():\n{body}\n\ndef short():\n    pass\n" + "\n" * MAX_MODULE_LINES)
    assert _oversized(module, "long.py") == [f"long.py: {MAX_MODULE_LINES + MAX_FUNCTION_LINES + 6} lines",
                                  f"long.py:2 long(): {MAX_FUNCTION_LINES + 2} lines"]
