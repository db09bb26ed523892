"""The house's rules, read from the code's own imports (``ast``, nothing run): no import circles, the probe
never imports the device or the department, hardware/ never imports the probe, and no module takes another
package's private names (a ratchet: the list of those still left may only shrink)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("probe", "agent_api", "hardware", "lab")

# Private names still imported across packages, to be removed by issue 16's ruleset and contract steps; a name
# that is no longer imported must leave this list (the test says so), and no new one may join it.
KNOWN_PRIVATE = {
    ("agent_api.dept_rules", "probe.rules", "_Data"),
    ("agent_api.dept_rules", "probe.rules", "_parse"),
    ("agent_api.dept_rules", "probe.rules", "_validate"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:  # Alembic's scripts are loaded by file, never imported
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for every import anywhere in the module."""
    return _IMPORTS.setdefault(name, list(_read_imports(name, path)))


_IMPORTS: dict[str, list[tuple[str, str | None, int]]] = {}


def _read_imports(name: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # ``from probe import cli_stage``: the module itself
                    yield sub, None, node.lineno
                else:
                    yield base, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_finder_sees_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _circles(_graph()) == []


def _offending(source: str, forbidden: str) -> list[str]:
    return [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
            for name in MODULES if name == source or name.startswith(source + ".")
            for target, _, line in _imports(name, MODULES[name])
            if target == forbidden or target.startswith(forbidden + ".")]


def test_the_probe_never_imports_the_device_or_the_department():
    assert _offending("probe", "agent_api") == []


def test_hardware_never_imports_the_probe():
    assert _offending("hardware", "probe") == []


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_crosses_a_package():
    # A private name belongs to the package of the module that defines it; only that package's modules take it.
    crossing = set()
    for name, path in MODULES.items():
        for target, taken, _ in _imports(name, path):
            if target not in MODULES:
                continue
            owner = _package(target)
            private = _private(taken) if taken is not None else _private(target.rpartition(".")[2])
            if private and not (name == owner or name.startswith(owner + ".")):
                crossing.add((name, target, taken or target))
    assert crossing - KNOWN_PRIVATE == set(), "a private name is taken from another package"
    assert KNOWN_PRIVATE - crossing == set(), "no longer imported: remove it from KNOWN_PRIVATE"
