"""Is this checkout installed, with every requirement of pyproject.toml satisfied?

Usage: ``python scripts/check_env.py [--extras ml,dev] [ROOT]``. Exits 0 when the project
is installed in editable mode from ROOT at the version in pyproject.toml and every
dependency (plus those of the named extras) is installed at an allowed version; exits 1
and prints what is missing otherwise. The set-up scripts use it to skip ``pip install``
when there is nothing to install. Standard library only, plus ``packaging`` (pip's copy
when the virtual environment has none of its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]


def _unmet(requirement: str, extra: str = "", depth: int = 0) -> list[str]:
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({"extra": extra}):
        return []
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return [f"{req.name} is not installed (needed: {requirement})"]
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return [f"{req.name} {installed} does not satisfy {requirement}"]
    problems: list[str] = []
    if depth == 0:  # one level of extras, e.g. psycopg[binary] -> psycopg-binary
        for wanted_extra in sorted(req.extras):
            for sub in metadata.requires(req.name) or []:
                if "extra" in sub:
                    problems += _unmet(sub, wanted_extra, depth + 1)
    return problems


def _editable_from(name: str, root: Path) -> str | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return f"{name} is not installed"
    text = dist.read_text("direct_url.json")
    if not text:
        return f"{name} is installed, but not from this checkout"
    info = json.loads(text)
    if not info.get("dir_info", {}).get("editable"):
        return f"{name} is installed, but not in editable mode"
    if info.get("url") != root.resolve().as_uri():
        return f"{name} is installed from {info.get('url')}, not from {root.resolve()}"
    return None


def check(root: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    problems: list[str] = []
    where = _editable_from(project["name"], root)
    if where is not None:
        problems.append(where)
    elif metadata.version(project["name"]) != project["version"]:
        problems.append(f"{project['name']} is installed at another version than pyproject.toml's")
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            problems.append(f"pyproject.toml has no extra {extra!r}")
            continue
        requirements += optional[extra]
    for requirement in requirements:
        problems += _unmet(requirement)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=".", type=Path)
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. ml,dev")
    args = parser.parse_args()
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    problems = check(args.root, extras)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
