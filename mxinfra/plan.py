"""`mxinfra plan`: run a project's real program offline under the mock runtime and report what it declares."""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .components import ENVIRONMENT_TYPE
from .errors import UserError
from .deployment import deferred_gate, prepare
from .imagebinding import Check, planning
from .mockrun import Registration, public, run_mocked
from .stackfile import Project, as_pulumi_config, read_project, read_stack_config
from .target import Deployment


@dataclass
class PlanResult:
    """What a plan found: the validated deployment and every resource the program declared."""

    project: Project
    stack: str
    deployment: Deployment
    registrations: list[Registration]
    environment_of: dict[str, str | None]
    engine_warnings: list[str] = field(default_factory=list)
    gate_issues: list[Any] = field(default_factory=list)  # the promotion gate's refusal, shown after the plan

    def resources(self, environment: str | None = ...) -> list[dict[str, Any]]:  # type: ignore[assignment]
        """Resources as plain dicts (secrets and unknowns masked), sorted by URN; optionally of one environment."""
        out = []
        for reg in sorted(self.registrations, key=lambda r: r.urn):
            env = self.environment_of.get(reg.urn)
            if environment is not ... and env != environment:
                continue
            item: dict[str, Any] = {
                "urn": reg.urn,
                "type": reg.type,
                "name": reg.name,
                "parent": reg.parent or None,
                "environment": env,
                "inputs": public(reg.inputs),
            }
            options = {k: v for k, v in (("protect", reg.protect), ("retainOnDelete", reg.retain_on_delete)) if v}
            if options:
                item["options"] = options
            out.append(item)
        return out

    def environments(self) -> list[dict[str, Any]]:
        """Each environment with its role, the target's warnings and notes."""
        target = self.deployment.target
        out = []
        for p in self.deployment.environments:
            name = p.environment.name
            out.append(
                {
                    "name": name,
                    "role": p.environment.role.value,
                    "warnings": list(p.warnings),
                    "notes": target.plan_notes(name, self.resources(name)),
                }
            )
        return out

    def to_json(self) -> str:
        """The plan as deterministic JSON: same inputs, byte-identical output."""
        doc = {
            "stack": self.stack,
            "project": self.project.name,
            "target": self.deployment.target.name,
            "package": {
                "sha256": self.deployment.package.sha256,
                "modelVersion": self.deployment.package.model_version,
                "runtimeVersion": self.deployment.package.runtime_version,
            },
            "environments": self.environments(),
            "resources": self.resources(),
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def write_artifacts(self, out_dir: Path) -> list[Path]:
        """Let the target write each environment's reviewable artifacts under `out_dir`."""
        written: list[Path] = []
        for p in self.deployment.environments:
            name = p.environment.name
            written += self.deployment.target.render(name, self.resources(name), out_dir)
        return written


@contextlib.contextmanager
def _in_project(directory: Path) -> Iterator[None]:
    # A Pulumi program runs in its project directory with that directory importable.
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def _attribute(registrations: list[Registration], deployment: Deployment) -> dict[str, str | None]:
    by_prefix = {p.naming.prefix: p.environment.name for p in deployment.environments}
    by_urn = {r.urn: r for r in registrations}
    env_of: dict[str, str | None] = {}
    for reg in registrations:
        cur: Registration | None = reg
        found = None
        while cur is not None:
            if cur.type == ENVIRONMENT_TYPE:
                found = by_prefix.get(cur.name)
                break
            cur = by_urn.get(cur.parent)
        env_of[reg.urn] = found
    return env_of


def run_plan(directory: Path, stack: str) -> PlanResult:
    """Validate the stack and run its program under mocks; UserError/ConfigError/MdaError for bad input."""
    project = read_project(directory)
    if not project.main.is_file():
        # Pulumi runs `main` (default: the project directory's __main__.py); without it there is no program.
        raise UserError(
            f"{project.main}: no such file: the Pulumi program of project {project.name!r}; write it (three lines: "
            "`from mxinfra.program import run` then `run()`), or set `main:` in Pulumi.yaml to the file that holds it"
        )
    raw = read_stack_config(project, stack)
    with _in_project(project.directory), deferred_gate() as gate, planning():
        deployment = prepare(raw, project=project.name, stack=stack, base_dir=project.directory, images=Check.PLAN)
        config, secret_keys = as_pulumi_config(raw)
        run = run_mocked(
            lambda: runpy.run_path(str(project.main), run_name="__main__"),
            project=project.name,
            stack=stack,
            config=config,
            secret_keys=secret_keys,
            outputs=lambda args: deployment.target.plan_outputs(deployment, args.typ, args.name, dict(args.inputs)),
        )
    return PlanResult(project, stack, deployment, run.registrations, _attribute(run.registrations, deployment), run.warnings, list(gate))
