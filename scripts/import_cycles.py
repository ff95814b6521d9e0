"""Print the import cycles in engine, training and app; exit 1 if there is one.

Usage: ``.venv/bin/python scripts/import_cycles.py [--packages]``.

The graph is grimp's, the library import-linter uses: every ``import`` in the source counts,
inside functions and under ``if TYPE_CHECKING:`` too, as it does for import-linter.

- Module cycles (always checked): modules that import one another, directly or through others.
- ``--packages`` also checks package cycles: the children of one package importing one another,
  an import anywhere inside a child counting as the child's (what import-linter's
  ``acyclic_siblings`` contract checks; pyproject.toml lists the known ones it tolerates).

Each import that lies on a cycle is shown in one shortest cycle through it, so the output names
every import that would have to go for the graph to be acyclic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "training", "app")

Graph = Mapping[str, set[str]]  # importer -> the modules (or packages) it imports


def strongly_connected(edges: Graph) -> list[set[str]]:
    """The strongly connected components of two or more nodes (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(edges[start])))]
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return sorted(found, key=min)


def shortest_path(edges: Graph, start: str, goal: str, within: set[str]) -> list[str]:
    """A shortest import path from ``start`` to ``goal`` inside ``within`` (breadth first)."""
    came_from = {start: start}
    frontier = [start]
    while frontier and goal not in came_from:
        following = []
        for node in frontier:
            for target in sorted(edges.get(node, set()) & within):
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    path = [goal]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return path[::-1]


def cycles_of(edges: Graph, component: set[str]) -> list[list[str]]:
    """For each import inside ``component``, a shortest cycle through it; each cycle once."""
    seen: set[tuple[str, ...]] = set()
    found = []
    for importer in sorted(component):
        for imported in sorted(edges[importer] & component):
            cycle = [importer, *shortest_path(edges, imported, importer, component)]
            first = cycle.index(min(cycle[:-1]))  # the same cycle, read from another module
            key = tuple(cycle[first:-1] + cycle[:first])
            if key not in seen:
                seen.add(key)
                found.append([*key, key[0]])
    return found


def module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Direct imports between the project's own modules."""
    own = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    return {m: graph.find_modules_directly_imported_by(m) & own for m in own}


def sibling_edges(modules: Graph, package: str) -> dict[str, set[str]]:
    """Imports between the children of ``package``, each child standing for its subtree."""
    depth = package.count(".") + 2  # name components of a child

    def child(module: str) -> str | None:
        if not module.startswith(package + ".") or module.count(".") + 1 < depth:
            return None
        return ".".join(module.split(".")[:depth])

    edges: dict[str, set[str]] = {}
    for importer, imported in modules.items():
        source = child(importer)
        if source is None:
            continue
        edges.setdefault(source, set()).update(
            target for target in map(child, imported) if target not in (None, source))
    return edges


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", action="store_true",
                        help="also check cycles between the children of each package")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)  # no .grimp_cache in the checkout
    modules = module_edges(graph)
    cycles = 0
    for component in strongly_connected(modules):
        for cycle in cycles_of(modules, component):
            cycles += 1
            print("module cycle: " + " -> ".join(cycle))
    if args.packages:
        for package in sorted(m for m in modules if graph.find_children(m)):
            siblings = sibling_edges(modules, package)
            for component in strongly_connected(siblings):
                for cycle in cycles_of(siblings, component):
                    cycles += 1
                    print(f"package cycle in {package}: " + " -> ".join(cycle))

    kinds = "module or package" if args.packages else "module"
    where = ", ".join(PACKAGES)
    print(f"{cycles} {kinds} import cycle(s) in {where}" if cycles
          else f"no {kinds} import cycles in {where}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
