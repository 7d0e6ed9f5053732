"""The package's import graph: no cycles, and imports that flow one way.

The graph is read from the source with ``ast``: every ``import`` statement in
every ``.py`` file under ``skopt_nn/``, at module level and inside functions,
plus the names a package's ``__init__`` exports lazily (``_LAZY_EXPORTS``),
which are imports that merely happen on first use. Nothing here names a file
path: modules are found by walking the folder, and each module's concern is
read from the components of its dotted name, so the checks keep working when
modules move into subpackages (``skopt_nn.search.spaces`` belongs to the
search layer through either of its names).
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import skopt_nn

PACKAGE_DIR = pathlib.Path(skopt_nn.__file__).resolve().parent

# Layers from the bottom up. A module may depend on its own layer and those
# below it, never on one above, directly or through other modules. A module
# belongs to the layer of the leftmost component of its dotted name found
# here (a subpackage decides for all its modules); modules found in no layer
# (plotting, the version, the package itself) are free, but what
# they import still counts for whoever imports them.
LAYERS = (
    ("specs", {"specs"}),
    ("estimators", {"estimators", "training"}),
    ("persistence", {"persistence"}),
    ("search", {"search"}),
    ("cli", {"cli", "__main__"}),
)


def find_modules(package_dir):
    """``{dotted name: (path, is_package)}`` for every module under ``package_dir``."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _absolute(name, level, package):
    """The absolute module that ``from <level dots><name> import ...`` names."""
    if not level:
        return name
    base = package.split(".")
    base = base[: len(base) - level + 1]
    return ".".join(base + ([name] if name else []))


def import_graph(package_dir):
    """``{module: set of the package's modules it imports}``, at any level."""
    modules = find_modules(package_dir)
    top = package_dir.name
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node.module, node.level, package)
                for alias in node.names:
                    # ``from pkg import sub`` imports the submodule; ``from pkg
                    # import name`` runs the package's ``__init__``.
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else source)
            elif (
                is_package
                and isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_LAZY_EXPORTS" for t in node.targets)
            ):
                for where in ast.literal_eval(node.value).values():
                    level = len(where) - len(where.lstrip("."))
                    targets.add(_absolute(where.lstrip(".") or None, level, package))
        graph[name] = {t for t in targets if t in modules and t != name and t.split(".")[0] == top}
    return graph


def find_cycles(graph):
    """Every strongly connected group of two or more modules, as a sorted list each."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _path_between(graph, start, goal):
    """One import chain from ``start`` to ``goal`` (breadth first), for messages."""
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph.get(node, ())):
                if other not in previous:
                    previous[other] = node
                    following.append(other)
        frontier = following
    chain, node = [], goal
    while node is not None:
        chain.append(node)
        node = previous.get(node)
    return " -> ".join(reversed(chain))


def layer_of(module):
    """Position and name of the module's layer, or None for a free module."""
    for part in module.split(".")[1:]:
        for position, (layer, members) in enumerate(LAYERS):
            if part in members:
                return position, layer
    return None


def layer_violations(graph):
    """``(module, layer, higher module, its layer, chain)`` for each upward dependency."""
    found = []
    for module in sorted(graph):
        own = layer_of(module)
        if own is None:
            continue
        reached, frontier = set(), [module]
        while frontier:
            node = frontier.pop()
            for other in graph.get(node, ()):
                if other not in reached:
                    reached.add(other)
                    frontier.append(other)
        for other in sorted(reached):
            theirs = layer_of(other)
            if theirs is not None and theirs[0] > own[0]:
                found.append((module, own[1], other, theirs[1], _path_between(graph, module, other)))
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE_DIR)


def test_the_walker_sees_module_and_function_level_imports(graph):
    # Module level: the estimators are built on the shared base.
    assert "skopt_nn.training._base" in graph["skopt_nn.estimators"]
    # Function level: the plots import matplotlib's helpers and the search
    # module only when drawn, and the graph still records the latter.
    assert "skopt_nn.search._engines" in graph["skopt_nn.plotting"]
    # The package's lazy exports count as imports of their modules.
    assert "skopt_nn.estimators" in graph["skopt_nn"]
    # Every module of the package is a node, the folder's layout whatever it is.
    assert set(graph) == set(find_modules(PACKAGE_DIR))


def test_no_import_cycle_in_the_package(graph):
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(
        _path_between(graph, group[0], group[-1]) + f" -> ... -> {group[0]}" for group in cycles
    )


def test_every_layered_module_is_in_the_package(graph):
    # A name in LAYERS that matches nothing is a rule that checks nothing
    # (a module renamed without updating the table).
    parts = {part for module in graph for part in module.split(".")[1:]}
    stale = {name for _, members in LAYERS for name in members} - parts
    assert stale == set()


def test_imports_flow_down_the_layers(graph):
    # Specs never import estimators; estimators never import search or the
    # command line; search never imports the command line. Indirect
    # dependencies (through a free module or the package) count as well.
    violations = layer_violations(graph)
    assert violations == [], "\n".join(
        f"{module} ({layer}) depends on {other} ({theirs}): {chain}"
        for module, layer, other, theirs, chain in violations
    )


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_function_level_cycle_is_found(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "def f():\n    from ..a import thing\n",
        "pkg/b.py": "def g():\n    from .sub.b import f\n",
    })
    graph = import_graph(tmp_path / "pkg")
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.b"]]


def test_a_lazy_export_through_the_package_closes_a_cycle(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "_LAZY_EXPORTS = {'Model': '.estimators'}\n",
        "pkg/estimators.py": "def f():\n    from pkg import __version__\n",
    })
    assert find_cycles(import_graph(tmp_path / "pkg")) == [["pkg", "pkg.estimators"]]


def test_an_indirect_upward_import_is_a_violation(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/specs/__init__.py": "",
        "pkg/specs/pruning.py": "from .. import helpers\n",
        "pkg/helpers.py": "def f():\n    import pkg.estimators\n",
        "pkg/estimators.py": "",
    })
    violations = layer_violations(import_graph(tmp_path / "pkg"))
    assert [(v[0], v[2]) for v in violations] == [("pkg.specs.pruning", "pkg.estimators")]
    assert violations[0][4] == "pkg.specs.pruning -> pkg.helpers -> pkg.estimators"


def test_every_public_name_loads_from_the_package():
    namespace = {}
    exec("from skopt_nn import *", namespace)
    assert set(skopt_nn.__all__) <= set(namespace)
    assert set(skopt_nn.__all__) <= set(dir(skopt_nn))
    from skopt_nn.estimators import NNClassifier

    assert skopt_nn.NNClassifier is NNClassifier
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        skopt_nn.NoSuchThing  # noqa: B018


_HELP_PROBE = """
import contextlib, io, sys
from skopt_nn.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(code, out.getvalue().startswith("usage: skopt-nn"),
      *sorted(m for m in ("torch", "sklearn", "skorch", "pandas") if m in sys.modules))
"""


def _run_python(*args):
    env = dict(os.environ)
    # The checkout under test first, as when the tests run from it.
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_DIR.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["tune", "--help"],
                                  ["predict", "--help"], ["inspect", "--help"], ["--version"]])
def test_help_answers_without_importing_torch(argv):
    result = _run_python("-c", _HELP_PROBE, *argv)
    assert result.returncode == 0, result.stderr
    code, *rest = result.stdout.split()
    assert code == "0"
    if argv != ["--version"]:
        assert rest[0] == "True"
    # Only the command's own modules load: no torch, sklearn, skorch or pandas.
    assert rest[1:] == []


def test_python_m_skopt_nn_help_prints_usage():
    result = _run_python("-m", "skopt_nn", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: skopt-nn")
    assert "demo" in result.stdout and "tune" in result.stdout
