"""Every test that starts a daemon carries the ``lab`` marker: each one that takes the
``lab`` fixture, or starts an sshd or a dockerd itself, is found by its source."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# a fixture or a class that starts daemons
STARTS = ("lab", "SshServer", "DockerNode", "Lab", "ServiceHost")


def _marked(node: ast.FunctionDef, module_marked: bool) -> bool:
    names = {ast.unparse(d) for d in node.decorator_list}
    return module_marked or "pytest.mark.lab" in names


def test_every_test_that_starts_a_daemon_is_marked_lab() -> None:
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_marked = "pytestmark = pytest.mark.lab" in path.read_text()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            uses = {a.arg for a in node.args.args} | {
                n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            }
            if uses & set(STARTS) and not _marked(node, module_marked):
                unmarked.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert unmarked == []
