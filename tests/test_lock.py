"""requirements.lock is what gets installed: it agrees with pyproject.toml's pins, and this environment (set
up by scripts/dev.sh with the lock as a constraint) holds exactly the locked versions."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_every_declared_requirement_is_locked_within_its_range() -> None:
    pins = locked()
    assert len(pins) > 100  # the whole tree, not only the direct requirements
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not in requirements.lock: run bash scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {req.name}=={pins[name]}, pyproject.toml asks {req.specifier}: "
            "run bash scripts/lock.sh"
        )


def test_this_environment_holds_the_locked_versions() -> None:
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    wrong = {
        name: f"installed {installed[name]}, locked {pin}"
        for name, pin in pins.items()
        # A local build (torch's +cpu wheel) is the locked release.
        if name in installed and Version(installed[name].public) != pin
    }
    assert not wrong, wrong
    missing = sorted(canonicalize_name(r.name) for r in declared() if canonicalize_name(r.name) not in installed)
    assert not missing, f"declared but not installed: {missing}"
