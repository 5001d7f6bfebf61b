"""The layout holds: no import cycle between project modules, the ML core stays free of Django,
modules stay small enough to read in one sitting, and every page's view is named as its URL is."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("alignment_site", "users", "trainer", "bench")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name imported anywhere in the file (inside functions too), relative imports resolved."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a name that is an attribute resolves to its module)."""
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(path, module):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a list of module names."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_project_module_imports_another_that_imports_it_back():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_ml_core_reaches_no_django_and_no_other_project_package_statically():
    graph = import_graph()
    modules = project_modules()
    core = [m for m in graph if m == "trainer.core" or m.startswith("trainer.core.")]
    assert len(core) > 10
    reached, todo = set(), list(core)
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        todo.extend(graph[module])
    outside = sorted(m for m in reached if not (m == "trainer.core" or m.startswith("trainer.core.")))
    assert outside == [] or outside == ["trainer"], f"trainer.core imports {outside}"
    django = sorted(m for m in reached if any(n == "django" or n.startswith("django.")
                                              for n in _imported_names(modules[m], m)))
    assert django == [], f"these core modules import Django: {django}"


def test_importing_every_core_module_loads_no_django():
    core = sorted(m for m in project_modules() if m.startswith("trainer.core."))
    code = f"import sys, importlib\nfor m in {core!r}: importlib.import_module(m)\n" \
           "sys.exit('django imported' if any(k == 'django' or k.startswith('django.') for k in sys.modules) else 0)"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:] or result.stdout[-2000:]


def test_no_product_module_is_longer_than_a_sitting():
    long = {m: n for m, p in project_modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_every_page_view_is_named_as_its_url_and_lives_in_a_views_module():
    from alignment_site.urls import urlpatterns

    pages = [p for p in urlpatterns if getattr(p, "name", None) and p.name not in ("login", "logout")]
    assert len(pages) > 30
    for pattern in pages:
        view = pattern.callback
        assert view.__name__ == pattern.name, f"{pattern.name} is served by {view.__module__}.{view.__name__}"
        assert view.__module__.split(".")[-1] in ("views", "relay") or ".views." in view.__module__, view.__module__
