"""The import graph, read statically (ast): the library has no cycles and no upward arrows.

Every import counts, also one inside a function (a lazy import is still an arrow). The command line
(``vimpac_cli``, a package of its own outside the library) sits above the flows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UPWARD = ("prefect", "vimpac_flows", "vimpac_tasks", "flows", "tasks", "tests", "bench", "vimpac_cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every dotted name an import in ``path`` names (``from a import b`` gives ``a`` and ``a.b``)."""
    module, names = module_name(path), set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports (a name resolves to its longest module prefix)."""
    files = {module_name(p): p for p in (REPO / package).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path):
            parts = name.split(".")
            found = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in files), None)
            if found and found != module:
                targets.add(found)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
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


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_library_has_no_import_cycles():
    assert cycles(import_graph("vimpac_core")) == []


@pytest.mark.parametrize("path", sorted((REPO / "vimpac_core").rglob("*.py")), ids=lambda p: module_name(p))
def test_the_library_imports_nothing_above_it(path):
    upward = {n for n in imported_names(path) if n.split(".")[0] in UPWARD}
    assert not upward, f"{module_name(path)} imports {sorted(upward)}"


def test_sideways_arrows_the_layout_forbids():
    graph = import_graph("vimpac_core")
    tokenizers_to_train = {(m, t) for m, ts in graph.items() for t in ts
                           if m.startswith("vimpac_core.tokenizers") and t.startswith("vimpac_core.train")}
    assert not tokenizers_to_train  # shared helpers live in neutral modules (e.g. vimpac_core.optim_state)
    assert "vimpac_core.train.launch" not in graph["vimpac_core.train.worker"]  # ranks use train.failures
    bench = {n for p in (REPO / "bench").rglob("*.py") for n in imported_names(p) if n.split(".")[0] == "tests"}
    assert not bench, f"bench imports {sorted(bench)}"


def test_orchestration_layers_point_down_only():
    """tasks never import flows or the command line; flows never import the command line."""
    for package, above in (("vimpac_tasks", ("vimpac_flows", "vimpac_cli")), ("vimpac_flows", ("vimpac_cli",))):
        for path in (REPO / package).rglob("*.py"):
            upward = {n for n in imported_names(path) if n.split(".")[0] in above}
            assert not upward, f"{module_name(path)} imports {sorted(upward)}"


def test_top_level_packages_carry_the_project_prefix():
    """Installed next to other projects, none of ours may be called plainly `flows` or `tasks`."""
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(pattern.startswith("vimpac_") for pattern in include), include
    assert not (REPO / "flows").exists() and not (REPO / "tasks").exists()
