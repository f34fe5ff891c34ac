"""Render mode under the real engine: the example stacks with the user's own Kubernetes provider using
`renderYamlToDirectory` (README: `run(opts=...)`), no cluster at all. The manifests the provider writes
name the same objects as `mxinfra plan --out`, with the same specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine_support import Project
from mxinfra_kubernetes.render import AUTONAME_SUFFIX
from test_kubernetes_engine import _autonamed, _differences

MAIN = '''import pulumi
import pulumi_kubernetes as k8s

from mxinfra.program import run

run(opts=pulumi.ResourceOptions(providers=[k8s.Provider("render", render_yaml_to_directory="rendered")]))
'''
ADMIN_PASSWORD = "Render-Admin-Pw-3x#Q"


def _docs(directory: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Documents by (kind, namespace, name); each object exactly once (a second document of one object,
    such as a patch rendered to the same file name, would overwrite the first)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in sorted(directory.rglob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                md = doc["metadata"]
                key = (doc["kind"], md.get("namespace", ""), md["name"])
                assert key not in out, f"{key} rendered twice"
                out[key] = doc
    return out


@pytest.mark.parametrize("stack", ["acceptance", "operator"])
def test_render_yaml_to_directory_writes_what_the_plan_renders(project_factory: Any, has_random: bool, stack: str, tmp_path: Path) -> None:
    project: Project = project_factory(None)
    (project.dir / "__main__.py").write_text(MAIN)
    extra = {} if has_random else {f"mxinfra:environments.{stack}.adminPassword": ADMIN_PASSWORD}
    project.init(stack, extra)
    project.pulumi.up(stack)
    rendered = _docs(project.dir / "rendered")
    project.pulumi.mxinfra("plan", "-s", stack, "-C", str(project.dir), "--out", str(tmp_path / "plan"))
    planned = _docs(tmp_path / "plan")
    assert planned, "mxinfra plan --out wrote nothing"
    for kind, ns, name in [k for k in planned if AUTONAME_SUFFIX in k[2]]:
        # a Secret the provider names: the plan shows `<name>-(known after apply)`
        (match,) = [k for k in rendered if k[:2] == (kind, ns) and _autonamed(name).fullmatch(k[2])]
        rendered[(kind, ns, name)] = rendered.pop(match)
    assert sorted(rendered) == sorted(planned)
    problems = []
    for key, doc in planned.items():
        for field in ("spec", "rules", "roleRef", "subjects", "data"):
            if field in doc:
                # quantities by value (the provider writes 2048Mi as 2Gi), masked secrets present
                problems += [f"{key}: {p}" for p in _differences(doc[field], rendered[key].get(field), field)]
    assert not problems, "\n".join(problems)
