"""The code's shape, checked: layers, import cycles, module and function sizes.

ARCHITECTURE.md draws the parts and what each may import; these tests hold the code to it, so
a change that crosses a layer or grows a module past what one reader can hold fails here, with
the file and line named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("config", "tasks", "plugins", "dags")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

STAGE_DEPENDENCIES: dict[str, set[str]] = {
    "common": set(),
    "ingest": {"common"},
    "features": {"common", "ingest"},
    "training": {"common", "ingest", "features"},
    "serving": {"common", "features"},
    "rollout": {"common", "ingest", "serving"},
    "monitoring": {"common", "training", "serving"},
    "platform": {"common", "ingest", "features", "training", "serving", "rollout", "monitoring", "backtest"},
    "backtest": {"common", "features", "ingest", "training", "serving", "monitoring", "platform"},
}
"""What each package of ``tasks/`` may import besides itself (and ``config``): the loop's order."""

DECLARATIONS: dict[str, str] = {}
"""``path:function`` (or a module path) allowed past the size limits because it only declares
things (metrics, a parser's arguments), with why."""


def _sources(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted((ROOT / root).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module a file imports, at any depth (inside functions too), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in _sources(*PROJECT)}


def test_tasks_never_import_airflow() -> None:
    found = [
        f"{_rel(p)}:{line} imports {name}"
        for p in _sources("tasks", "config")
        for name, line in _imports(p)
        if name == "airflow" or name.startswith("airflow.")
    ]
    assert not found, "tasks/ and config/ must run without Airflow:\n" + "\n".join(found)


def test_stages_import_only_what_comes_before_them() -> None:
    found = []
    for path in _sources("tasks"):
        parts = path.relative_to(ROOT / "tasks").parts
        if len(parts) < 2:
            continue
        stage = parts[0]
        allowed = STAGE_DEPENDENCIES[stage] | {stage}
        for name, line in _imports(path):
            bits = name.split(".")
            if bits[0] == "tasks" and len(bits) > 1 and bits[1] not in allowed:
                found.append(f"{_rel(path)}:{line} ({stage}) imports {name}")
    assert not found, "a stage imports a later stage (see ARCHITECTURE.md):\n" + "\n".join(found)


def test_only_packages_sit_directly_in_tasks() -> None:
    loose = [p.name for p in (ROOT / "tasks").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"tasks/ holds one package per stage; loose modules: {loose}"
    assert {p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        STAGE_DEPENDENCIES
    )


def _import_graph() -> dict[str, set[str]]:
    modules = _project_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name, _ in _imports(path):
            if name in modules and name != module:
                graph[module].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def _oversized() -> Iterator[tuple[str, str]]:
    for path in _sources("tasks", "plugins", "config"):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            yield _rel(path), f"{lines} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or start) - start + 1
                if length > MAX_FUNCTION_LINES:
                    yield f"{_rel(path)}:{node.name}", f"{length} lines (line {start})"


def test_modules_and_functions_stay_small() -> None:
    over = [f"{where}: {size}" for where, size in _oversized() if where not in DECLARATIONS]
    assert not over, (
        f"modules over {MAX_MODULE_LINES} lines or functions over {MAX_FUNCTION_LINES} lines:\n"
        + "\n".join(over)
    )


def test_declared_exceptions_are_still_needed() -> None:
    oversized = dict(_oversized())
    stale = [where for where in DECLARATIONS if where not in oversized]
    assert not stale, f"within the limits now, drop them from DECLARATIONS: {stale}"
