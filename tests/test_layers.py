"""The package's layering, tested as drawn. Imports are read from the source (every `import`
statement, module level or inside a function), so an import hidden in a function counts too.

The packages, bottom up (`LEVELS`):

    config < vocabulary < data < exam, modeling < llm < tasks (training, evaluation, qa, judge, sweep, audit)

config holds the schemas and generic validation; vocabulary the words every layer shares (choice
labels, a question, a scored answer); data the training and exam files as records; exam the exam's
files, prompts, answer reading and scoring; modeling the models and adapters; llm every way to reach
a model (generation, log-likelihoods, endpoints, the server). A package imports only packages on a
lower level: peers on one level never import each other, so no task imports another task. Tasks are
reached from the entry layer only, by name (`medtune.jobs`), never by an import statement. The
utilities beside the levels (errors, io, storage, reporting, tracking, ...) are held to one rule:
no import cycle, between modules or between packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
TASK_PACKAGES = (
    "medtune.training",
    "medtune.evaluation",
    "medtune.qa",
    "medtune.judge",
    "medtune.sweep",
    "medtune.audit",
)
LEVELS = [
    ("config",),
    ("vocabulary",),
    ("data",),
    ("exam", "modeling"),
    ("llm",),
    tuple(name.removeprefix("medtune.") for name in TASK_PACKAGES),
]
LEVEL_OF = {package: level for level, packages in enumerate(LEVELS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "medtune").rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The medtune module an import names: itself, or the longest module prefix (`from a.b import c`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    """The medtune modules `module` imports anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name) if name.startswith("medtune") else None
            if target and target != module:
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(planted) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_reads_lazy_imports_too():
    # training.task imports the model description inside a function only
    assert "medtune.modeling.description" in GRAPH["medtune.training.task"]
    assert len(GRAPH) > 100


def test_src_medtune_has_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles in src/medtune:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_config_imports_only_config_and_errors():
    outside = {
        module: sorted(t for t in targets if not t.startswith("medtune.config") and t != "medtune.errors")
        for module, targets in GRAPH.items()
        if module.startswith("medtune.config")
    }
    assert not {m: t for m, t in outside.items() if t}, outside


@pytest.mark.parametrize("layer", ["medtune.rules", "medtune.jobs", "medtune.config"])
def test_lower_layers_import_no_task_module(layer):
    reached = {t for m, targets in GRAPH.items() if m.startswith(layer) for t in targets}
    assert not {t for t in reached if t.startswith(TASK_PACKAGES)}


def test_importing_medtune_config_loads_no_task_module():
    """The same, as Python sees it: import every config module in a fresh interpreter."""
    config_modules = [m for m in MODULES if m.startswith("medtune.config")]
    code = (
        f"import importlib, sys\nfor m in {config_modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('medtune'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(config_modules) <= set(loaded)
    assert [m for m in loaded if not m.startswith("medtune.config") and m not in ("medtune", "medtune.errors")] == []


def package_of(module: str) -> str:
    """The top-level package (or module) under medtune that `module` belongs to."""
    return module.split(".")[1] if "." in module else module


def level_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports from one levelled package into another on the same or a higher level."""
    found = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            into = package_of(target)
            if source != into and source in LEVEL_OF and into in LEVEL_OF and LEVEL_OF[into] >= LEVEL_OF[source]:
                found.append(f"{module} -> {target}")
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        packages.setdefault(source, set()).update(package_of(t) for t in targets if package_of(t) != source)
    for targets in list(packages.values()):
        for target in targets:
            packages.setdefault(target, set())
    return packages


def test_every_package_on_a_level_exists():
    assert {name for name in LEVEL_OF} <= {package_of(m) for m in MODULES}


def test_the_level_check_finds_planted_breaches():
    planted = {
        "medtune.data.readers": {"medtune.exam.igakuqa"},  # up a level
        "medtune.training.task": {"medtune.evaluation.task"},  # a task importing a task
        "medtune.exam.igakuqa": {"medtune.modeling.load"},  # a peer on its own level
        "medtune.llm.hf": {"medtune.data.readers", "medtune.errors"},  # down, and a utility: fine
    }
    assert level_breaches(planted) == [
        "medtune.data.readers -> medtune.exam.igakuqa",
        "medtune.exam.igakuqa -> medtune.modeling.load",
        "medtune.training.task -> medtune.evaluation.task",
    ]


def test_packages_import_only_packages_on_lower_levels():
    found = level_breaches(GRAPH)
    assert not found, "imports against the levels (see the module docstring):\n" + "\n".join(found)


def test_no_task_module_is_imported_outside_the_tasks():
    """The entry layer reaches a task by its name (medtune.jobs), so no import statement names one."""
    found = [
        f"{module} -> {target}"
        for module, targets in sorted(GRAPH.items())
        if not module.startswith(TASK_PACKAGES)
        for target in sorted(targets)
        if target.startswith(TASK_PACKAGES)
    ]
    assert not found, found


def test_no_import_cycle_between_packages():
    found = cycles(package_graph(GRAPH))
    assert not found, "package-level import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_llm_imports_no_task_package():
    """Model access sits below every task: evaluation, QA generation, the judge and training reach a
    model through medtune.llm, never the other way round."""
    found = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if package_of(module) == "llm"
        for target in targets
        if target.startswith(TASK_PACKAGES)
    )
    assert not found, found
    assert {"medtune.llm.protocol", "medtune.llm.hf", "medtune.llm.vllm", "medtune.llm.endpoint"} <= set(MODULES)


def test_the_evaluation_has_no_backends_of_its_own():
    """The exam backends live in medtune.llm (one protocol, `medtune.llm.protocol`); none is left behind."""
    assert not (SRC / "medtune" / "evaluation" / "backends").exists()
    assert not [m for m in MODULES if m.split(".")[:3] == ["medtune", "evaluation", "backends"]]


def test_one_http_client_speaks_to_servers():
    """Every request to a server goes through medtune.llm.http: no other module opens HTTP connections."""
    clients = sorted(
        module
        for module, path in MODULES.items()
        if any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and any(name in ("urllib.request", "http.client", "requests", "httpx") for name in imported_names(node))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert clients == ["medtune.llm.http", "medtune.llm.http_deadline"], clients


def imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]
