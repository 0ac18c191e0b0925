"""The offline bundle's lists: with what node.txt assumes a GPU node has, the wheels of wheels.txt
complete everything the project needs, at the versions these tests run with."""

import platform
import re
from importlib import metadata

from packaging.requirements import Requirement

from helpers.runs import ROOT

LISTS = ROOT / "scripts" / "offline_bundle"


def _lines(name: str) -> list[str]:
    lines = (line.split("#")[0].strip() for line in (LISTS / name).read_text().splitlines())
    return [line for line in lines if line]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _bundled_here() -> dict[str, Requirement]:
    """wheels.txt's requirements for the Python running the tests."""
    requirements = [Requirement(line) for line in _lines("wheels.txt")]
    return {_normal(r.name): r for r in requirements if r.marker is None or r.marker.evaluate()}


def _needs(distribution: str) -> set[str]:
    needs = set()
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            needs.add(_normal(requirement.name))
    return needs


def test_the_node_and_the_bundle_cover_every_requirement_of_the_project():
    node = {_normal(name) for name in _lines("node.txt")}
    bundled = _bundled_here()
    missing, seen, todo = set(), set(), ["sgmod-study"]
    while todo:  # the project's requirements, and theirs through the bundled packages
        for need in _needs(todo.pop()) - seen:
            seen.add(need)
            if need in bundled:
                todo.append(need)
            elif need not in node:
                missing.add(need)
    assert not missing, f"neither bundled (wheels.txt) nor on the node (node.txt): {sorted(missing)}"
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "optuna", "sqlalchemy"} <= seen & set(bundled)
    assert not node & set(bundled)


def test_the_bundle_pins_the_versions_installed_here():
    for name, requirement in _bundled_here().items():
        installed = metadata.version(name)
        assert requirement.specifier.contains(installed), f"{name}: wheels.txt {requirement}, installed {installed}"


def test_every_bundle_line_has_a_pinned_version_and_python_3_10_gets_its_own_sqlalchemy():
    requirements = [Requirement(line) for line in _lines("wheels.txt")]
    assert all(str(r.specifier).startswith("==") for r in requirements)
    for_310 = {
        _normal(r.name): str(r.specifier)
        for r in requirements
        if r.marker is None or r.marker.evaluate({"python_version": "3.10"})
    }
    assert for_310["sqlalchemy"].startswith("==2.0") and {"greenlet", "tomli"} <= set(for_310)
    assert platform.python_implementation() == "CPython"
