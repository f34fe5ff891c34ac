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


def test_another_image_a_deployment_beside_the_workload_runs_is_a_warning():
    """The deployment a release replaces runs until its rollout ends, and one a rollout that never ends keeps
    for good: named, as a warning (the guard goes on, so the next release, the fix among them, can), never
    when it runs the recorded image."""
    from mxinfra.drift import running_beside

    state = recorded_state("production", [first()])
    beside = (("deployment d-1, revision orders:2", IMAGE_B), ("deployment d-0, revision orders:1", IMAGE_A))
    seen = running(beside=beside, restore={"beside": "aws ecs stop-task ..."})
    (d,) = [x for x in differences(state, seen) + [running_beside(seen, state)] if x is not None]
    assert not d.blocking and d.field == "beside" and (d.recorded, d.running) == (IMAGE_A, f"{IMAGE_B} (deployment d-1, revision orders:2)")
    assert f"also runs what the last record (seq 1: deploy by rita at 2025-01-01T00:00:00Z) does not name: {IMAGE_B} (deployment d-1, revision orders:2)" in d.message
    assert "aws ecs stop-task" in d.fix and "audit log" in d.fix
    assert running_beside(running(beside=beside[1:]), state) is None  # the recorded image
    assert running_beside(running(beside=beside, exists=False), state) is None
    assert running_beside(seen, Recorded("production", present=False)) is None


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


# --- the release guard's cost: what runs is read from the newest records, whatever the history ----------


class _Counting:
    """A store that counts the calls reaching it (each one a round trip on S3 and Azure)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("get", "put", "put_file", "download", "list", "exists", "delete"):
            self.calls += 1
        return attr


def _deployment(project: Any) -> Any:
    from mxinfra.deployment import prepare
    from mxinfra.stackfile import read_project, read_stack_config

    p = read_project(project.path)
    return prepare(read_stack_config(p, "production"), project=p.name, stack="production", base_dir=p.directory)


def _append(d: Any, count: int, *, instances: int | None) -> None:
    """`count` more records of production, as settings changes by the environment's key."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.signing import dev_signer
    from mxinfra.governance.store import open_store

    log = ActivityLog(open_store(d.repository), signer=dev_signer(d.repository))
    for i in range(count):
        log.append(
            "production", actor="ci", action="settings", package_sha256=d.package.sha256, package_version=None,
            changes={"settingsDigest": {"from": str(i), "to": str(i + 1)}}, app=d.config.app.name, instances=instances,
        )


def _read_counted(d: Any, project: Any, monkeypatch: Any) -> tuple[Any, int]:
    import mxinfra.governance.store as store_module
    from mxinfra.drift import recorded

    real = store_module.open_store
    counted: list[_Counting] = []

    def opening(url: str, *a: Any, **kw: Any) -> Any:
        counted.append(_Counting(real(url, *a, **kw)))
        return counted[-1]

    monkeypatch.setattr(store_module, "open_store", opening)
    state, problems = recorded(d, "production", project.path)
    monkeypatch.setattr(store_module, "open_store", real)
    assert problems == []
    return state, sum(c.calls for c in counted)


def test_the_release_guard_reads_the_same_whatever_the_history(project, monkeypatch):
    """Every `pulumi up` on a target that reads what runs asks the log what it says: 40 records or 400,
    the same round trips (the newest trusted checkpoint and the records since it), and the instance count
    comes from the newest record, not from the scale far back."""
    from mxinfra.governance.activity import CHECKPOINT_EVERY

    with registered_target(ObservingTarget()):
        _stack(project)
        record_deploy(project.path, "production")
        d = _deployment(project)
        _append(d, 3 * CHECKPOINT_EVERY - 1, instances=2)  # seq 48: a checkpoint slot's last record
        short, short_calls = _read_counted(d, project, monkeypatch)
        _append(d, 20 * CHECKPOINT_EVERY, instances=2)  # seq 368: the same place in its slot
        long, long_calls = _read_counted(d, project, monkeypatch)
    assert (short.seq, long.seq) == (3 * CHECKPOINT_EVERY, 23 * CHECKPOINT_EVERY)
    assert short.instances == long.instances == 2 and long.package_sha256 == d.package.sha256
    print(f"guard reads: {short_calls} calls at seq {short.seq}, {long_calls} at seq {long.seq}")
    assert long_calls == short_calls <= 2 * CHECKPOINT_EVERY + 8, (short_calls, long_calls)


def test_an_older_log_whose_records_carry_no_count_is_read_back_to_the_last_scale(project, monkeypatch):
    """Records written before they carried `instances` say the count only where it changed (the first
    deploy lists it): the guard reads back past the checkpoint to it, through records the chain vouches for."""
    from mxinfra.governance.activity import CHECKPOINT_EVERY, ActivityLog
    from mxinfra.governance.store import open_store

    with registered_target(ObservingTarget()):
        _stack(project)
        record_deploy(project.path, "production")
        d = _deployment(project)
        _append(d, 2 * CHECKPOINT_EVERY + 3, instances=None)
        state, calls = _read_counted(d, project, monkeypatch)
        assert state.present and state.instances == 2 and state.seq == 2 * CHECKPOINT_EVERY + 4
        assert calls > 2 * CHECKPOINT_EVERY  # read back to seq 1: the price of an older log, once
        # the first record that carries the count ends that walk
        _append(d, 1, instances=2)
        state, calls = _read_counted(d, project, monkeypatch)
        assert state.instances == 2 and calls <= 2 * CHECKPOINT_EVERY
        # the count is signed with the record: edited, the log no longer verifies
        log = ActivityLog(open_store(d.repository))
        key = ActivityLog.key("production", state.seq)
        doc = json.loads(log.store.get(key))
        doc["instances"] = 5
        log.store.put(key, json.dumps(doc).encode())
        _, problems = __import__("mxinfra.drift", fromlist=["recorded"]).recorded(d, "production", project.path)
        assert problems and "does not verify" in problems[0].message


def test_every_record_of_the_activity_resource_names_the_count_it_leaves_running(project):
    """The provider gets numbers from the engine as floats (3.0): the record carries the count as an integer,
    and a destroy carries none (nothing runs)."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.record import ActivityProvider
    from mxinfra.governance.store import open_store

    with registered_target(ObservingTarget()):
        _stack(project)
        d = _deployment(project)
        props = {
            "environment": "production", "app": d.config.app.name, "repository": d.repository,
            "packageSha256": d.package.sha256, "packageVersion": None, "artifact": None,
            "settingsDigest": "s", "instances": 2.0, "grantsDigest": "g",
        }
        provider = ActivityProvider()
        created = provider.create(props)
        provider.update(created.id, created.outs, {**props, "instances": 3.0})
        provider.delete(created.id, {**props, "instances": 3.0})
        records = ActivityLog(open_store(d.repository)).records("production")
    assert [(r.action, r.instances) for r in records] == [("deploy", 2), ("scale", 3), ("destroy", None)]
    assert json.loads(json.dumps(records[1].to_json()))["instances"] == 3


def test_production_by_the_log_stays_production_when_its_workload_is_gone(project):
    """F18 without a workload to read (deleted by hand, or never readable): the newest record names the
    tier, so `role: test` on an environment the log says is production is refused all the same."""
    from mxinfra.drift import recorded_state, tier_downgrade
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.record import ActivityProvider
    from mxinfra.governance.store import open_store

    with registered_target(ObservingTarget()):
        _stack(project)
        d = _deployment(project)
        props = {
            "environment": "production", "app": d.config.app.name, "repository": d.repository, "role": "production",
            "packageSha256": d.package.sha256, "packageVersion": None, "artifact": None,
            "settingsDigest": "s", "instances": 2.0, "grantsDigest": "g",
        }
        ActivityProvider().create(props)
        records = ActivityLog(open_store(d.repository)).records("production")
    assert records[-1].role == "production"  # signed with the record
    state = recorded_state("production", records)
    gone = Observed("production", "Runtime production", exists=False)
    found = tier_downgrade(gone, "test", state)
    assert found is not None and found.blocking and "says 'production' is production" in found.message
    assert tier_downgrade(gone, "production", state) is None
    assert tier_downgrade(gone, "test", recorded_state("production", [*records, _destroyed(records[-1])])) is None  # retired on purpose


def _destroyed(last: Any) -> Any:
    from dataclasses import replace

    return replace(last, seq=last.seq + 1, action="destroy")
