"""The import graph a newcomer can rely on (docs/architecture.md): handlers → bot presentation → services →
models, jobs → services; nothing points up. Read from the source, so a new import that breaks it fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package → packages it must never import (at any depth: module level, inside functions, under TYPE_CHECKING)
FORBIDDEN = {
    "models": {"services", "jobs", "bot", "handlers", "aiogram"},
    "services": {"jobs", "bot", "handlers", "aiogram"},
    "jobs": {"bot", "handlers", "aiogram"},
    "bot": {"handlers"},
}
# The composition roots wire everything together; they may import the handlers' routers.
ROOTS = {"bot/app.py"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offences(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in ROOTS:
            continue
        for name in imported(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{relative} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_nothing_points_up(package):
    assert offences(package) == []


def test_the_check_sees_an_import_hidden_inside_a_function(tmp_path):
    module = tmp_path / "job.py"
    module.write_text("def run():\n    from bot.notify import render_agenda\n    return render_agenda\n")
    assert "bot.notify" in imported(module)
