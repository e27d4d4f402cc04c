#!/usr/bin/env python3
"""Fails when modules import each other in a circle, in any crate of the
workspace, or when a module names what a boundary below keeps from it.

A module is a file reached from a crate root by `mod` declarations; modules
and items under `#[cfg(test)]` are left out, as test code may reach anywhere.
An edge A -> B is a path in A's code that names an item of B: a `use`, or a
path written in place (`crate::x::Y`, `super::Y`, `child::Y`, `alias::Y`).
Paths are resolved through `pub use` re-exports to the module that defines the
item: `super::Thing` re-exported by `mod.rs` from a sibling is an edge to that sibling.

The rule, at every level of the module tree: the subtrees of sibling modules
depend on each other one way only. An edge from inside sibling A's subtree to
inside sibling B's counts as A -> B; a circle among siblings fails. A module
may use what its ancestors define (a `mod.rs` owns its children and often
hands them its `Context`), so edges between a module and its own ancestors or
descendants belong to no level.

The boundaries (BOUNDARIES): provider specifics (the ECS and BCC clients,
the transport) are named only inside `provider`, so the controller sees the
`Provider` trait, the model, the errors, the settings and `connect()`; and
`provider` and `token` name neither Kubernetes crates nor the API types.

Usage: check.py [ROOT ...]  (a directory with `src/lib.rs`, `src/main.rs` or
`src/bin/*.rs`; default: the workspace's packages). Exit status 1 on a circle.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# Per package (its library): (subtree, its modules only it may name) and
# (module, what it may not name: modules of the crate or other crates).
BOUNDARIES = {
    "secgroup-operator": {
        "sealed": [("provider", ["ecs", "baidu", "http", "endpoint", "denials"])],
        "apart": [
            ("provider", ["api", "controller", "kube", "k8s_openapi"]),
            ("token", ["api", "controller", "kube", "k8s_openapi"]),
        ],
    },
}


def strip(text: str) -> str:
    """The code without comments and with every string and char literal emptied."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (raw := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not re.match(r"\w", text[i - 1])):
            close = '"' + raw.group(1)
            j = text.find(close, i + raw.end())
            out.append('""')
            i = n if j < 0 else j + len(close)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and (char := re.match(r"'(\\.[^']*|[^\\'])'", text[i:])):
            out.append("' '")
            i += char.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def item_end(code: str, start: int) -> int:
    """Where the item starting at `start` ends: after its `;`, or its closing brace."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif code[i] == ";" and depth == 0:
            return i + 1
    return len(code)


def drop_test_items(code: str) -> str:
    """The code without the items marked `#[cfg(test)]`."""
    marker = re.compile(r"#\[cfg\(test\)\]")
    while match := marker.search(code):
        start = match.end()
        while attr := re.match(r"\s*#\[[^\]]*\]", code[start:]):
            start += attr.end()
        code = code[: match.start()] + code[item_end(code, start) :]
    return code


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path
    code: str
    children: dict[str, "Module"] = field(default_factory=dict)
    # name -> the crate-absolute path it stands for (None: another crate's)
    imports: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    globs: list[tuple[str, ...]] = field(default_factory=list)
    # Other crates the module names.
    crates: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return "::".join(self.path) or "crate"


def expand(tree: str) -> list[tuple[list[str], str]]:
    """`a::{b, c::{self, d as e}}` -> ([a, b], b), ([a, c], c), ([a, c, d], e)."""
    tokens = re.findall(rf"{IDENT}|::|[{{}},*]", tree)
    results: list[tuple[list[str], str]] = []

    def walk(prefix: list[str], i: int) -> int:
        """Reads one tree from token i; returns the index after it."""
        segments = list(prefix)
        alias = None
        while i < len(tokens) and tokens[i] not in (",", "}"):
            token = tokens[i]
            if token == "{":
                i += 1
                while tokens[i] != "}":
                    i = walk(segments, i)
                    if tokens[i] == ",":
                        i += 1
                return i + 1
            if token == "as":
                alias = tokens[i + 1]
                i += 1
            elif token != "::":
                segments.append(token)
            i += 1
        if segments and segments[-1] == "self":
            segments = segments[:-1]
        if segments:
            results.append((segments, alias or segments[-1]))
        return i

    walk([], 0)
    # `use x::Trait as _;` is still a dependency: give it a name no path can use.
    return [(segments, f"_#{n}" if alias == "_" else alias) for n, (segments, alias) in enumerate(results)]


USE = re.compile(r"\buse\s+(?P<tree>[^;]+);")
MOD = re.compile(rf"(?:\bpub(?:\s*\([^)]*\))?\s+)?\bmod\s+(?P<name>{IDENT})\s*;")
PATH = re.compile(rf"(?<![\w:]){IDENT}(?:\s*::\s*{IDENT})+")


class Crate:
    def __init__(self, root_file: Path):
        self.root = self.load((), root_file)

    def load(self, path: tuple[str, ...], file: Path) -> Module:
        code = drop_test_items(strip(file.read_text(encoding="utf-8")))
        module = Module(path, file, code)
        if file.name in ("lib.rs", "main.rs", "mod.rs"):
            base = file.parent
        else:
            base = file.parent / file.stem
        for match in MOD.finditer(code):
            name = match.group("name")
            child = base / f"{name}.rs"
            if not child.exists():
                child = base / name / "mod.rs"
            module.children[name] = self.load(path + (name,), child)
        return module

    def modules(self, module: Module | None = None):
        module = module or self.root
        yield module
        for child in module.children.values():
            yield from self.modules(child)

    def absolute(self, module: Module, segments: list[str]) -> tuple[str, ...] | None:
        """The crate-absolute form of a path written in `module`, or None for another crate's."""
        head, rest = segments[0], segments[1:]
        if head == "crate":
            return tuple(rest)
        if head == "self":
            return module.path + tuple(rest)
        if head == "super":
            base = list(module.path)
            while segments and segments[0] == "super":
                if not base:
                    return None
                base.pop()
                segments = segments[1:]
            return tuple(base) + tuple(segments)
        if head in module.children:
            return module.path + tuple(segments)
        if head in module.imports:
            target = module.imports[head]
            return None if target is None else target + tuple(rest)
        return None

    def read_imports(self) -> None:
        # Twice: an import may go through another module's import.
        for _ in range(2):
            for module in self.modules():
                for match in USE.finditer(module.code):
                    for segments, alias in expand(match.group("tree")):
                        if segments[-1] == "*":
                            target = self.absolute(module, segments[:-1])
                            if target is not None and target not in module.globs:
                                module.globs.append(target)
                            continue
                        target = self.absolute(module, segments)
                        module.imports[alias] = target
                        if target is None and segments[0] not in ("crate", "self", "super"):
                            module.crates.add(segments[0])

    def resolve(self, path: tuple[str, ...], depth: int = 0) -> Module | None:
        """The module that defines what `path` names, through re-exports."""
        module, i = self.root, 0
        while i < len(path) and path[i] in module.children:
            module = module.children[path[i]]
            i += 1
        if i < len(path) and depth < 16:
            name = path[i]
            if name in module.imports:
                target = module.imports[name]
                return None if target is None else self.resolve(target + path[i + 1 :], depth + 1)
        return module

    def edges(self):
        """(from, to, line) for every dependency between two modules of the crate."""
        self.read_imports()
        for module in self.modules():
            body = MOD.sub(" ", USE.sub(" ", module.code))
            for name, target in module.imports.items():
                if target is not None:
                    yield module, self.resolve(target), name
            for glob in module.globs:
                yield module, self.resolve(glob), "*"
            for match in PATH.finditer(body):
                segments = re.split(r"\s*::\s*", match.group(0))
                target = self.absolute(module, segments)
                if target is not None:
                    yield module, self.resolve(target), match.group(0)
                elif segments[0] not in ("crate", "self", "super"):
                    module.crates.add(segments[0])


def line_of(module: Module, via: str) -> int:
    """The first line of the module's file that shows `via`, for the report."""
    lines = module.file.read_text(encoding="utf-8").splitlines()
    for pattern in (re.escape(via), rf"(?<![\w:]){re.escape(via.split('::')[0])}\b"):
        for number, line in enumerate(lines, 1):
            if re.search(pattern, line) and not line.lstrip().startswith("//"):
                return number
    return 1


Edge = tuple[Module, Module, str]


def levels(crate: Crate) -> dict[tuple[str, ...], dict[str, dict[str, Edge]]]:
    """Per parent module: which child subtree depends on which, with one edge as evidence."""
    graphs: dict[tuple[str, ...], dict[str, dict[str, Edge]]] = {}
    for source, target, via in crate.edges():
        if target is None:
            continue
        s, t = source.path, target.path
        k = 0
        while k < min(len(s), len(t)) and s[k] == t[k]:
            k += 1
        if k == len(s) or k == len(t):
            continue  # the same module, or one is the other's ancestor
        graph = graphs.setdefault(s[:k], {})
        graph.setdefault(s[k], {}).setdefault(t[k], (source, target, via))
    return graphs


def strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Tarjan: the components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def circles(crate: Crate) -> list[tuple[str, list[str], list[Edge]]]:
    """(parent, the siblings in a circle, an edge for each dependency among them)."""
    result = []
    for parent, graph in sorted(levels(crate).items()):
        for component in strongly_connected(graph):
            edges = [graph[a][b] for a in component for b in component if b in graph.get(a, {})]
            result.append(("::".join(parent) or "crate", component, edges))
    return result


def within(path: tuple[str, ...], prefix: str) -> bool:
    return path[: len(prefix.split("::"))] == tuple(prefix.split("::"))


def crossings(crate: Crate, rules: dict) -> list[str]:
    """Every edge that crosses a boundary of `rules`, described."""
    found = []
    edges = [(s, t, via) for s, t, via in crate.edges() if t is not None]
    for subtree, inner in rules.get("sealed", []):
        for source, target, via in edges:
            sealed = any(within(target.path, f"{subtree}::{name}") for name in inner)
            if sealed and not within(source.path, subtree):
                found.append(
                    f"{source.file}:{line_of(source, via)}: {source.name} names {target.name} ({via}),"
                    f" which only {subtree} may name"
                )
    for subtree, banned in rules.get("apart", []):
        for source, target, via in edges:
            if within(source.path, subtree) and any(within(target.path, b) for b in banned):
                found.append(
                    f"{source.file}:{line_of(source, via)}: {source.name} names {target.name} ({via}),"
                    f" which {subtree} may not"
                )
        for module in crate.modules():
            if within(module.path, subtree):
                for name in sorted(module.crates & set(banned)):
                    found.append(f"{module.file}:{line_of(module, name)}: {module.name} names the crate {name}, which {subtree} may not")
    return found


def package(root_file: Path) -> str:
    """The name of the package whose `src/` holds `root_file`."""
    manifest = root_file.parent.parent / "Cargo.toml"
    text = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
    match = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.M | re.S)
    return match.group(1) if match else ""


def crate_roots(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        for name in ("lib.rs", "main.rs"):
            if (root / "src" / name).exists():
                files.append(root / "src" / name)
        files.extend(sorted((root / "src" / "bin").glob("*.rs")))
    return files


def main(argv: list[str]) -> int:
    workspace = Path(__file__).resolve().parents[2]
    roots = [Path(a) for a in argv] or [workspace, *sorted((workspace / "crates").iterdir())]
    failed = False
    for root_file in crate_roots(roots):
        crate = Crate(root_file)
        rules = BOUNDARIES.get(package(root_file), {}) if root_file.name == "lib.rs" else {}
        for line in crossings(crate, rules):
            failed = True
            print(f"boundary crossed: {line}")
        for parent, siblings, edges in circles(crate):
            failed = True
            print(f"import circle in {root_file}, among the modules of {parent}: {', '.join(siblings)}")
            for source, target, via in edges:
                print(f"  {source.file}:{line_of(source, via)}: {source.name} -> {target.name} ({via})")
    if not failed:
        print(f"no import circles and no boundary crossed in {len(crate_roots(roots))} crate roots")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
