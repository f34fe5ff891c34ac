"""`ActivityLog.archive_evidence`: where an archive came from, asked of the source environment's log by
`mxinfra backup restore --archive` (production restores only what mxinfra downloaded and recorded). Found
through a locator under the archive's sha256 that every backup-download append writes, at the same cost
whatever the log's length; only a record signed by a trusted key counts."""

from __future__ import annotations

from pathlib import Path

from mxinfra.governance import open_store, signing
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.signing import LocalKeySigner, Trust

ENV, APP = "production", "orders"
SHA = "ab" * 32


def _signer(tmp_path: Path, name: str) -> LocalKeySigner:
    path = signing.generate_key_file(tmp_path / f"{name}.pem")
    return LocalKeySigner(path, f"file:{path}")


def _trust(s: LocalKeySigner) -> Trust:
    return Trust(frozenset({signing.fingerprint(s.public_key_der())}), ("test key",))


def _download(log: ActivityLog, sha: str) -> int:
    r = log.append(ENV, actor="ops", action="backup-download", package_sha256="p" * 64, package_version="1", app=APP,
                   changes={"backup": {"id": "20261205T020000Z", "size": 10, "sha256": sha}})
    return r.seq


def test_a_download_record_is_found_by_its_archive_hash_and_nothing_else_is(tmp_path):
    store = open_store(f"file://{tmp_path / 'repo'}")
    key = _signer(tmp_path, "ops")
    log = ActivityLog(store, signer=key)
    for _ in range(3):
        log.append(ENV, actor="ops", action="deploy", package_sha256="p" * 64, package_version="1", app=APP, changes={})
    seq = _download(log, SHA)
    log.append(ENV, actor="ops", action="restore", package_sha256="p" * 64, package_version="1", app=APP, changes={"restore": {"archive": {"sha256": "cd" * 32}}})
    found, refused = ActivityLog(store).archive_evidence(ENV, SHA, trust=_trust(key), app=APP)
    assert found is not None and found.seq == seq == 4 and refused == []
    assert store.list(f"activity/{ENV}/by-archive/") == [f"activity/{ENV}/by-archive/{SHA}/{seq:012d}.json"]
    # a hash a restore names is no download; an unknown one finds nothing
    assert ActivityLog(store).archive_evidence(ENV, "cd" * 32, trust=_trust(key), app=APP) == (None, [])
    assert ActivityLog(store).archive_evidence(ENV, "ef" * 32, trust=_trust(key), app=APP) == (None, [])


def test_a_download_record_of_an_untrusted_key_or_a_planted_locator_does_not_count(tmp_path):
    store = open_store(f"file://{tmp_path / 'repo'}")
    ours, theirs = _signer(tmp_path, "ours"), _signer(tmp_path, "theirs")
    _download(ActivityLog(store, signer=theirs), SHA)
    found, refused = ActivityLog(store).archive_evidence(ENV, SHA, trust=_trust(ours), app=APP)
    assert found is None and len(refused) == 1 and "which is not trusted for production (trusted: test key)" in refused[0]
    # a locator written by hand, pointing at a record of another archive
    other = "cd" * 32
    seq = _download(ActivityLog(store, signer=theirs), other)
    store.put(ActivityLog.archive_key(ENV, "ef" * 32, seq), b'{"seq": %d}' % seq, if_absent=True)
    found, refused = ActivityLog(store).archive_evidence(ENV, "ef" * 32, trust=_trust(theirs), app=APP)
    assert found is None and refused == [f"seq {seq} (activity/{ENV}/{seq:012d}.json): is not a download of this archive"]
