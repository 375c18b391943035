#!/usr/bin/env python3
"""Print the pinned runtime dependency closure of the given stockflow packages.

    runtime-requirements.py requirements/requirements.txt libs/runtime services/stock ...
    runtime-requirements.py requirements/requirements.txt "services/stock[replenishment]"
    runtime-requirements.py requirements/requirements.txt hatchling     # a name works too

requirements.txt is pip-compile output: one `name==version` pin per package followed by
`# via` lines naming the packages that pull it in. Read backwards, those lines are the
dependency graph of the lock, so the closure of the packages' declared dependencies
(pyproject.toml [project].dependencies, plus the [project.optional-dependencies] of an extra
asked for as `dir[extra]` or by another package's `name[extra]`) is found without a resolver or
the network, and the image gets exactly the lock's versions of what the services import and
none of the dev tools (pytest, mypy, ruff, kubernetes-validate, ...). Standard library only:
it runs in the image's build stage before anything is installed. Exits non-zero when a declared
dependency is not pinned in the lock (re-run `make lock`).
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Pins (name -> 'name==version' line) and the forward graph (parent -> children)."""
    pins: dict[str, str] = {}
    children: dict[str, set[str]] = defaultdict(set)
    current: str | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        match = PIN.match(raw)
        if match:
            current = norm(match.group(1))
            pins[current] = f"{match.group(1)}=={match.group(2)}"
            in_via = False
            continue
        if current is None or not line.startswith("#"):
            if line and not line.startswith("#"):
                current = None  # an option line such as --find-links
            continue
        comment = line.lstrip("#").strip()
        if comment.startswith("via"):
            in_via = True
            comment = comment[3:].strip()
        if in_via and comment and not comment.startswith("-r") and not comment.startswith("-c"):
            parent = NAME.match(comment)
            if parent:
                children[norm(parent.group(1))].add(current)
    return pins, children


def split_extras(text: str) -> tuple[str, set[str]]:
    """`stockflow-stock[replenishment]` (or `services/stock[replenishment]`) -> the rest and
    the extras."""
    base, _, rest = text.partition("[")
    extras, _, after = rest.partition("]")
    return (base + after).strip(), {norm(e) for e in extras.split(",") if e.strip()}


def declared(package_dirs: list[str]) -> tuple[set[str], set[str]]:
    """(third-party dependency names, own project names) of the given packages (or names)."""
    deps: set[str] = set()
    projects: dict[str, dict] = {}
    extras_of: dict[str, set[str]] = defaultdict(set)
    for arg in package_dirs:
        d, extras = split_extras(arg)
        if not (Path(d) / "pyproject.toml").exists():
            deps.add(norm(d))
            continue
        project = tomllib.loads((Path(d) / "pyproject.toml").read_text())["project"]
        projects[norm(project["name"])] = project
        extras_of[norm(project["name"])] |= extras
        for spec in project.get("dependencies", []):
            requirement, wanted = split_extras(spec)
            name = NAME.match(requirement)
            if name:
                deps.add(norm(name.group(1)))
                extras_of[norm(name.group(1))] |= wanted
    for own, project in projects.items():
        optional = project.get("optional-dependencies", {})
        for extra in extras_of[own]:
            deps |= {norm(n.group(1)) for spec in optional[extra] if (n := NAME.match(spec))}
    return deps - set(projects), set(projects)


def closure(lock_text: str, package_dirs: list[str]) -> list[str]:
    pins, children = parse_lock(lock_text)
    roots, _own = declared(package_dirs)
    missing = sorted(r for r in roots if r not in pins)
    if missing:
        raise SystemExit(f"not pinned in the lock: {', '.join(missing)} (run `make lock`)")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(children.get(name, ()))
    return sorted(pins[n] for n in seen)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(closure(Path(argv[0]).read_text(), argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
