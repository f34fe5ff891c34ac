"""Issue 19, F11: a change is recorded before it is applied. Each environment's release intent writes an
`intent` record of what a `pulumi up` is about to apply, every other resource of the environment waits for
it (so a store or signer that refuses the record stops the run before anything changes), and the activity
resource records the outcome after. Drift and the gate read an intent as what it is: not what runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.drift import Observed, differences, recorded_state
from mxinfra.governance.activity import INTENT, ActivityLog
from mxinfra.governance.record import ActivityProvider, ReleaseIntentProvider
from mxinfra.governance.store import StoreError, open_store

from scaffold import UNGATED, app_config

SHA, NEXT = "a" * 64, "b" * 64


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # the providers resolve a relative file:// repository against their cwd
    return "file://repo"


def props(repo: str, **over: object) -> dict:
    base = {
        "environment": "production", "app": "orders", "repository": repo, "packageSha256": SHA, "packageVersion": "1.0.0",
        "artifact": None, "settingsDigest": "s1", "constants": {}, "instances": 2.0, "grantsDigest": "g1",
        "key": None, "lastRecordSeq": None, "lastRecordHash": None,
    }
    return {**base, **over}


def actions(repo: str) -> list[tuple[str, str | None, int | None]]:
    return [(r.action, (r.changes or {}).get("intends"), r.instances) for r in ActivityLog(open_store(repo)).records("production")]


def test_a_release_is_recorded_as_an_intent_before_and_as_its_outcome_after(repo):
    intent, activity = ReleaseIntentProvider(), ActivityProvider()
    first = props(repo)
    made = intent.create(first)  # before anything of the environment exists
    assert actions(repo) == [(INTENT, "deploy", 2)]
    done = activity.create(first)
    assert actions(repo)[-1] == ("deploy", None, 2)
    # a release: the intent names the new package before it runs, the outcome after
    release = props(repo, packageSha256=NEXT, packageVersion="1.1.0")
    assert intent.diff("release-intent", made.outs, release).changes is True
    updated = intent.update("release-intent", made.outs, release)
    assert updated.outs["key"] == made.outs["key"]
    record = ActivityLog(open_store(repo)).records("production")[-1]
    assert (record.action, record.package_sha256, record.changes["intends"]) == (INTENT, NEXT, "deploy")
    assert record.changes["packageSha256"] == {"from": SHA, "to": NEXT}
    activity.update("activity-production", done.outs, release)
    assert [a for a, _, _ in actions(repo)] == [INTENT, "deploy", INTENT, "deploy"]
    # nothing tracked changes: no diff, and an update the engine makes anyway records nothing
    assert intent.diff("release-intent", updated.outs, release).changes is False
    intent.update("release-intent", updated.outs, release)
    assert len(actions(repo)) == 4


def test_an_intent_is_never_evidence_of_a_deploy(repo):
    """The gate and promote count deploy records: an intent alone (a run that stopped) proves nothing."""
    from mxinfra.governance.signing import dev_signer, trust_for

    ReleaseIntentProvider().create(props(repo))
    log = ActivityLog(open_store(repo))
    trust = trust_for({}, "production", repo, Path.cwd())
    tail, problems = log.verify_recent("production", trust=trust, app="orders")
    assert (tail, problems) == (1, []) and dev_signer(repo) is not None
    found, _ = log.deploy_evidence("production", SHA, artifact=None, trust=trust, app="orders", tail=tail)
    assert found is None
    assert log.last_record("production") is None  # a backup or a grant names no running package from it


class Refusing:
    """The repository's store, refusing every write (a store outage, a deployer without write access)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name in ("put", "put_file"):
            def refuse(*a, **kw):
                raise StoreError("access denied", transient=False)
            return refuse
        return getattr(self.inner, name)


def test_an_intent_the_store_refuses_fails_the_operation(repo, monkeypatch):
    """The intent's update raises, so the engine applies none of the resources that wait for it."""
    import mxinfra.governance.store as store_module

    intent = ReleaseIntentProvider()
    made = intent.create(props(repo))
    real = store_module.open_store
    monkeypatch.setattr(store_module, "open_store", lambda url, *a, **kw: Refusing(real(url, *a, **kw)))
    with pytest.raises(StoreError, match="access denied"):
        intent.update("release-intent", made.outs, props(repo, instances=3.0))
    monkeypatch.setattr(store_module, "open_store", real)
    assert actions(repo) == [(INTENT, "deploy", 2)]  # nothing of the scale was recorded (nor applied)


def test_the_state_of_the_secrets_key_it_replaces_is_a_baseline(repo):
    """An environment deployed before the intent existed: the alias hands the SecretsKey's state over; the
    first update keeps its key and claims no intent (nothing is being applied)."""
    out = ReleaseIntentProvider().update("release-intent", {"key": "5e" * 32, "__provider": "old"}, props(repo))
    assert out.outs["key"] == "5e" * 32 and actions(repo) == []


# --- the program: every other child waits for the intent -------------------------------------------------

ENVIRONMENTS = {"production": {"ungated": UNGATED}, "uat": {"role": "acceptance"}}


def _run(pulumi_run, *, preview: bool):
    """The production stack of ENVIRONMENTS, run as `pulumi up` (preview=False) or as a preview; (deployment, resources)."""
    d = prepare(RawConfig(app_config(**{"mxinfra:environments": ENVIRONMENTS}), frozenset({"mxinfra:environments"})), project="orders", stack="production", base_dir=Path("."))
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders", preview=preview)


def test_every_child_of_an_environment_waits_for_its_intent(fake_target, pulumi_run):
    d, res = _run(pulumi_run, preview=False)
    for env in ("production", "uat"):
        comp = res.one(ENVIRONMENT_TYPE, f"orders-{env}")
        intent = res.one("pulumi-python:dynamic/mxinfra:ReleaseIntent", f"orders-{env}-release-intent")
        assert intent.parent == comp.urn and intent.additional_secret_outputs == ["key"] and not intent.protect
        # it took over the SecretsKey of environments deployed before it (and with it the key)
        assert intent.aliases == [f"pulumi-python:dynamic/mxinfra:SecretsKey::orders-{env}-secrets-key"]
        assert intent.inputs["environment"] == env and intent.inputs["packageSha256"] == d.package.sha256
        assert "secretsDigest" not in intent.inputs  # keyed by it: the activity resource carries them
        children = [r for r in res.children(comp) if r.urn != intent.urn]
        assert len(children) >= 3, [c.name for c in children]
        waiting = {c.name for c in children if intent.urn in c.dependencies}
        assert waiting == {c.name for c in children}, sorted({c.name for c in children} - waiting)


def test_a_preview_declares_the_dependencies_pulumi_up_records(fake_target, pulumi_run):
    # The engine writes its whole snapshot for every unchanged resource whose dependencies differ from the
    # state's: a preview that left out the waits on the intent paid that for each resource (issue 18).
    _, up = _run(pulumi_run, preview=False)
    _, preview = _run(pulumi_run, preview=True)
    assert sorted(r.urn for r in preview) == sorted(r.urn for r in up)
    applied = {r.urn: sorted(r.dependencies) for r in up}
    differing = [r.name for r in preview if sorted(r.dependencies) != applied[r.urn]]
    assert differing == []
    for env in ("production", "uat"):
        intent = preview.one("pulumi-python:dynamic/mxinfra:ReleaseIntent", f"orders-{env}-release-intent")
        activity = preview.one("pulumi-python:dynamic:Resource", f"orders-{env}-activity")
        children = [r for r in preview.children(preview.one(ENVIRONMENT_TYPE, f"orders-{env}")) if r.urn not in (intent.urn, activity.urn)]
        assert len(children) >= 3 and all(intent.urn in c.dependencies for c in children)
        assert {c.urn for c in children} <= set(activity.dependencies)


# --- drift: an intent without an outcome -------------------------------------------------------------------


def test_drift_reads_an_intent_without_its_outcome_as_a_run_that_stopped(repo):
    intent, activity = ReleaseIntentProvider(), ActivityProvider()
    made = intent.create(props(repo))
    activity.create(props(repo))
    intent.update("release-intent", made.outs, props(repo, instances=5.0))  # the run stops after applying
    state = recorded_state("production", ActivityLog(open_store(repo)).records("production"))
    assert (state.action, state.instances) == ("deploy", 2) and state.intent is not None and state.intent.instances == 5
    # what runs is the intended scale: applied, not recorded; `pulumi up` again records it
    found = differences(state, Observed("production", "Runtime production", exists=True, instances=5))
    assert [(d.field, d.blocking) for d in found] == [("outcome", False)]
    assert "runs what the intent record (seq 3" in found[0].message and "run `pulumi up` again" in found[0].fix
    # what runs is the recorded state: the intended change never reached it, nothing to say
    assert differences(state, Observed("production", "Runtime production", exists=True, instances=2)) == []
    # neither: a change by hand, as ever
    other = differences(state, Observed("production", "Runtime production", exists=True, instances=7))
    assert [(d.field, d.blocking) for d in other] == [("instances", True)]


def test_backup_records_and_a_restore_intent_after_a_stopped_run_keep_its_intent_pending(repo):
    """A restore (and the backups around it) changes no workload: after a `pulumi up` that applied and did
    not record its outcome, a failed restore's intent, a backup and a restore's outcome leave that run's
    intent the pending one, so drift still says "run `pulumi up` again" rather than refusing it (found by a
    hostile review: the restore's intent, a copy of the last record, used to replace it)."""
    from mxinfra.governance.activity import what_runs

    intent, activity = ReleaseIntentProvider(), ActivityProvider()
    made = intent.create(props(repo))
    activity.create(props(repo))
    intent.update("release-intent", made.outs, props(repo, instances=5.0))  # applied, then the run stopped
    log = ActivityLog(open_store(repo), signer=None)
    last = log.last_record("production", app="orders")
    assert last is not None and last.action == "deploy"
    for action, changes in [
        ("backup", {"backup": {"id": "20261206T000000Z", "trigger": "before restore"}}),
        (INTENT, {"intends": "restore", "restore": {"id": "20261205T000000Z", "from": "production"}}),
        ("restore", {"restore": {"id": "20261205T000000Z", "from": "production"}}),
    ]:
        log.append("production", actor="ops", action=action, **what_runs(last), app="orders", changes=changes)
        state = recorded_state("production", log.records("production"))
        assert state.intent is not None and state.intent.instances == 5, action
        found = differences(state, Observed("production", "Runtime production", exists=True, instances=5))
        assert [(d.field, d.blocking) for d in found] == [("outcome", False)], (action, found)


def test_writing_a_record_loads_no_config_schema(tmp_path):
    # The records' provider process writes the intent that every other change of the environment waits
    # for (issue 18): on its first record it imports only what writing one takes, not pydantic and the
    # stack config's schema (a tenth of a second), which it never reads.
    code = (
        "import sys\n"
        "from mxinfra.governance.record import ReleaseIntentProvider\n"
        f"props = {props('file://repo')!r}\n"
        "ReleaseIntentProvider().create(props)\n"
        "from mxinfra.governance.activity import ActivityLog\n"
        "from mxinfra.governance.store import open_store\n"
        "assert [r.action for r in ActivityLog(open_store('file://repo')).records('production')] == ['intent']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic' or m == 'mxinfra.schema'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
