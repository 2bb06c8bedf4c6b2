"""The package's modules import only downward, so a reader can walk it top-down: no import cycle, no
module importing a layer above its own or a neighbour in its layer, no import hidden inside a function."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import tinyvideo

PACKAGE = Path(tinyvideo.__file__).parent
# Bottom to top. A unit is a top-level module or subpackage of tinyvideo; its modules may import each other
# (without a cycle) and any unit of a lower layer, never one of their own layer or above.
LAYERS = [
    ["errors", "files"],
    ["rows", "prompts", "video", "vision_towers", "connectors", "scoring"],
    ["answers", "config", "flags"],
    ["checkpoints"],
    ["modeling", "processing"],
    ["scratch", "decoding"],
    ["data"],
    ["train", "eval"],
    ["inference", "demo"],
    ["serve"],
    ["commands"],
    ["cli", "__init__"],
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = ["tinyvideo", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def layer(module: str) -> int:
    return RANK.get(unit(module), len(LAYERS))  # a unit with no layer counts as the top one


def imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The tinyvideo modules an import statement loads (`from tinyvideo.x import y` is `tinyvideo.x.y`
    when y is a module, else `tinyvideo.x`)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    return [name for name in names if name == "tinyvideo" or name.startswith("tinyvideo.")]


def imports(module: str) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function?) for every tinyvideo import of `module`."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    in_function = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(node)
    }
    return [
        (node.lineno, target, id(node) in in_function)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in imported(module, node)
    ]


def test_every_unit_has_a_layer():
    assert sorted({unit(module) for module in MODULES} - set(RANK)) == []


def test_no_import_cycle():
    graph = {module: {target for _, target, _ in imports(module) if target != module} for module in MODULES}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
    assert set(MODULES) <= set(order)


def test_imports_point_down():
    upward = [
        f"{module} line {line} imports {target} (layer {layer(module)} imports layer {layer(target)})"
        for module in MODULES
        for line, target, _ in imports(module)
        if unit(target) != unit(module) and layer(target) >= layer(module)
    ]
    assert upward == []


def test_no_import_inside_a_function():
    hidden = [f"{module} line {line} imports {target}" for module in MODULES for line, target, inside in imports(module) if inside]
    assert hidden == []
