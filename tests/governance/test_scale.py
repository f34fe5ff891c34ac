"""The gate's cost does not grow with history, truncation is visible, and append is a constant number of
round trips: on every backend, with the store's calls counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mxinfra.cli import main
from mxinfra.governance import Store, open_store, signing
from mxinfra.governance.activity import CHECKPOINT_EVERY, ActivityLog
from mxinfra.governance.record import ActivityProvider

SHA = "c" * 64


class Counting(Store):
    """A store that counts the calls reaching the backend (each one a round trip on S3 and Azure)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.url, self.calls = inner, inner.url, 0

    def __getattribute__(self, name: str) -> Any:
        if name in ("get", "put", "put_file", "download", "list", "exists", "delete", "identity"):
            object.__setattr__(self, "calls", object.__getattribute__(self, "calls") + 1)
            return getattr(object.__getattribute__(self, "inner"), name)
        return object.__getattribute__(self, name)

    # the abstract methods, satisfied by delegation above
    get = put = put_file = download = list = exists = delete = identity = None  # type: ignore[assignment]


@pytest.fixture
def signer(tmp_path: Path) -> signing.Signer:
    return signing.LocalKeySigner(signing.generate_key_file(tmp_path / "acc.pem"))


def trust_of(signer: signing.Signer) -> signing.Trust:
    return signing.Trust(frozenset({signing.fingerprint(signer.public_key_der())}), (signer.ref,))


def fill(store: Store, signer: signing.Signer, count: int, deploy_at: int | None = None) -> ActivityLog:
    log = ActivityLog(store, signer=signer)
    for i in range(1, count + 1):
        sha = SHA if i == deploy_at else f"{i:064x}"
        log.append("acceptance", actor="ci", action="deploy", package_sha256=sha, package_version=None, changes={"n": i}, app="orders")
    return log


def test_the_gate_reads_a_bounded_number_of_objects(store: Store, signer) -> None:
    fill(store, signer, 2 * CHECKPOINT_EVERY + 5, deploy_at=3)
    assert store.exists(ActivityLog.checkpoint_key("acceptance", CHECKPOINT_EVERY))
    assert store.exists(ActivityLog.checkpoint_key("acceptance", 2 * CHECKPOINT_EVERY))
    counted = Counting(store)
    log = ActivityLog(counted)
    tail, problems = log.verify_recent("acceptance", trust=trust_of(signer), app="orders")
    assert (tail, problems) == (2 * CHECKPOINT_EVERY + 5, [])
    record, refused = log.deploy_evidence("acceptance", SHA, artifact=None, trust=trust_of(signer), app="orders", tail=tail)
    assert record is not None and record.seq == 3 and refused == []
    # hint, tail probes, checkpoint, its record, 5 records since, the locator listing, the record and its successor
    assert counted.calls <= 16, counted.calls
    # a full verify still reads everything, and finds everything
    assert ActivityLog(store).verify("acceptance", signed=True, trust=trust_of(signer), app="orders") == []


def test_append_costs_the_same_at_any_length(store: Store, signer) -> None:
    counted = Counting(store)
    log = fill(counted, signer, 3)
    counted.calls = 0
    log.append("acceptance", actor="ci", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    early = counted.calls
    fill(store, signer, CHECKPOINT_EVERY + 10)  # a longer history (past a checkpoint)
    counted.calls = 0
    log.append("acceptance", actor="ci", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    # hint, the record it names (the tail), a probe of the next seq (free), the probe of the tail's key's locator
    # (a killed writer's missing indexes would be written then), the create, the package locator, the key's
    # locator, the hint
    assert counted.calls == early == 8, (early, counted.calls)


def test_a_stale_or_lying_head_hint_costs_probes_not_correctness(store: Store, signer) -> None:
    log = fill(store, signer, 20)
    for lie in (0, 3, 19, 500):
        store.put(ActivityLog.head_key("acceptance"), json.dumps({"seq": lie}).encode())
        assert log.tail("acceptance") == 20
    store.put(ActivityLog.head_key("acceptance"), b"not json")
    record = log.append("acceptance", actor="ci", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    assert record.seq == 21 and log.verify("acceptance") == []


def test_an_untrusted_checkpoint_is_not_a_shortcut(store: Store, signer, tmp_path) -> None:
    """Checkpoints forged with another key are ignored: the gate verifies from genesis and finds the tampering."""
    fill(store, signer, CHECKPOINT_EVERY + 2, deploy_at=CHECKPOINT_EVERY + 1)
    key = ActivityLog.key("acceptance", 2)
    rec = json.loads(store.get(key))
    rec["actor"] = "edited"
    store.put(key, json.dumps(rec).encode())
    store.delete(ActivityLog.checkpoint_key("acceptance", CHECKPOINT_EVERY))
    other = signing.LocalKeySigner(signing.generate_key_file(tmp_path / "other.pem"))
    ActivityLog(store, signer=other)._write_checkpoint(ActivityLog(store).records("acceptance")[CHECKPOINT_EVERY - 1])
    # the forger's checkpoint vouched for nothing: its writer saw the edited record and wrote none
    assert not store.exists(ActivityLog.checkpoint_key("acceptance", CHECKPOINT_EVERY))
    store.put(ActivityLog.checkpoint_key("acceptance", CHECKPOINT_EVERY), json.dumps({"kind": "checkpoint"}).encode())
    tail, problems = ActivityLog(store).verify_recent("acceptance", trust=trust_of(signer), app="orders")
    assert tail == CHECKPOINT_EVERY + 2 and any("seq 2 " in p and "edited" in p for p in problems), problems


def test_an_old_edited_record_is_never_evidence(store: Store, signer) -> None:
    """Behind a checkpoint the gate does not re-read the chain, but the record it relies on is always checked."""
    fill(store, signer, CHECKPOINT_EVERY + 3, deploy_at=5)
    key = ActivityLog.key("acceptance", 5)
    rec = json.loads(store.get(key))
    rec["artifact"] = "registry.example.com/orders:untested"
    store.put(key, json.dumps(rec).encode())
    log = ActivityLog(store)
    tail, problems = log.verify_recent("acceptance", trust=trust_of(signer), app="orders")
    assert problems == []
    record, refused = log.deploy_evidence("acceptance", SHA, artifact=None, trust=trust_of(signer), app="orders", tail=tail)
    assert record is None and refused and "seq 5" in refused[0] and "edited" in refused[0]
    assert any("seq 5" in p for p in log.verify("acceptance", signed=True))


def test_truncation_is_named_from_the_pulumi_state(store_url: str, tmp_path: Path, capsys) -> None:
    props = {"environment": "acceptance", "app": "orders", "repository": store_url, "packageSha256": SHA, "packageVersion": None,
             "packagePath": "", "artifact": None, "settingsDigest": "s", "instances": 1, "grantsDigest": "g",
             "signer": f"file:{signing.generate_key_file(tmp_path / 'k.pem')}"}
    provider = ActivityProvider()
    outs = provider.create(props).outs
    for n in (2, 3):
        outs = provider.update("x", outs, {**props, "instances": n}).outs
    state = tmp_path / "state.json"
    resource = {"urn": "urn:pulumi:acceptance::orders::pulumi-python:dynamic:Resource::orders-acceptance-activity",
                "type": "pulumi-python:dynamic:Resource", "outputs": outs}
    state.write_text(json.dumps({"version": 3, "deployment": {"resources": [{"urn": "x", "type": "pulumi:pulumi:Stack"}, resource]}}))
    capsys.readouterr()
    assert main(["activity", "--repository", store_url, "verify", "--state", str(state)]) == 0
    assert "last record found in 1 environment" in capsys.readouterr().out
    store = open_store(store_url)
    newest = ActivityLog.key("acceptance", outs["lastRecordSeq"])
    saved = store.get(newest)
    store.delete(newest)  # the newest record removed: the chain that is left is intact and shorter
    assert ActivityLog(store).verify("acceptance", signed=True) == []
    assert main(["activity", "--repository", store_url, "verify", "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"seq {outs['lastRecordSeq']}" in err and "truncated" in err
    store.put(newest, saved.replace(b'"instances"', b'"instanceS"'))
    assert main(["activity", "--repository", store_url, "verify", "--state", str(state)]) == 2
    assert "rewritten" in capsys.readouterr().err or "edited" in capsys.readouterr().err
    state.write_text("{not json")
    assert main(["activity", "--repository", store_url, "verify", "--state", str(state)]) == 2
    assert f"{state}: not a Pulumi state export" in capsys.readouterr().err


def test_a_machine_remembers_what_it_verified(store: Store, store_url: str, signer, tmp_path, monkeypatch) -> None:
    """The gate's local cache of verified heads: a second gate reads only what is new, and a cached head
    the log no longer holds is ignored (verification falls back to the checkpoint)."""
    from mxinfra.governance import promotion

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fill(store, signer, CHECKPOINT_EVERY + CHECKPOINT_EVERY - 1, deploy_at=2)
    trust = trust_of(signer)
    counted = Counting(store)
    log = ActivityLog(counted)
    assert promotion._gate(log, "acceptance", SHA, None, trust, "orders", store_url, "p", "h") == []
    first, counted.calls = counted.calls, 0
    assert promotion._gate(log, "acceptance", SHA, None, trust, "orders", store_url, "p", "h") == []
    assert counted.calls < first - (CHECKPOINT_EVERY - 4), (first, counted.calls)
    # the cached head is rewritten in the store: the cache no longer counts, the edit is found
    tail = ActivityLog(store).tail("acceptance")
    key = ActivityLog.key("acceptance", tail)
    rec = json.loads(store.get(key))
    rec["actor"] = "edited"
    store.put(key, json.dumps(rec).encode())
    found = promotion._gate(ActivityLog(store), "acceptance", SHA, None, trust, "orders", store_url, "p", "h")
    assert found and f"seq {tail}" in found[0][0] and "edited" in found[0][0]


def test_the_checkpointed_record_itself_is_checked(store: Store, signer) -> None:
    fill(store, signer, CHECKPOINT_EVERY + 2)
    key = ActivityLog.key("acceptance", CHECKPOINT_EVERY)
    rec = json.loads(store.get(key))
    rec["actor"] = "edited"  # content changed, stored hash kept
    store.put(key, json.dumps(rec).encode())
    _, problems = ActivityLog(store).verify_recent("acceptance", trust=trust_of(signer), app="orders")
    assert problems and f"seq {CHECKPOINT_EVERY} " in problems[0] and "checkpoint" in problems[0]
