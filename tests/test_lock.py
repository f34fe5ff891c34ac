"""The committed lock is what gets installed: `./dev` installs with `-c requirements.lock`, and these
checks fail when the lock and the pyprojects (or the environment) disagree. Refresh: `./dev lock`."""

from __future__ import annotations

import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"mxinfra"} | {canonicalize_name(f"mxinfra-{p.parent.name}") for p in ROOT.glob("targets/*/pyproject.toml")}


def _locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"requirements.lock: {line!r} is not pinned with =="
        pins[canonicalize_name(req.name)] = Version(spec[0].version)
    return pins


def _pyprojects() -> list[Path]:
    return [ROOT / "pyproject.toml", *sorted(ROOT.glob("targets/*/pyproject.toml"))]


def test_every_pyproject_requirement_is_met_by_the_lock() -> None:
    pins = _locked()
    problems = []
    for path in _pyprojects():
        project = tomllib.loads(path.read_text())["project"]
        reqs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            reqs += extra
        for text in reqs:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            if name in LOCAL:
                continue
            if name not in pins:
                problems.append(f"{path.relative_to(ROOT)}: {text!r} is not in requirements.lock")
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{path.relative_to(ROOT)}: {text!r} but the lock pins {pins[name]}")
    assert not problems, "run ./dev lock:\n" + "\n".join(problems)


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    pins = _locked()
    problems = []
    # what pip installed, in site-packages itself: not the copies a tool vendors inside its own package
    # (setuptools' _vendor lands on sys.path once pkg_resources is imported)
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for dist in metadata.distributions(path=site):
        name = canonicalize_name(dist.metadata["Name"])
        if name in LOCAL:
            continue
        if name not in pins:
            problems.append(f"{name} {dist.version} is installed but not in requirements.lock")
        elif Version(dist.version) != pins[name]:
            problems.append(f"{name} {dist.version} is installed, the lock pins {pins[name]}")
    assert not problems, "run ./dev lock (and ./dev test reinstalls):\n" + "\n".join(problems)
