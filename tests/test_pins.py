"""The UI toolkit is pinned to the range it is tested on, and the installed one is inside it.

A fresh install takes the newest Textual the pin allows; a release past the upper
bound (which may change the API the UI uses) is only taken after the bound is moved
and this suite has run on it.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def declared() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


@pytest.mark.parametrize("name", ["textual", "rich"])
def test_pinned_with_an_upper_bound(name: str) -> None:
    req = declared()[name]
    ops = {spec.operator for spec in req.specifier}
    assert ">=" in ops and "<" in ops, f"{name} must be pinned to a tested range, found {req}"


@pytest.mark.parametrize("name", ["textual", "rich"])
def test_installed_version_is_inside_the_pin(name: str) -> None:
    req = declared()[name]
    installed = Version(metadata.version(name))
    assert req.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed but pyproject.toml asks for {req.specifier}")
