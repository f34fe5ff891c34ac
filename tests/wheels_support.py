"""Built wheels and user venvs: the distributions as a user installs them (tests/test_wheels.py and the
engine suite's release path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_DIRS = ("kubernetes", "cloudfoundry", "aws", "azure")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; with `check`, a failure shows its whole output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def build_wheels(work: Path, targets: tuple[str, ...] = TARGET_DIRS) -> dict[str, Path]:
    """One wheel per distribution (`mxinfra`, `mxinfra_<target>`), built from a copy of this checkout
    with the locked build backend. A copy: setuptools writes build/ beside the sources, and a stale
    build/lib would slip old modules into the next wheel."""
    out, src = work / "wheels", work / "src"
    out.mkdir(parents=True)
    skip = ("build", "*.egg-info", "__pycache__", ".venv*", ".tools", ".git", ".mxinfra")
    shutil.copytree(ROOT, src / "core", ignore=shutil.ignore_patterns(*skip, "targets", "tests", "bench", "engine", "stacks", "examples"))
    for t in targets:
        shutil.copytree(ROOT / "targets" / t, src / t, ignore=shutil.ignore_patterns(*skip))
    sources = [src / "core"] + [src / t for t in targets]
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, sources)], cwd=out)
    built = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(built) == {"mxinfra"} | {f"mxinfra_{t}" for t in targets}, built
    return built


def user_venv(where: Path, wheels: list[Path]) -> Path:
    """A fresh venv with only these wheels and what their metadata asks for (pip's resolver, no lock);
    returns its bin directory."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *map(str, wheels)], cwd=where)
    return where / "bin"
