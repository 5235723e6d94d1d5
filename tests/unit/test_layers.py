"""The tree is the architecture: each room of ``imgsync/`` imports only from itself and from
the floors below it — cli → actions → source / receiver / render → bundle / engines →
adapters → the core (config, errors, model, log, plan, protocol, frames, reference, text) —
never upward and never sideways; docker-py, paramiko and sqlite3 are imported only in
``engines/`` and ``adapters/``. Imports inside ``if TYPE_CHECKING:`` count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imgsync"
FLOORS = {
    "cli": 5,
    "actions": 4,
    "source": 3,
    "receiver": 3,
    "render": 3,
    "bundle": 2,
    "engines": 2,
    "adapters": 1,
    "core": 0,
}
OUTSIDE = {"docker": {"engines"}, "paramiko": {"adapters"}, "sqlite3": {"adapters"}}


def room(module: str) -> str:
    """``imgsync.source.peer`` → ``source``; a top-level module is the core (cli its own)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    return "cli" if parts[1:] in (["cli"], ["__main__"]) else "core"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from imgsync import x`` counts as ``imgsync.x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def crossings() -> list[str]:
    known = modules()
    wrong = []
    for module, path in known.items():
        here = room(module)
        for name in imports(path):
            if name.split(".")[0] in OUTSIDE and here not in OUTSIDE[name.split(".")[0]]:
                wrong.append(f"{module} imports {name} (only in {OUTSIDE[name.split('.')[0]]})")
            if name not in known or name == "imgsync":
                continue
            there = room(name)
            if there != here and FLOORS[there] >= FLOORS[here]:
                wrong.append(f"{module} ({here}) imports {name} ({there})")
    return wrong


def test_no_module_imports_from_its_own_floor_or_above_except_its_room() -> None:
    assert crossings() == []


def test_every_module_lives_in_a_room_this_test_knows() -> None:
    rooms = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert rooms <= set(FLOORS), rooms - set(FLOORS)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("imgsync.source.peer", "source"),
        ("imgsync.source", "source"),
        ("imgsync.config", "core"),
        ("imgsync.cli", "cli"),
    ],
)
def test_rooms_are_read_from_the_module_path(module: str, expected: str) -> None:
    assert room(module) == expected
