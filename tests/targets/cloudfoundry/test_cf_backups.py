"""Issue 21 on Cloud Foundry: `mxinfra backup download` takes an environment's data out through service keys
(a pg_dump of the database, a copy of the bucket) as a Mendix Cloud archive, and `restore --archive` puts
one back, the app stopped meanwhile, each recorded and signed. Against real parts: the CAPI double (every
request and response validated against the CAPI description), a real PostgreSQL that the database key's
credentials name, and moto's S3 server that the object-store key's name. The environments' apps and
service instances are made by the target's own providers, as `pulumi up` makes them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from postgres import OPEN_TRANSACTIONS, PASSWORD, PostgresServer, lock_held, pg_restore_of_17, pg_restore_without_restrict_key, require_bin_dir, unrestricted_pg_restore

from cfhelpers import config, release
from scaffold import encrypted as stack_file

from mxinfra.cli import main
from mxinfra_cloudfoundry.provider import ServiceInstanceProvider

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "governance"))

from servers import AZURITE_ACCOUNT, AZURITE_KEY, FAKE_AWS  # noqa: E402

SCHEMA = """DROP SCHEMA public CASCADE; CREATE SCHEMA public;
CREATE TABLE "mendixsystem$version" (versionnumber varchar(30), modelversion varchar(200));
CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), placed timestamp, notes text);
CREATE TABLE "system$filedocument" (id bigint PRIMARY KEY, name varchar(400), contents bytea);
CREATE SEQUENCE "orders$order_number_seq" START 1000;
INSERT INTO "mendixsystem$version" VALUES ('10.24.15', '1.4.2');
INSERT INTO "orders$order" SELECT i, 'ORD-' || i, i * 1.25, timestamp '2026-01-01' + i * interval '1 hour', repeat('Zoë ', i % 50) FROM generate_series(1, 400) i;
INSERT INTO "system$filedocument" VALUES (1, 'a.bin', '\\x00ff10'::bytea), (2, '名前', NULL);
SELECT setval('"orders$order_number_seq"', 1500);
"""
TABLES = ['"mendixsystem$version"', '"orders$order"', '"system$filedocument"']
UUID = "0d3e301f-5551-46f8-ad44-8de2be084c95"  # how the runtime names a file's object: its UUID
FILES = {UUID: b"a Mendix file document", "docs/a1/7f3e-file": b"\x00\x01binary" * 300, "doc-2": "Zoë's document".encode(), "empty": b""}
# The same files in an archive, as Mendix Cloud lays them out (tree/xx/yy/<name>): a key with a '/' as it is
ARCHIVED = {f"0d/3e/{UUID}": FILES[UUID], "docs/a1/7f3e-file": FILES["docs/a1/7f3e-file"], "do/c-/doc-2": FILES["doc-2"], "em/pt/empty": b""}
DB_PASSWORD_MARK = PASSWORD  # the database's password: it must appear nowhere mxinfra writes
BUCKET = "orders-files-bucket"
SECRET_KEY = "Known-Store-Secret-5e1f"


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1", aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"])


def _objects(endpoint: str) -> dict[str, bytes]:
    client = _s3(endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents") or []]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _snapshot(pg: PostgresServer) -> str:
    tables = "".join(pg.psql(f"COPY (SELECT * FROM {t} ORDER BY 1) TO STDOUT") for t in TABLES)
    return tables + pg.psql("SELECT last_value FROM \"orders$order_number_seq\"")


@pytest.fixture
def seeded(pg: PostgresServer, s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database and the bucket as an environment's app left them; pg_dump and pg_restore on PATH."""
    monkeypatch.setenv("PATH", f"{require_bin_dir()}:{os.environ['PATH']}")
    pg.psql(SCHEMA)
    client = _s3(s3_server)
    existing = [b["Name"] for b in client.list_buckets().get("Buckets") or []]
    if BUCKET in existing:
        for o in client.list_objects_v2(Bucket=BUCKET).get("Contents") or []:
            client.delete_object(Bucket=BUCKET, Key=o["Key"])
    else:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    for key, body in FILES.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return _snapshot(pg)


def _deployed(capi: Any, project: Any, monkeypatch: pytest.MonkeyPatch, pg: PostgresServer, s3_server: str, role: str, stack: str, env: dict[str, Any] | None = None) -> str:
    """`pulumi up` of a one-environment stack: its service instances and its app (bound to them) made by the
    target's providers; the brokers' keys name the real database and bucket. The app's guid."""
    cfg = config(role, env=env)
    project.stack(stack, stack_file(cfg))
    where = {"api": capi.url, "org": "acme", "space": "orders"}
    services = []
    for kind, offering, plan in (("database", "postgresql-db", "standard"), ("files", "objectstore", "s3-standard")):
        name = f"orders-{role}-{kind}"
        services.append(ServiceInstanceProvider().create({**where, "name": name, "offering": offering, "plan": plan, "parameters": {}, "timeouts": {"job": 10}}).id)
    capi.credentials[f"orders-{role}-database"] = {"uri": pg.url + "?sslmode=disable", "hostname": "127.0.0.1"}
    capi.credentials[f"orders-{role}-files"] = {"bucket": BUCKET, "access_key_id": FAKE_AWS["AWS_ACCESS_KEY_ID"], "secret_access_key": SECRET_KEY, "endpoint": s3_server, "region": "eu-central-1"}
    return release(capi, cfg, monkeypatch, stack, f"orders-{role}", services)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def _records(project: Any, env: str) -> list[Any]:
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    return ActivityLog(open_store(f"file://{project.path / '.mxinfra'}")).records(env)


def _calls(capi: Any, method: str, prefix: str) -> list[str]:
    return [p for m, p in capi.requests if m == method and p.startswith(prefix)]


# --- the round trip ------------------------------------------------------------------------------------


def test_download_then_restore_brings_back_every_row_and_file(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    capi.requests.clear()
    out = tmp_path / "backups"
    rc, stdout, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 0, err
    [archive] = out.iterdir()
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert stdout == f"acceptance: downloaded backup {archive.name[:-7]} to {archive} ({archive.stat().st_size} bytes, sha256 {sha}), recorded\n"
    # the layout of a Mendix Cloud backup: the dump, and the bucket's objects under tree/
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert tar.extractfile("db/db.backup").read(5) == b"PGDMP"  # pg_dump's custom format
        assert {n[5:]: tar.extractfile(n).read() for n in names if n.startswith("tree/") and tar.getmember(n).isfile()} == ARCHIVED
    # two keys made for the command (database, files), both deleted; none left
    assert len(_calls(capi, "POST", "/v3/service_credential_bindings")) == 2
    assert len(_calls(capi, "DELETE", "/v3/service_credential_bindings/")) == 2 and capi.keys() == []
    [record] = _records(project, "acceptance")
    assert record.action == "backup-download" and record.signature is not None
    assert record.changes == {"backup": {"id": archive.name[:-7], "trigger": "on-demand", "size": archive.stat().st_size, "sha256": sha, "files": 4}}
    written = json.dumps(record.to_json()) + stdout + err
    assert DB_PASSWORD_MARK not in written and SECRET_KEY not in written and str(out) not in json.dumps(record.to_json())

    # the app changes its data: rows updated, deleted, added; a file overwritten, one added
    pg.psql('UPDATE "orders$order" SET total = 0 WHERE id < 100; DELETE FROM "orders$order" WHERE id > 300; '
            'INSERT INTO "orders$order" VALUES (9999, \'NEW\', 1, now(), NULL); DELETE FROM "system$filedocument"; '
            "SELECT setval('\"orders$order_number_seq\"', 4000);")
    store = _s3(s3_server)
    store.put_object(Bucket=BUCKET, Key="doc-2", Body=b"overwritten")
    store.put_object(Bucket=BUCKET, Key="new-since", Body=b"written after the backup")
    assert _snapshot(pg) != seeded
    capi.requests.clear()

    rc, stdout, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert stdout == f"acceptance: restored {archive.name} of acceptance (sha256 {sha})\n"
    assert _snapshot(pg) == seeded  # every row and the sequence
    # the archive's files are back; one written since stays (copied back, never synced)
    assert _objects(s3_server) == {**FILES, "new-since": b"written after the backup"}
    # the app was stopped for the restore and started again
    assert _calls(capi, "POST", f"/v3/apps/{app}/actions/") == [f"/v3/apps/{app}/actions/stop", f"/v3/apps/{app}/actions/start"]
    assert capi.objects["apps"][app]["state"] == "STARTED" and capi.keys() == []
    restore = _records(project, "acceptance")[-1]
    assert restore.action == "restore" and restore.signature is not None
    # the archive is the one the download record (seq 1) names
    assert restore.changes == {"restore": {"archive": {"size": archive.stat().st_size, "sha256": sha, "downloadRecord": 1}, "from": "acceptance", "files": 4, "app": "stopped, then started"}}


def test_a_restore_of_a_stopped_app_leaves_it_stopped_and_says_so(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "backups"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    capi.objects["apps"][app]["state"] = "STOPPED"
    capi.requests.clear()
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert _calls(capi, "POST", f"/v3/apps/{app}/actions/") == [] and capi.objects["apps"][app]["state"] == "STOPPED"
    assert _records(project, "acceptance")[-1].changes["restore"]["app"] == "not running"  # the core's words (mxinfra.backups.APP_OUTCOMES)


def test_a_production_restore_takes_a_backup_first_beside_the_archive(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "production", "cf-production")
    out = tmp_path / "backups"
    assert _cli(capsys, "backup", "download", "-s", "cf-production", "-e", "production", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    emptied = _snapshot(pg)
    import time

    time.sleep(1.1)  # backup ids are seconds: the backup before the restore gets its own
    rc, stdout, err = _cli(capsys, "backup", "restore", "-s", "cf-production", "-e", "production", "--archive", str(archive), "--from", "production", "-C", str(project.path))
    assert rc == 0, err
    assert _snapshot(pg) == seeded
    before = sorted(p for p in out.iterdir() if p != archive)
    assert len(before) == 1  # what production held just before, restorable in turn
    actions = [(r.action, r.changes) for r in _records(project, "production")]
    assert [a for a, _ in actions] == ["backup-download", "backup-download", "intent", "restore"]
    taken = actions[1][1]["backup"]
    assert taken["trigger"] == "before restore" and taken["sha256"] == hashlib.sha256(before[0].read_bytes()).hexdigest()
    assert actions[3][1]["restore"]["backupBefore"] == taken["id"] == before[0].name[:-7]
    # the intent, written after the backup and before the app was stopped, names both archives
    assert actions[2][1] == {"intends": "restore", "restore": {k: v for k, v in actions[3][1]["restore"].items() if k in ("archive", "from", "backupBefore")}}
    assert f"production: backup {taken['id']} taken first, written to {before[0]}" in stdout
    # the backup taken first holds the emptied table: restoring it undoes the restore
    time.sleep(1.1)  # (its own backup first, in a second of its own)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-production", "-e", "production", "--archive", str(before[0]), "--from", "production", "-C", str(project.path))
    assert rc == 0, err
    assert _snapshot(pg) == emptied


# --- refusals before anything changes ---------------------------------------------------------------------


def test_production_restores_only_an_archive_mxinfra_downloaded_and_recorded(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "production", "cf-production")
    out = tmp_path / "backups"
    assert _cli(capsys, "backup", "download", "-s", "cf-production", "-e", "production", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    # the same rows and files, packed again by someone (a dump edited on the way would look the same)
    staged = tmp_path / "staged"
    with tarfile.open(archive) as tar:
        tar.extractall(staged, filter="data")
    forged = tmp_path / "forged" / archive.name
    forged.parent.mkdir()
    with tarfile.open(forged, "w:gz") as tar:
        tar.add(staged / "db", arcname="db")
        tar.add(staged / "tree", arcname="tree")
    sha = hashlib.sha256(forged.read_bytes()).hexdigest()
    capi.requests.clear()
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-production", "-e", "production", "--archive", str(forged), "--from", "production", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert f"error: --archive {archive.name}: its sha256 {sha} is in no signed backup-download record of production's log, so nothing says it came from production: download it with `mxinfra backup download -s cf-production -e production`" in err
    assert "--repair` ran) (production is restored only from an archive mxinfra downloaded and recorded)" in err
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-production", "-e", "production", "--archive", str(forged), "--from", "production", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "(production is restored only from an archive mxinfra downloaded and recorded)" in err
    assert capi.requests == [] and [r.action for r in _records(project, "production")] == ["backup-download"]
    assert capi.objects["apps"][app]["state"] == "STARTED" and list(forged.parent.iterdir()) == [forged]


def test_a_lower_tiers_archive_into_production_is_refused_before_any_key(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    # acceptance in a space of its own (production's space is production's alone: the stack check says so)
    project.stack("cf-acceptance", stack_file(config("acceptance", cf={"space": "orders-acceptance"})))
    _deployed(capi, project, monkeypatch, pg, s3_server, "production", "cf-production", env={"backups": {"restoreFrom": ["acceptance"], "allowLowerTiers": True}})
    archive = tmp_path / "20261201T000000Z.tar.gz"
    archive.write_bytes(b"whatever acceptance held")
    capi.requests.clear()
    args = ["backup", "restore", "-s", "cf-production", "-e", "production", "--archive", str(archive), "--from", "acceptance", "--from-stack", "cf-acceptance", "-C", str(project.path)]
    rc, _, err = _cli(capsys, *args)
    assert rc == 2 and "Traceback" not in err, err
    assert "error: 'acceptance' (acceptance) into production needs backups.allowLowerTiers in the config and the command's --allow-lower-tier" in err
    assert capi.requests == [] and [r.action for r in _records(project, "production")] == []
    # not listed at all: refused too, flag or not
    project.stack("cf-production", stack_file(config("production")))
    rc, _, err = _cli(capsys, *args, "--allow-lower-tier")
    assert rc == 2 and "production restores only its own backups and those of backups.restoreFrom (none): add 'acceptance' there to allow it" in err
    assert capi.requests == []


def test_an_archive_with_an_entry_outside_it_is_refused_before_the_app_stops(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    evil = tmp_path / "20261201T000000Z.tar.gz"
    payload = tmp_path / "payload"
    payload.write_bytes(b"x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="db/db.backup")
        tar.add(payload, arcname="tree/../../escaped")
    capi.requests.clear()
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(evil), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert f"error: {evil}: entry 'tree/../../escaped' would be written outside the archive's directory: refused; nothing was recorded" in err
    assert _calls(capi, "POST", f"/v3/apps/{app}/actions/") == [] and _calls(capi, "POST", "/v3/service_credential_bindings") == []
    assert _snapshot(pg) == seeded and _records(project, "acceptance") == []


_RELATIONS = "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S') ORDER BY 1"
_SINCE = 'CREATE TABLE "orders$refund" (id bigint PRIMARY KEY); INSERT INTO "orders$refund" VALUES (7); CREATE VIEW "orders$big" AS SELECT * FROM "orders$order"; DELETE FROM "orders$order"'


def _downloaded_then_changed(capsys: pytest.CaptureFixture[str], project: Any, pg: PostgresServer, tmp_path: Path) -> Path:
    """acceptance downloaded (its archive), then what came since made (_SINCE)."""
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "b"), "-C", str(project.path))
    assert rc == 0, err
    [archive] = (tmp_path / "b").iterdir()
    pg.psql(_SINCE)
    return archive


def test_a_restore_gives_the_backups_database_and_drops_what_came_since(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """As on Kubernetes (restore.sh runs the same CLEAN_SQL): a table or view made after the backup goes."""
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    relations = pg.psql(_RELATIONS)
    archive = _downloaded_then_changed(capsys, project, pg, tmp_path)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert _snapshot(pg) == seeded and pg.psql(_RELATIONS) == relations and "orders$refund" not in relations


def test_a_dump_that_ends_half_way_changes_nothing_at_all(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """pg_restore writes out part of the dump as SQL and fails: what psql ran of it, drops included, is rolled back."""
    import io
    import subprocess

    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    dump = tmp_path / "db.backup"
    subprocess.run(["pg_dump", "-Fc", "-Z0", f"--file={dump}", pg.url], check=True)
    cut = tmp_path / "20261201T000000Z.tar.gz"
    with tarfile.open(cut, "w:gz") as tar:
        info = tarfile.TarInfo("db/db.backup")
        info.size = dump.stat().st_size * 2 // 3
        tar.addfile(info, io.BytesIO(dump.read_bytes()[: info.size]))
    pg.psql(_SINCE)
    changed, relations = _snapshot(pg), pg.psql(_RELATIONS)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(cut), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: restoring the database orders-acceptance-database at 127.0.0.1:" in err and "pg_restore exit 1, psql exit 0" in err and "; the database is as it was" in err
    assert _snapshot(pg) == changed and pg.psql(_RELATIONS) == relations and pg.psql('SELECT id FROM "orders$refund"') == "7\n"
    assert capi.objects["apps"][app]["state"] == "STARTED"


def test_a_pg_restore_of_17_restores_into_an_older_server(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """This machine's client tools may be newer than the broker's server: pg_restore 17 sets
    transaction_timeout, which servers before 17 refuse; the setting is made conditional."""
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    archive = _downloaded_then_changed(capsys, project, pg, tmp_path)
    pg_restore_of_17(tmp_path / "17")
    assert int(pg.psql("SHOW server_version_num")) < 170000  # the server here is older than 17
    monkeypatch.setenv("PATH", f"{tmp_path / '17'}:{os.environ['PATH']}")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert _snapshot(pg) == seeded


def test_a_pg_restore_without_restrict_key_is_refused_naming_the_releases(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    archive = _downloaded_then_changed(capsys, project, pg, tmp_path)
    changed = _snapshot(pg)
    pg_restore_without_restrict_key(tmp_path / "old")
    monkeypatch.setenv("PATH", f"{tmp_path / 'old'}:{os.environ['PATH']}")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "has no --restrict-key, so its output cannot keep a dump's text from running psql's meta-commands" in err and "15.14" in err, err
    assert _snapshot(pg) == changed and capi.objects["apps"][app]["state"] == "STARTED"


def test_a_pg_restore_that_does_not_restrict_psql_is_refused_before_psql_runs_a_line(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    r"""psql runs on this machine what pg_restore writes out of an archive that may come from anywhere:
    output without \restrict (a pg_restore before PostgreSQL 17.6/16.10/15.14) could run a shell here."""
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    archive = _downloaded_then_changed(capsys, project, pg, tmp_path)
    changed = _snapshot(pg)
    evidence = tmp_path / "shell-escape-ran"
    unrestricted_pg_restore(tmp_path / "old", evidence)
    monkeypatch.setenv("PATH", f"{tmp_path / 'old'}:{os.environ['PATH']}")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "did not open its output with the \\restrict key it was given, which keeps a dump's text from running psql's meta-commands" in err and "15.14" in err
    assert not evidence.exists() and _snapshot(pg) == changed and capi.objects["apps"][app]["state"] == "STARTED"


def test_a_dump_the_server_refuses_leaves_the_database_as_it_was_and_the_app_running(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    bad = tmp_path / "20261201T000000Z.tar.gz"
    junk = tmp_path / "junk"
    junk.write_bytes(b"PGDMP but not really a dump")
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(junk, arcname="db/db.backup")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(bad), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: restoring the database orders-acceptance-database at 127.0.0.1:" in err and "unsupported version" in err and "; the database is as it was" in err
    assert _snapshot(pg) == seeded and _objects(s3_server) == FILES
    assert capi.objects["apps"][app]["state"] == "STARTED" and capi.keys() == []
    # certainly nothing restored (one transaction, refused; no file touched): the intent gets that outcome
    recs = _records(project, "acceptance")
    assert [r.action for r in recs] == ["intent", "restore"] and err.rstrip().endswith("; the database is as it was (recorded)"), err
    assert {k: v for k, v in recs[-1].changes["restore"].items() if k != "archive"} == {"from": "acceptance", "app": "stopped, then started", "database": "not restored", "files": "not restored"}
    assert DB_PASSWORD_MARK not in err


def test_an_identity_that_may_not_create_keys_is_told_which_role_it_needs(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    capi.refuse_keys = True
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "b"), "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: acceptance: the Cloud Controller refused creating the service key mxinfra-backup-" in err
    assert "the identity needs a space role that may create, read and delete service keys in the environment's space: space_developer (the deploy permission)" in err
    assert list((tmp_path / "b").iterdir()) == [] and _records(project, "acceptance") == []


def test_a_key_the_broker_would_not_delete_is_named_and_recorded(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    capi.fail_key_deletes = 1
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "b"), "-C", str(project.path))
    assert rc == 0, err
    [left] = capi.keys()
    assert f"warning: the service key {left['name']} of orders-acceptance-database could not be deleted" in err
    assert f"delete it (cf delete-service-key orders-acceptance-database {left['name']} -f): it holds working credentials" in err
    assert _records(project, "acceptance")[-1].changes["backup"]["warnings"] == 1


def _psql_that(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restoring: str, asking: str = 'exec "$REAL" "$@"') -> str:
    """A `psql` first on PATH that runs the real one: `restoring` as the restore's call, `asking` as the one
    that asks for the transaction's status (--command). The PATH before it."""
    import shutil

    where = tmp_path / "wrapped"
    where.mkdir()
    (where / "psql").write_text(f'#!/bin/sh\nREAL={shutil.which("psql")}\ncase "$*" in\n  *--command=*) {asking} ;;\n  *) {restoring} ;;\nesac\n')
    (where / "psql").chmod(0o755)
    before = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{where}:{before}")
    return before


# What psql says when the server goes away under it (libpq's words), and its exit status for that.
_LOST = 'echo "psql: error: server closed the connection unexpectedly" >&2; exit 2'


def test_a_psql_that_fails_after_its_commit_went_through_is_a_restore_recorded_as_one(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """The tunnel dropped once COMMIT was sent: psql fails, the database is the archive's, and the server says
    so (txid_status). Before, recorded as nothing restored, and the files were never copied back."""
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    before = _psql_that(tmp_path, monkeypatch, f'"$REAL" "$@"; {_LOST}')
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    monkeypatch.setenv("PATH", before)
    assert rc == 0, err
    assert re.search(r"warning: restoring the database orders-acceptance-database at 127\.0\.0\.1:\d+ failed \(pg_restore exit 0, psql exit 2\): psql: error: server closed the connection "
                     r"unexpectedly; but the server says transaction \d+ committed: the database was restored", err), err
    assert _snapshot(pg) == seeded and _objects(s3_server) == FILES
    restore = _records(project, "acceptance")[-1].changes["restore"]
    assert restore["app"] == "stopped, then started" and restore["files"] == len(FILES) and "database" not in restore and restore["warnings"] == 1


def test_a_transaction_the_server_cannot_be_asked_about_leaves_the_intent_alone(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """psql failed once its transaction's id was printed, and the server does not answer afterwards: the
    restore may have committed, so it is neither recorded as nothing restored nor as restored."""
    import mxinfra.backup_archive

    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    monkeypatch.setattr(mxinfra.backup_archive, "SETTLE_WAIT", 2)
    _psql_that(tmp_path, monkeypatch, f'"$REAL" "$@"; {_LOST}', asking='echo "psql: error: connection to server at 127.0.0.1 failed: Connection refused" >&2; exit 2')
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert re.search(r"; the server did not say whether transaction \d+ committed: the database may or may not have been restored \(check it\)", err), err
    assert [r.action for r in _records(project, "acceptance")][-2:] == ["backup-download", "intent"]
    assert capi.objects["apps"][app]["state"] == "STARTED"


def test_a_transaction_left_open_by_a_killed_psql_is_ended_and_recorded_as_nothing_restored(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """psql killed while the restore waits for a lock another session holds: the server says the transaction
    is still in progress, so its backend is ended (it would hold its locks once it got them) and the
    transaction aborts: nothing restored, recorded so, at once."""
    import time

    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    emptied = _snapshot(pg)
    with lock_held(pg.url, "orders$order"):
        before = _psql_that(tmp_path, monkeypatch, f'timeout -s KILL 4 "$REAL" "$@"; {_LOST}')
        started = time.monotonic()
        rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
        took = time.monotonic() - started
        monkeypatch.setenv("PATH", before)
        assert rc == 2 and err.rstrip().endswith("; the database is as it was (recorded)"), err
        assert took < 60, took
        assert pg.psql(OPEN_TRANSACTIONS) == "0\n"
    assert _snapshot(pg) == emptied and capi.objects["apps"][app]["state"] == "STARTED"
    restore = _records(project, "acceptance")[-1].changes["restore"]
    assert restore["database"] == "not restored" and restore["files"] == "not restored"


def test_files_that_cannot_go_back_are_reported_and_the_restore_recorded(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    capi.credentials["orders-acceptance-files"]["bucket"] = "no-such-bucket"
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert f"acceptance: the database was restored from {archive.name}, but its files were not all copied back: copying " in err
    assert " into the bucket no-such-bucket: (NoSuchBucket) when calling the PutObject operation: The specified bucket does not exist (recorded)" in err
    assert _snapshot(pg) == seeded
    restore = _records(project, "acceptance")[-1]
    assert restore.action == "restore" and restore.changes["restore"]["files"] == "not restored"


def test_list_and_create_say_what_cloud_foundry_offers_instead(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    for command in ("list", "create"):
        rc, _, err = _cli(capsys, "backup", command, "-s", "cf-acceptance", "-e", "acceptance", "-C", str(project.path))
        assert rc == 2 and "Traceback" not in err, err
        assert f"error: acceptance: no `mxinfra backup {command}` on Cloud Foundry." in err
        assert "`mxinfra backup download -s cf-acceptance -e acceptance -o DIR` takes a backup now through service keys" in err
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "--id", "20261201T000000Z", "-o", "x", "-C", str(project.path))
    assert rc == 2 and "--id 20261201T000000Z: the cloudfoundry target downloads only a backup it takes now (what it keeps is not an archive it can hand out): leave --id out to take one now" in err


def test_the_tunnels_address_replaces_the_keys_host_and_port(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    # the key names a host only the foundation reaches; the tunnel's local end is the real server
    capi.credentials["orders-acceptance-database"]["uri"] = pg.url.replace("127.0.0.1", "10.255.0.9").replace(f":{pg.port}/", ":5432/") + "?sslmode=disable"
    base = ["backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "b"), "-C", str(project.path)]
    rc, _, err = _cli(capsys, *base, "--database-via", f"127.0.0.1:{pg.port}")
    assert rc == 0, err
    rc, _, err = _cli(capsys, *base, "--database-via", "127.0.0.1")
    assert rc == 2 and "--database-via '127.0.0.1': expected HOST:PORT, the local end of a tunnel to the database" in err


# --- between targets ---------------------------------------------------------------------------------------


def test_an_archive_the_kubernetes_backup_job_wrote_restores_on_cloud_foundry(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """The archive is one format on every target: the Kubernetes CronJob's script (run as it is, against the
    same database and a directory of the same files) writes one that `restore --archive` puts back here."""
    import subprocess

    from mxinfra.backup_scripts import SCRIPTS

    script = SCRIPTS / "backup.sh"
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    files = tmp_path / "files"  # a claim as the runtime's local file store lays it out
    for path, body in ARCHIVED.items():
        (files / path).parent.mkdir(parents=True, exist_ok=True)
        (files / path).write_bytes(body)
    kept = tmp_path / "kept"
    kept.mkdir()
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(files), "BACKUP_NOW": "20261205T020000Z"}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    archive = kept / "20261205T020000Z.tar.gz"
    pg.psql('DELETE FROM "orders$order"; UPDATE "system$filedocument" SET name = \'changed\'')
    _s3(s3_server).delete_object(Bucket=BUCKET, Key="doc-2")
    base = ["backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path)]
    # no mxinfra download recorded it: nothing says it came from acceptance
    rc, _, err = _cli(capsys, *base)
    assert rc == 2 and "is in no signed backup-download record of acceptance's log, so nothing says it came from acceptance" in err
    assert "or give --unrecorded to restore it all the same (recorded as unrecorded)" in err
    rc, _, err = _cli(capsys, *base, "--unrecorded")
    assert rc == 0, err
    assert _snapshot(pg) == seeded and _objects(s3_server) == FILES
    # restored below production as asked, said and recorded so
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"warning: {archive.name} (sha256 {sha}) is in no signed backup-download record of acceptance's log: restored as an unrecorded archive" in err
    assert _records(project, "acceptance")[-1].changes["restore"]["archive"]["unrecorded"] is True


# --- what must never be left behind --------------------------------------------------------------------------


def test_a_failed_download_still_deletes_its_keys_and_names_the_one_it_could_not(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    capi.credentials["orders-acceptance-database"]["uri"] = pg.url.replace(PASSWORD, "wrong-password") + "?sslmode=disable"
    capi.fail_key_deletes = 1
    out = tmp_path / "b"
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: pg_dump of orders-acceptance-database at 127.0.0.1:" in err and "password authentication failed" in err
    assert "; nothing was recorded" in err
    [left] = capi.keys()
    assert f"warning: the service key {left['name']} of orders-acceptance-database could not be deleted" in err
    assert list(out.iterdir()) == [] and _records(project, "acceptance") == [] and "wrong-password" not in err


def test_a_key_whose_creation_job_failed_is_deleted_all_the_same(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    capi.fail_key_creates = 1
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "b"), "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: acceptance: the Cloud Controller refused creating the service key mxinfra-backup-" in err and "timed out after creating the key" in err
    assert capi.keys() == []  # the broker made it before its job failed: found by name and deleted


def test_an_app_that_will_not_start_again_is_said_and_recorded_and_the_restore_stands(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    capi.fail_starts = 1
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert "warning: acceptance: the Cloud Controller refused starting the app orders-acceptance again" in err and "start it (cf start orders-acceptance)" in err
    assert _snapshot(pg) == seeded and capi.objects["apps"][app]["state"] == "STOPPED"
    restore = _records(project, "acceptance")[-1].changes["restore"]
    assert restore["app"] == "stopped, not started again" and restore["warnings"] == 1


def test_objects_that_cannot_be_files_of_an_archive_are_named(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    _s3(s3_server).put_object(Bucket=BUCKET, Key="docs/a1/7f3e-file/inside", Body=b"a file where docs/a1/7f3e-file is one")
    out = tmp_path / "b"
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert f"the bucket {BUCKET}: object " in err and "and another object land on the same file of the archive (tree/docs/a1/7f3e-file" in err
    assert list(out.iterdir()) == [] and capi.keys() == []
    _s3(s3_server).delete_object(Bucket=BUCKET, Key="docs/a1/7f3e-file/inside")
    # a key laid out like Mendix Cloud's files would come back as another key: refused, not renamed
    _s3(s3_server).put_object(Bucket=BUCKET, Key="ab/cd/abcdef", Body=b"")
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 2 and f"the bucket {BUCKET}: object 'ab/cd/abcdef' is named like a file of Mendix Cloud's layout (xx/yy/<name>): it would be restored as 'abcdef'" in err
    assert list(out.iterdir()) == [] and capi.keys() == []
    _s3(s3_server).delete_object(Bucket=BUCKET, Key="ab/cd/abcdef")
    _s3(s3_server).put_object(Bucket=BUCKET, Key="x/../up", Body=b"")
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 2 and f"the bucket {BUCKET}: object 'x/../up' cannot be kept as a file of the archive (an empty, '.' or '..' path segment)" in err


def test_the_archive_and_a_new_directory_for_it_are_the_owners_alone(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "new" / "backups"
    old = os.umask(0o022)
    try:
        assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    finally:
        os.umask(old)
    [archive] = out.iterdir()
    assert archive.stat().st_mode & 0o777 == 0o600 and out.stat().st_mode & 0o777 == 0o700


def test_restore_by_id_on_cloud_foundry_says_to_restore_an_archive(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--id", "20261201T000000Z", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "--id 20261201T000000Z: the cloudfoundry target keeps no backups to restore by id: restore a downloaded one with --archive FILE --from ENV" in err


def _mendix_cloud_archive(path: Path, pg: PostgresServer, tree: dict[str, bytes]) -> Path:
    """An archive laid out as docs.mendix.com's "Format of a Backup File" says Mendix Cloud writes one:
    .metadata first, db/db.backup made by `pg_dump -O -x -Fc`, the files under tree/ (no directory entries)."""
    import io
    import subprocess

    dump = path.parent / "db.backup"
    subprocess.run(["pg_dump", "-O", "-x", "-Fc", f"--file={dump}", pg.url], check=True)
    metadata = b'{"duration":"0","dumpSize":"%d","modelVersion":"1.0.0.40","databaseSize":"9730584","filesSize":"1346575"}' % dump.stat().st_size
    with tarfile.open(path, "w:gz") as tar:
        for name, body in ((".metadata", metadata), ("db/db.backup", dump.read_bytes()), *((f"tree/{p}", b) for p, b in tree.items())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def test_a_mendix_cloud_archive_restores_each_file_under_the_key_the_runtime_looks_for(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    """Mendix Cloud keeps a file at tree/xx/yy/<uuid>; the runtime asks an object store for <uuid>."""
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    archive = _mendix_cloud_archive(tmp_path / "files_and_database-fc9e126f-201811210121.tar.gz", pg, ARCHIVED)
    pg.psql('DELETE FROM "orders$order"')
    for key in FILES:
        _s3(s3_server).delete_object(Bucket=BUCKET, Key=key)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 0, err
    assert _snapshot(pg) == seeded and _objects(s3_server) == FILES


def test_two_files_that_would_go_back_under_one_key_are_refused_before_anything_changes(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    # tree/<uuid> (an older mxinfra archive's key) and tree/0d/3e/<uuid> (Mendix Cloud's layout): both <uuid>
    archive = _mendix_cloud_archive(tmp_path / "both.tar.gz", pg, {f"0d/3e/{UUID}": b"one", UUID: b"the other"})
    pg.psql('DELETE FROM "orders$order"')
    changed = _snapshot(pg)
    calls = len(capi.requests)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert f"entry 'tree/{UUID}': would go back as the key '{UUID}', which another file of the archive goes back as" in err
    # judged before any key was made or the app stopped: nothing was asked of the Cloud Controller but reads
    assert _snapshot(pg) == changed and _objects(s3_server) == FILES and capi.keys() == []
    assert [r for r in capi.requests[calls:] if r[0] != "GET"] in ([], [("POST", "/oauth/token")])


# --- SAP BTP's Object Store on Azure -------------------------------------------------------------------------


def test_files_in_an_azure_container_go_into_the_archive_and_back(capi, project, to_double, monkeypatch, pg, s3_server, seeded, azurite, capsys, tmp_path):
    """An Azure object-store key (container_uri and a SAS token, as SAP BTP's Object Store on Azure gives)."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    container = ContainerClient(azurite, "mendix-files", credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    if not container.exists():
        container.create_container()
    for key, body in FILES.items():
        container.upload_blob(key, body, overwrite=True)
    sas = generate_container_sas(AZURITE_ACCOUNT, "mendix-files", account_key=AZURITE_KEY, permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    capi.credentials["orders-acceptance-files"] = {"account_name": AZURITE_ACCOUNT, "container_uri": f"{azurite}/mendix-files", "sas_token": sas}
    out = tmp_path / "b"
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))
    assert rc == 0, err
    [archive] = out.iterdir()
    with tarfile.open(archive) as tar:
        assert {n[5:]: tar.extractfile(n).read() for n in tar.getnames() if n.startswith("tree/") and tar.getmember(n).isfile()} == ARCHIVED
    container.delete_blob("doc-2")
    container.upload_blob("docs/a1/7f3e-file", b"overwritten", overwrite=True)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()} == FILES
    assert sas.split("sig=")[1][:10] not in err and capi.keys() == []
    # a key that names a container without its token is named, not a traceback
    capi.credentials["orders-acceptance-files"] = {"container_uri": f"{azurite}/mendix-files"}
    rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "c"), "-C", str(project.path))
    assert rc == 2 and "service key of orders-acceptance-files: an Azure object store without sas_token" in err
    # a key whose container_uri has no host: the SDK's own message would quote the URL with the token
    for bad in ("https:///mendix-files", "https://[::1", "https://files.example.com"):
        capi.credentials["orders-acceptance-files"] = {"container_uri": bad, "sas_token": "sv=2024-01-01&sig=SECRETSIGNATURE123"}
        rc, _, err = _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(tmp_path / "c"), "-C", str(project.path))
        assert rc == 2 and "service key of orders-acceptance-files: " in err and "container_uri" in err, (bad, err)
        assert "SECRETSIGNATURE123" not in err and "Traceback" not in err and capi.keys() == [], (bad, err)


def test_an_app_that_does_not_stop_in_time_is_started_again_and_nothing_restored(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    app = _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    project.stack("cf-acceptance", stack_file(config("acceptance", cf={"timeouts": {"job": 10}})))
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    pg.psql('DELETE FROM "orders$order"')
    emptied = _snapshot(pg)
    capi.stop_hangs = True  # its instances keep running after the stop
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err, err
    assert "error: acceptance: the Cloud Controller refused waiting for the app orders-acceptance to stop" in err and "did not finish within 10 seconds" in err
    assert _snapshot(pg) == emptied  # nothing restored under a running app
    assert capi.objects["apps"][app]["state"] == "STARTED" and f"/v3/apps/{app}/actions/start" in [p for m, p in capi.requests if m == "POST"]
    recs = _records(project, "acceptance")
    assert capi.keys() == [] and [r.action for r in recs] == ["backup-download", "intent", "restore"] and err.rstrip().endswith("; nothing was restored (recorded)"), err
    assert {k: v for k, v in recs[-1].changes["restore"].items() if k != "archive"} == {"from": "acceptance", "app": "stopped, then started", "database": "not restored", "files": "not restored"}


def test_files_not_restored_and_an_app_not_started_are_both_recorded(capi, project, to_double, monkeypatch, pg, s3_server, seeded, capsys, tmp_path):
    _deployed(capi, project, monkeypatch, pg, s3_server, "acceptance", "cf-acceptance")
    out = tmp_path / "b"
    assert _cli(capsys, "backup", "download", "-s", "cf-acceptance", "-e", "acceptance", "-o", str(out), "-C", str(project.path))[0] == 0
    [archive] = out.iterdir()
    capi.credentials["orders-acceptance-files"]["bucket"] = "no-such-bucket"
    capi.fail_starts = 1
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "cf-acceptance", "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "-C", str(project.path))
    assert rc == 2 and "its files were not all copied back" in err and "start it (cf start orders-acceptance)" in err
    restore = _records(project, "acceptance")[-1].changes["restore"]
    assert restore["files"] == "not restored" and restore["app"] == "stopped, not started again"


def test_the_keys_credentials_are_read_as_the_buildpack_reads_them():
    from mxinfra.errors import UserError
    from mxinfra_cloudfoundry.backup_actions import database_of

    db = database_of({"uri": "postgres://u%40x:p%2Fw@db.internal:6432/orders?sslmode=verify-full"}, "key", None)
    assert (db.host, db.port, db.user, db.password, db.name, db.sslmode) == ("db.internal", "6432", "u@x", "p/w", "orders", "verify-full")
    # no uri: the separate fields (SAP's keys name them so); sslmode required unless the key says otherwise
    db = database_of({"hostname": "h", "port": 5433, "username": "u", "password": "pw", "dbname": "d"}, "key", "[::1]:63432")
    assert (db.host, db.port, db.user, db.name, db.sslmode) == ("::1", "63432", "u", "d", "require")
    with pytest.raises(UserError) as e:
        database_of({"uri": "postgres://u:s3cr/et@host:5432/d"}, "service key of x", None)
    assert "s3cr" not in str(e.value) and "its uri is not a URI libpq reads" in str(e.value)
    with pytest.raises(UserError, match="the credentials name no PostgreSQL database .*no host, user, password, name"):
        database_of({"uri": "mysql://u:p@h/d"}, "service key of x", None)
