"""Every installed target's `Target.sdk_modules` is exactly what loading its cloud SDK ahead takes (issue 18).

MendixEnvironment imports those modules, running the event loop between two of them, while the engine
works on the release intent (mxinfra.sdk_loading). A module a target forgets is imported later, when the
event loop no longer runs in between; a module it lists but never uses is loaded for nothing. So, in a fresh interpreter
per target (imports are process-wide), over the target's bundled stacks:

1. `sdk_modules` loaded first, planning every stack loads no further module of a cloud SDK (any
   `pulumi_<provider>` package but the core's `pulumi_random`);
2. without that (the program's own loading of them switched off), planning the stacks loads each
   listed module.

A module counts as loaded when it ran: the SDKs register their packages as lazy modules
(importlib.util.LazyLoader) that run on first attribute access.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from scaffold import ROOT, copy_example  # noqa: E402

from mxinfra.target import ENTRY_POINT_GROUP, load_target  # noqa: E402

pytestmark = pytest.mark.slow

INSTALLED = sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
STACKS = {
    "aws": ["aws-test", "aws-acceptance", "aws-production"],
    "azure": ["azure-test", "azure-acceptance", "azure-production"],
    "cloudfoundry": ["cf-test", "cf-acceptance", "cf-production"],
    "kubernetes": ["test", "acceptance", "production", "operator"],
}

# Run in a fresh interpreter: plan the stacks (each after a recorded acceptance deploy, which production's
# promotion gate wants), optionally after loading the target's sdk_modules, and print what ran.
PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from scaffold import record_deploy
    from mxinfra.plan import run_plan
    from mxinfra.sdk_loading import load
    from mxinfra.target import load_target

    def ran():
        return {{
            name for name, module in list(sys.modules.items())
            if name.startswith("pulumi_") and not name.startswith("pulumi_random") and type(module).__name__ != "_LazyModule"
        }}

    target, preload, stacks = sys.argv[1], sys.argv[2] == "preload", sys.argv[3:]
    directory = Path({project!r})
    record_deploy(directory, stacks[1])
    if preload:
        load(load_target(target).sdk_modules)
    else:
        # the program loads sdk_modules itself (MendixEnvironment): here only what deploying imports
        import mxinfra.sdk_loading
        mxinfra.sdk_loading.load = lambda modules, **_: None
    before = ran()
    for stack in stacks:
        result = run_plan(directory, stack)
        assert not result.gate_issues, [str(i) for i in result.gate_issues]
    print(json.dumps({{"before": sorted(before), "after": sorted(ran())}}))
    """
)


def _probe(tmp_path: Path, target: str, preload: bool) -> tuple[set[str], set[str]]:
    project = copy_example(tmp_path / ("preload" if preload else "plain"))
    code = PROBE.format(tests=str(ROOT / "tests"), project=str(project))
    proc = subprocess.run(
        [sys.executable, "-c", code, target, "preload" if preload else "plain", *STACKS[target]],
        capture_output=True, text=True, timeout=600, cwd=project,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return set(out["before"]), set(out["after"])


def test_every_target_has_its_stacks_here():
    """The table above covers every installed target (a new one must say which stacks exercise it)."""
    assert sorted(STACKS) == INSTALLED


@pytest.mark.parametrize("name", INSTALLED)
def test_sdk_modules_are_all_the_sdk_a_plan_loads(tmp_path, name):
    """After the listed modules, planning the target's stacks loads no other module of a cloud SDK."""
    before, after = _probe(tmp_path, name, preload=True)
    extra = sorted(after - before)
    assert not extra, f"{name}: planning loaded {extra}: add them to {type(load_target(name)).__name__}.sdk_modules"


@pytest.mark.parametrize("name", INSTALLED)
def test_sdk_modules_are_all_used(tmp_path, name):
    """Each listed module is one that planning the target's stacks loads anyway."""
    _, after = _probe(tmp_path, name, preload=False)
    unused = [m for m in load_target(name).sdk_modules if m not in after]
    assert not unused, f"{name}: its stacks never load {unused}: drop them from sdk_modules"
