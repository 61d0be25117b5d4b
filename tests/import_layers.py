"""The import rules of the package, checked from the source (CI runs this).

::

    python tests/import_layers.py                       # the evo_nos package of this repo
    python tests/import_layers.py PACKAGE_DIR --layers core,optim,...

Every import of every module is read with :mod:`ast` -- at module level, inside
functions, classes, ``try`` and ``if`` blocks alike (``if TYPE_CHECKING:`` included) --
plus ``importlib.import_module("...")`` / ``__import__("...")`` with a constant name.
Relative imports are resolved; ``from P.x import y`` is an import of ``P.x.y`` when ``y``
is a submodule, else of ``P.x``.  Running a submodule also runs its parent packages'
``__init__``; that implicit edge is ignored, but an explicit ``import P`` or
``from P import name`` (``name`` not a submodule) is an import of ``P/__init__.py``.

Three rules, each offence reported as ``file:line``:

(a) no import cycle among the package's modules;
(b) no import up the layer order (same layer is fine): the layers are the subpackages
    ``P/<layer>/`` in the given order; the package's top-level modules (``P/run.py``,
    the command-line shims) belong to the last layer (``cli``); ``P/__init__.py`` is
    the public API, above every layer (it may import anything, nothing may import it);
(c) no private name (``_x``, not a dunder) imported from another module of the package
    (a private submodule may be imported only from inside its own package).

Exit status 0 with a one-line summary when clean, 1 with the offences otherwise, 2 on
bad arguments.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "evo_nos"
LAYERS = ("core", "optim", "operators", "fitness", "strategies", "search", "tracking",
          "experiments", "cli")
API = "api"                       # the layer name of the package's __init__.py


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` at ``file:line``."""

    source: str                   # dotted module names
    target: str
    file: str                     # as reported (relative to the package's parent folder)
    line: int
    names: tuple = ()             # the names a ``from`` import takes from ``target``

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Report:
    modules: dict                 # dotted name -> layer name
    imports: list                 # every Import inside the package
    offences: list = field(default_factory=list)   # "file:line: kind: message"
    layers: tuple = LAYERS

    @property
    def clean(self) -> bool:
        return not self.offences

    def summary(self) -> str:
        order = " < ".join(self.layers + (API,))
        return (f"import layers clean: {len(self.modules)} modules, {len(self.imports)} "
                f"imports inside the package, {len(self.layers)} layers ({order}); "
                "no cycles, no upward imports, no private names")


# -- reading the package --------------------------------------------------------------------
def module_files(package_dir: Path) -> dict:
    """Dotted module name -> file, for every .py file of the package."""
    package_dir = Path(package_dir).resolve()
    root = package_dir.name
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        if any(part == "__pycache__" or not part.replace(".py", "").isidentifier()
               for part in rel.parts):
            continue
        parts = [root, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str, root: str, layers: tuple, packages: set) -> str | None:
    """The layer a module belongs to: its subpackage under the root, the last layer for
    top-level modules, API for the root's __init__; None for an unlisted subpackage."""
    parts = module.split(".")
    if parts == [root]:
        return API
    head = parts[1]
    if head in layers:
        return head
    if len(parts) == 2 and f"{root}.{head}" not in packages:
        return layers[-1]            # a top-level module (the command-line shims)
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None):
    """The absolute module a ``from .{level}name import ...`` in ``module`` means."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(base) - 1:
        return None
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _known_prefix(name: str, modules) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _dynamic_import_name(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")``."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else \
        func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and \
            not arg.value.startswith("."):
        return arg.value
    return None


def read_imports(package_dir: Path, modules: dict, offences: list) -> list:
    """Every import of the package's modules that lands inside the package."""
    package_dir = Path(package_dir).resolve()
    root = package_dir.name
    shown_from = package_dir.parent
    edges = []
    for module, path in modules.items():
        shown = path.relative_to(shown_from).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as err:
            offences.append(f"{shown}:{err.lineno}: syntax: cannot parse ({err.msg})")
            continue

        def add(target: str, line: int, names=()) -> None:
            edges.append(Import(module, target, shown, line, tuple(names)))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        target = _known_prefix(alias.name, modules)
                        if target is None:
                            offences.append(f"{shown}:{node.lineno}: unresolved: "
                                            f"{alias.name} is not a module of {root}")
                        else:
                            add(target, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve_relative(module, _is_package(path), node.level,
                                             node.module)
                    if base is None:
                        offences.append(f"{shown}:{node.lineno}: unresolved: relative "
                                        f"import beyond the top of {root}")
                        continue
                else:
                    base = node.module or ""
                if base != root and not base.startswith(root + "."):
                    continue
                if base not in modules:
                    offences.append(f"{shown}:{node.lineno}: unresolved: {base} is not a "
                                    f"module of {root}")
                    continue
                plain = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and sub in modules:
                        add(sub, node.lineno)           # a submodule
                    else:
                        plain.append(alias.name)
                if plain:
                    add(base, node.lineno, plain)
            elif isinstance(node, ast.Call):
                name = _dynamic_import_name(node)
                if name and (name == root or name.startswith(root + ".")):
                    target = _known_prefix(name, modules)
                    if target is not None:
                        add(target, node.lineno)
    return edges


# -- the rules ------------------------------------------------------------------------------
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def check_cycles(edges: list) -> list:
    graph = nx.DiGraph()
    where: dict = {}
    for e in edges:
        if e.source != e.target:
            graph.add_edge(e.source, e.target)
            where.setdefault((e.source, e.target), []).append(e)
    offences = []
    components = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    for component in sorted(components):
        sub = graph.subgraph(component)
        cycles = sorted(itertools.islice(nx.simple_cycles(sub), 20), key=len)
        shown = [" -> ".join(c + [c[0]]) for c in cycles]
        lines = [f"import cycle among {len(component)} modules: {', '.join(component)}"]
        lines += [f"    cycle: {text}" for text in shown]
        for (a, b) in sorted(sub.edges()):
            for e in where[(a, b)]:
                lines.append(f"    {e.where}: {a} imports {b}")
        first = where[sorted(sub.edges())[0]][0]
        offences.append(f"{first.where}: cycle: " + "\n".join(lines))
    return offences


def check_layers(edges: list, layer: dict, layers: tuple) -> list:
    rank = {name: i for i, name in enumerate(layers)}
    rank[API] = len(layers)
    offences = []
    for e in edges:
        a, b = layer[e.source], layer[e.target]
        if a is None or b is None or e.source == e.target:
            continue
        if rank[b] > rank[a]:
            offences.append(f"{e.where}: upward: {e.source} ({a}, layer {rank[a]}) imports "
                            f"{e.target} ({b}, layer {rank[b]})")
    return offences


def check_private(edges: list, modules) -> list:
    offences = []
    for e in edges:
        if e.source == e.target:
            continue
        for name in e.names:
            if _private(name):
                offences.append(f"{e.where}: private: {e.source} imports {name} from "
                                f"{e.target}")
        # a private submodule (``P.core._x``) is for its own package only
        parts = e.target.split(".")
        for i, part in enumerate(parts):
            if _private(part):
                owner = ".".join(parts[:i])
                if not (e.source == owner or e.source.startswith(owner + ".")):
                    offences.append(f"{e.where}: private: {e.source} imports the private "
                                    f"module {'.'.join(parts[:i + 1])}")
                break
    return offences


def check(package_dir: Path = PACKAGE_DIR, layers=LAYERS) -> Report:
    """Read the package at ``package_dir`` and check the three rules against ``layers``
    (lowest first)."""
    package_dir = Path(package_dir).resolve()
    layers = tuple(layers)
    if not (package_dir / "__init__.py").is_file():
        raise ValueError(f"{package_dir} is not a package (no __init__.py)")
    if not layers or len(set(layers)) < len(layers):
        raise ValueError(f"give each layer once (got {list(layers)})")
    root = package_dir.name
    files = module_files(package_dir)
    packages = {m for m, p in files.items() if _is_package(p)}
    layer = {m: layer_of(m, root, layers, packages) for m in files}
    offences = []
    for m, name in layer.items():
        if name is None:
            shown = files[m].relative_to(package_dir.parent).as_posix()
            offences.append(f"{shown}:1: layer: {m} is in no layer (layers: "
                            f"{', '.join(layers)})")
    edges = read_imports(package_dir, files, offences)
    offences += check_cycles(edges)
    offences += check_layers(edges, layer, layers)
    offences += check_private(edges, files)
    return Report(layer, edges, offences, layers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python tests/import_layers.py",
        description="Check the package's imports: no cycles, no upward imports across "
                    "the layers, no private names from other modules.")
    p.add_argument("package_dir", nargs="?", default=str(PACKAGE_DIR),
                   help=f"the package folder (default {PACKAGE_DIR})")
    p.add_argument("--layers", default=",".join(LAYERS),
                   help="the layers, lowest first, comma-separated (default %(default)s)")
    args = p.parse_args(argv)
    layers = tuple(x.strip() for x in args.layers.split(",") if x.strip())
    try:
        report = check(Path(args.package_dir), layers)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if report.clean:
        print(report.summary())
        return 0
    for offence in report.offences:
        print(offence)
    print(f"{len(report.offences)} import offence(s) in {len(report.modules)} modules "
          f"({len(report.imports)} imports inside the package)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
