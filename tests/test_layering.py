"""The import layering of the package, read from the source: no module imports a module of a higher layer.

Layers, low to high: the basics (errors, registry, options); the core pieces (criteria, sparsity, schedule,
rundir, data, models); the pruner (layers, regrowth, pruner); tracking; training; the application (app, CLI,
sweeps, report, listing, saved runs). On top of the order: criteria, sparsity, data and models import no other core piece
than the basics (criteria may use sparsity's 2-D view), and imports used only for type hints
(``if TYPE_CHECKING:``) do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "prunelab"

LAYERS = [
    {"errors", "registry", "options", "resolvers"},
    {"criteria", "sparsity", "schedule", "rundir", "data", "models"},
    {"layers", "regrowth", "pruner"},
    {"tracking"},
    {"training"},
    {"app", "naming", "sweep", "sweeper", "listing", "report", "dashboard", "collapse", "config", "checks", "saved",
     "streams", "__main__", "__init__", "conf"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
#: core pieces and the only other units of their own layer they may import
SAME_LAYER = {"criteria": {"sparsity"}, "sparsity": set(), "schedule": set(), "rundir": set(), "data": set(),
              "models": set()}


def unit_of(module: str) -> str:
    """``prunelab.criteria.base`` -> ``criteria``; ``prunelab`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path) -> set[str]:
    """The prunelab modules ``path`` imports at run time (module level or inside functions)."""
    tree = ast.parse(path.read_text())
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "prunelab"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "prunelab":
                continue
            if node.module is None or target.count(".") == 0:  # `from . import data` / `from prunelab import x`
                out |= {f"{target}.{a.name}" for a in node.names}
            else:
                out.add(target)
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in SOURCES}
    assert units - set(RANK) == set(), "give new top-level modules a layer in LAYERS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_a_higher_layer(path):
    me = unit_of(module_name(path))
    for target in sorted(imports(path)):
        other = unit_of(target)
        if other == me or other not in RANK:
            continue
        assert RANK[other] <= RANK[me], f"{module_name(path)} (layer {RANK[me]}) imports {target} (layer {RANK[other]})"
        if me in SAME_LAYER and RANK[other] == RANK[me]:
            assert other in SAME_LAYER[me], f"{module_name(path)} imports {target}: core pieces stay independent"


def test_the_checker_sees_relative_imports_and_skips_type_hints(tmp_path):
    """The checker itself: relative imports resolve, TYPE_CHECKING imports are ignored."""
    fake = PACKAGE / "tracking" / "wandb.py"
    found = imports(fake)
    assert "prunelab.tracking.base" in found and "prunelab.errors" in found
    callbacks = imports(PACKAGE / "training" / "callbacks.py")
    assert "prunelab.pruner" not in callbacks  # only imported for type hints there
