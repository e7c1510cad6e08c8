"""The lock files agree with pyproject.toml (issue 19, point 7).

``make install``, ``make run`` and the Dockerfile install every dependency from a lock
file with ``pip --require-hashes``, then the project with ``--no-deps``: a dependency
added to pyproject.toml but not to the lock, or a range moved past its pin, would
otherwise go unnoticed until a fresh install failed or ran untested versions. The fix
for every failure here is ``make lock``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SERVICE_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

#: The platform the locks are resolved for (Makefile, `lock`): CPython 3.11, Linux x86_64.
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, Version]:
    """Normalized name -> pinned version; asserts every pin carries a sha256 hash."""
    found: dict[str, Version] = {}
    name: str | None = None
    hashed: set[str] = set()
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            assert name not in found, f"{lock.name}: {name} pinned twice"
            found[name] = Version(match.group(2))
        elif line.strip().startswith("--hash=sha256:") and name is not None:
            hashed.add(name)
        elif line and not line.startswith((" ", "#")):
            pytest.fail(f"{lock.name}: not an exact pin: {line!r}")
    assert found, f"{lock.name} pins nothing"
    assert set(found) == hashed, f"{lock.name}: pins without a hash: {set(found) - hashed}"
    return found


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(*, dev: bool) -> list[Requirement]:
    """What pyproject.toml asks for: dependencies and build requires (and the dev extra)."""
    document = _pyproject()
    texts = [*document["project"]["dependencies"], *document["build-system"]["requires"]]
    if dev:
        texts += document["project"]["optional-dependencies"]["dev"]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(TARGET)]


@pytest.mark.parametrize(("lock", "dev"), [(SERVICE_LOCK, False), (DEV_LOCK, True)])
def test_every_declared_dependency_is_pinned_within_its_range(lock: Path, dev: bool) -> None:
    pinned = pins(lock)
    problems = []
    for requirement in declared(dev=dev):
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{lock.name} pins {name}=={pinned[name]}, outside {requirement}")
    assert problems == [], "run `make lock`: " + "; ".join(problems)


def test_the_service_lock_pins_the_same_versions_as_the_dev_lock() -> None:
    """The service tested with the dev tools is the one the image and `make run` get."""
    service, dev = pins(SERVICE_LOCK), pins(DEV_LOCK)
    assert set(service) <= set(dev)
    assert {n: v for n, v in service.items() if dev[n] != v} == {}


def test_the_dev_extra_adds_nothing_to_the_service_lock() -> None:
    """requirements.lock (the image's) holds no test or lint tool."""
    service = pins(SERVICE_LOCK)
    for text in _pyproject()["project"]["optional-dependencies"]["dev"]:
        name = canonicalize_name(Requirement(text).name)
        if name not in {canonicalize_name(r.name) for r in declared(dev=False)}:
            assert name not in service, f"{name} (dev extra) is in requirements.lock"


def test_the_dockerfile_installs_the_service_lock_with_hashes_then_the_project_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert re.search(r"pip install [^\n]*--no-deps[^\n]* \.", dockerfile)
