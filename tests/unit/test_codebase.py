"""The shape of the code, held by tests: lint-clean, short modules and classes, few
top-level modules, and no import cycle (a port never imports its adapters)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "imgrec"
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_TOP_LEVEL = 300, 200, 12


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def test_ruff_finds_nothing():
    root = SRC.parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests"], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_and_classes_stay_short():
    long_modules, long_classes = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long_classes.append(f"{name}.{node.name}")
    assert long_modules == [] and long_classes == []


def test_few_modules_at_the_top_level():
    top = [p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= MAX_TOP_LEVEL, top
    for part in ("engine", "worker", "web", "autoscaler", "queues", "stores", "actuators"):
        assert (SRC / part / "__init__.py").is_file(), f"{part} is a package"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """imgrec modules that `name` imports at module level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    for port, adapters in [("imgrec.queues.base", "imgrec.queues."), ("imgrec.stores.base", "imgrec.stores."),
                           ("imgrec.actuators.base", "imgrec.actuators.")]:
        assert not any(dep.startswith(adapters) for dep in graph[port]), f"{port} imports an adapter"

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    return path + [start]
                if dep not in path and len(path) < len(graph):
                    stack.append((dep, path + [dep]))
        return None

    cycles = [c for name in graph if (c := cycle_from(name))]
    assert cycles == [], cycles[0]
