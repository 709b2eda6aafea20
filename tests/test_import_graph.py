"""The package's import graph, read from the source (every import, the lazy ones inside
functions included): no module imports itself through others, and no layer imports one above it.

Layers, lowest first (a module may import its own layer and those below):
  0 foundations   errors, rundir, signals, startup, hardware, distributed, event_writer, sharding,
                  config_recipes, config_lib, compile_cache
  1 inputs        masking, data, envs
  2 models        models, convert
  3 methods       eval, export, checkpoint
  4 training      train, world_model, planning, aot
  5 interface     commands, cli, __main__, the package itself
"""

import ast
import os

import jepa_jax

PACKAGE_DIR = os.path.dirname(jepa_jax.__file__)
LAYERS = {
    **dict.fromkeys(
        ("errors", "rundir", "signals", "startup", "hardware", "distributed", "event_writer"), 0
    ),
    **dict.fromkeys(("sharding", "config_recipes", "config_lib", "compile_cache"), 0),
    **dict.fromkeys(("masking", "data", "envs"), 1),
    **dict.fromkeys(("models", "convert"), 2),
    **dict.fromkeys(("eval", "export", "checkpoint"), 3),
    **dict.fromkeys(("train", "world_model", "planning", "aot"), 4),
    **dict.fromkeys(("commands", "cli", "__main__", ""), 5),
}


def package_modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of jepa_jax."""
    modules = {}
    for directory, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3]
                dotted = rel.replace(os.sep, ".").removesuffix(".__init__")
                modules[dotted] = path
    return modules


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod.
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets.update(resolve(n) for n in names if n.startswith("jepa_jax"))
        targets.discard(None)
        targets.discard(module)
        graph[module] = targets
    return graph


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage or top-level module ('' for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = import_graph(package_modules())
    assert cycles(graph) == []
    # Parent packages count too: a subpackage's __init__ importing a module that imports the
    # subpackage back would be a cycle above.
    assert "jepa_jax.train.loop" in graph and "jepa_jax.eval.pretrain_probe" in graph


def test_no_layer_imports_a_layer_above():
    graph = import_graph(package_modules())
    units = {unit(m) for m in graph}
    assert units <= set(LAYERS), f"modules with no layer: {sorted(units - set(LAYERS))}"
    upward = sorted(
        f"{m} -> {t}" for m, ts in graph.items() for t in ts if LAYERS[unit(t)] > LAYERS[unit(m)]
    )
    assert upward == []


def test_the_checker_sees_cycles_and_upward_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert unit("jepa_jax.train.loop") == "train" and unit("jepa_jax.cli") == "cli"
