"""`mxinfra drift` (issue 19, F1): what runs compared with the activity log's signed records.

The comparison (mxinfra.drift) is pure and tested on its own; the command reads a real file:// log that
the activity resource's own provider wrote (scaffold.record_deploy), and asks the target what runs. The
test target here reads "the platform" from a dict the test sets, standing in for a cloud; the Kubernetes
target reads a real API server (tests/targets/kubernetes/test_k8s_drift.py, tests/engine)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxinfra.cli import main
from mxinfra.drift import HEADER, Difference, Observed, Recorded, differences, recorded_state, report
from mxinfra.testing import registered_target

from fake_target import FakeTarget
from scaffold import UNGATED, app_config, record_deploy

SHA_A, SHA_B = "a" * 64, "b" * 64
IMAGE_A, IMAGE_B = "registry.example.com/orders@sha256:" + "1" * 64, "registry.example.com/orders@sha256:" + "2" * 64


@dataclass
class Rec:
    """An activity record as the log holds it (the fields drift reads)."""

    seq: int
    action: str
    package_sha256: str = SHA_A
    package_version: str | None = "1.0"
    artifact: str | None = IMAGE_A
    changes: dict[str, Any] = field(default_factory=dict)
    time: str = "2025-01-01T00:00:00Z"
    actor: str = "rita"


def first(seq: int = 1, instances: int = 2) -> Rec:
    return Rec(seq, "deploy", changes={k: {"from": None, "to": v} for k, v in {"packageSha256": SHA_A, "artifact": IMAGE_A, "instances": instances}.items()})


def running(**kw: Any) -> Observed:
    base: dict[str, Any] = {"environment": "production", "workload": "StatefulSet orders/orders", "exists": True, "package_sha256": SHA_A, "artifact": IMAGE_A, "artifact_kind": "image", "instances": 2}
    base.update(kw)
    return Observed(**base)


# --- the pure comparison -----------------------------------------------------------------------------------


def test_the_recorded_state_follows_every_record():
    log = [first(), Rec(2, "scale", changes={"instances": {"from": 2, "to": 3}}), Rec(3, "deploy", SHA_B, "1.1", IMAGE_B, {"packageSha256": {"from": SHA_A, "to": SHA_B}})]
    state = recorded_state("production", log)
    assert (state.present, state.seq, state.action, state.package_sha256, state.package_version, state.artifact, state.instances) == (True, 3, "deploy", SHA_B, "1.1", IMAGE_B, 3)
    # an old provider's float count is the same count
    assert recorded_state("production", [Rec(1, "deploy", changes={"instances": {"from": None, "to": 4.0}})]).instances == 4


def test_a_destroy_record_means_nothing_runs():
    state = recorded_state("production", [first(), Rec(2, "destroy")])
    assert not state.present and state.seq == 2 and state.instances is None
    again = recorded_state("production", [first(), Rec(2, "destroy"), first(3, instances=1)])
    assert again.present and again.instances == 1


def test_what_runs_as_recorded_is_no_difference():
    assert differences(recorded_state("production", [first()]), running()) == []
    assert differences(Recorded("production", present=False), running(exists=False)) == []


def test_every_difference_is_named_with_both_values():
    state = recorded_state("production", [first(), Rec(2, "scale", changes={"instances": {"from": 2, "to": 3}})])
    restore = {"artifact": "kubectl set image sts/orders mendix={value}", "instances": "kubectl scale sts/orders --replicas={value}"}
    found = differences(state, running(package_sha256=SHA_B, artifact=IMAGE_B, instances=1, released_config="c" * 64, running_config="d" * 64, restore=restore))
    assert [d.field for d in found] == ["artifact", "package", "instances", "config"] and all(d.blocking for d in found)
    by = {d.field: d for d in found}
    assert by["artifact"].message == f"StatefulSet orders/orders runs image {IMAGE_B}, but the last record (seq 2: scale by rita at 2025-01-01T00:00:00Z) names image {IMAGE_A}: an unrecorded change"
    assert f"kubectl set image sts/orders mendix={IMAGE_A}" in by["artifact"].fix and "audit log" in by["artifact"].fix
    assert "runs 1 instance(s)" in by["instances"].message and "names 3: an unrecorded scale" in by["instances"].message
    assert "kubectl scale sts/orders --replicas=3" in by["instances"].fix
    assert f"package sha256:{SHA_B[:12]}" in by["package"].message and f"names sha256:{SHA_A[:12]} (1.0)" in by["package"].message
    assert "hashes to dddddddddddd, not the cccccccccccc its last release wrote" in by["config"].message


def test_a_workload_without_a_record_is_an_unrecorded_deployment():
    (d,) = differences(Recorded("production", present=False), running())
    assert d.blocking and d.message == "StatefulSet orders/orders runs, but the activity log records no deployment of it: an unrecorded deployment"
    (d,) = differences(recorded_state("production", [first(), Rec(2, "destroy")]), running())
    assert d.blocking and "but the last record (seq 2: destroy by rita" in d.message


def test_a_removed_workload_is_named_but_does_not_block_its_recreation():
    (d,) = differences(recorded_state("production", [first()]), running(exists=False))
    assert not d.blocking and d.field == "workload"
    assert "nothing runs as StatefulSet orders/orders, but the last record (seq 1: deploy by rita" in d.message and "`pulumi refresh`" in d.fix


def test_the_report_names_every_difference_on_its_own_line():
    found = [Difference("production", "artifact", "a", "b", "first", "fix it"), Difference("acceptance", "instances", "1", "2", "second", "scale")]
    assert report(found) == f"{HEADER}:\n  - production: first (fix it)\n  - acceptance: second (scale)"


# --- the command -----------------------------------------------------------------------------------------


class ObservingTarget(FakeTarget):
    """The test target, with a platform it can read: `platform[env]` is what runs there."""

    def __init__(self) -> None:
        self.platform: dict[str, Observed] = {}

    def running(self, deployment: Any, environment: str, base_dir: Path) -> Observed:
        return self.platform.get(environment) or Observed(environment, f"Runtime {environment}", exists=False)


def _stack(project: Any) -> None:
    cfg = app_config(
        **{
            "mxinfra:environments": {"production": {"instances": 2, "ungated": UNGATED}, "acceptance": {"instances": 1}},
            "mxinfra:access": [{"principal": "group:ops", "environments": ["production", "acceptance"], "permissions": ["deploy"]}],
        }
    )
    project.stack("production", cfg)


def _drift(capsys: Any, project: Any, *args: str) -> tuple[int, str, str]:
    rc = main(["drift", "-s", "production", "-C", str(project.path), *args])
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def test_a_target_that_cannot_read_what_runs_says_so(project, fake_target, capsys):
    _stack(project)
    rc, _, err = _drift(capsys, project)
    assert rc == 2 and "the fake target cannot read what runs on its platform" in err and "Traceback" not in err


def test_drift_compares_each_environment_with_its_signed_records(project, capsys):
    target = ObservingTarget()
    with registered_target(target):
        _stack(project)
        record_deploy(project.path, "production")
        for env, n in (("production", 2), ("acceptance", 1)):
            target.platform[env] = Observed(env, f"Runtime {env}", exists=True, instances=n)
        rc, out, err = _drift(capsys, project)
        assert rc == 0, err
        assert "production: Runtime production runs what the last record (seq 1: deploy by" in out
        # someone scaled production by hand: named, exit 2, with the record it contradicts
        target.platform["production"] = Observed("production", "Runtime production", exists=True, instances=5)
        rc, out, err = _drift(capsys, project)
        assert rc == 2 and err.startswith(f"error: {HEADER}:")
        assert "production: Runtime production runs 5 instance(s), but the last record (seq 1: deploy by" in err and "names 2: an unrecorded scale" in err
        assert "acceptance" not in err
        # -e: one environment
        rc, out, err = _drift(capsys, project, "-e", "acceptance")
        assert rc == 0 and out.startswith("acceptance: Runtime acceptance runs what") and "production" not in out
        rc, _, err = _drift(capsys, project, "-e", "prod")
        assert rc == 2 and "stack 'production' has no environment 'prod'" in err and "its environments: production, acceptance" in err


def test_a_log_that_does_not_verify_proves_nothing(project, capsys):
    target = ObservingTarget()
    with registered_target(target):
        _stack(project)
        record_deploy(project.path, "production")
        target.platform["production"] = Observed("production", "Runtime production", exists=True, instances=2)
        assert _drift(capsys, project, "-e", "production")[0] == 0
        record = project.path / ".mxinfra" / "activity" / "production" / "000000000001.json"
        doc = json.loads(record.read_text())
        doc["changes"]["instances"]["to"] = 5  # the log edited to match a hand scale
        record.write_text(json.dumps(doc))
        target.platform["production"] = Observed("production", "Runtime production", exists=True, instances=5)
        rc, _, err = _drift(capsys, project, "-e", "production")
        assert rc == 2 and "the activity log of 'production'" in err and "does not verify, so what runs cannot be compared with it" in err
        assert "content was edited" in err and "mxinfra activity verify" in err


def test_a_production_workload_declared_another_tier_is_a_blocking_difference():
    """Issue 19, F18, the core rule every target's observation feeds."""
    from mxinfra.drift import Observed, tier_downgrade

    prod = Observed("live", "ECS service orders-live (...)", exists=True, role="production")
    found = tier_downgrade(prod, "test")
    assert found is not None and found.blocking and found.field == "role"
    assert "is production's (its mxinfra:role), but the stack now declares 'live' role test" in found.message
    assert tier_downgrade(prod, "production") is None  # the same tier
    assert tier_downgrade(Observed("live", "w", exists=True, role="acceptance"), "test") is None  # not production's
    assert tier_downgrade(Observed("live", "w", exists=False, role="production"), "test") is None  # nothing runs
    assert tier_downgrade(Observed("live", "w", exists=True), "test") is None  # a workload that says no tier
