"""`mxinfra backup list|create|restore` on the kubernetes target, end to end: the CronJobs `mxinfra plan`
renders, served by a loopback API server whose "kubelet" runs each Job the CLI creates for real (the
ConfigMap's script, the Job's env, its volumes as directories) against a real PostgreSQL; every row
compared after the restore; the signed activity records checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from postgres import PostgresServer, require_bin_dir

from mxinfra.cli import main

from k8s_stacks import K8S_VERSION, config, restricted_violations, with_

TOKEN = "backup-cli-test-token"


def ungated(cfg: dict) -> dict:
    """Production as these tests plan it: without staged promotion (no acceptance deploy recorded here),
    said explicitly, with a reason (issue 19, F6)."""
    from scaffold import UNGATED

    env = (cfg.get("mxinfra:environments") or {}).get("production")
    if env is None or "requirePromotionFrom" in env or "ungated" in env:
        return cfg
    return with_(cfg, "mxinfra:environments/production.ungated", dict(UNGATED))


class Cluster:
    """The part of a Kubernetes API server the backup commands use, with a kubelet that runs Jobs."""

    def __init__(self, objects: list[dict], pg_url: str, root: Path) -> None:
        self.cronjobs = {d["metadata"]["name"]: d for d in objects if d["kind"] == "CronJob"}
        self.configmaps = {d["metadata"]["name"]: d for d in objects if d["kind"] == "ConfigMap"}
        self.pg_url, self.root = pg_url, root
        self.allowed = True
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []

    def run_job(self, job: dict) -> None:
        """What the kubelet would do: the container's command with its env, each volume a directory."""
        pod = job["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        dirs = {}
        for v in pod["volumes"]:
            if "configMap" in v:
                d = self.root / "cm" / v["configMap"]["name"]
                d.mkdir(parents=True, exist_ok=True)
                for name, text in self.configmaps[v["configMap"]["name"]]["data"].items():
                    (d / name).write_text(text)
            else:
                d = self.root / "pvc" / v["persistentVolumeClaim"]["claimName"]
                d.mkdir(parents=True, exist_ok=True)
            dirs[v["name"]] = d
        mounts = {m["mountPath"]: dirs[m["name"]] for m in c["volumeMounts"]}

        def local(value: str) -> str:
            for path, d in mounts.items():
                if value == path or value.startswith(path + "/"):
                    return str(d) + value[len(path) :]
            return value

        env = {"PATH": f"{require_bin_dir()}:{os.environ['PATH']}"}
        for e in c["env"]:
            if "valueFrom" in e:
                assert e["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
                env[e["name"]] = self.pg_url
            else:
                env[e["name"]] = local(e["value"])
        done = subprocess.run([local(a) for a in c["command"]], env=env, capture_output=True, text=True, timeout=120)
        name = job["metadata"]["name"]
        self.logs[name] = done.stdout + done.stderr
        ok = done.returncode == 0
        job["status"] = {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True", "message": f"exit {done.returncode}"}]}
        self.pods[name] = {"metadata": {"name": name, "labels": pod and job["spec"]["template"]["metadata"]["labels"], "creationTimestamp": f"{len(self.pods):06d}"}, "status": {"phase": "Succeeded" if ok else "Failed"}}

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        url = urllib.parse.urlparse(path)
        if method == "POST" and url.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            return 201, {**body, "status": {"allowed": self.allowed}}
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/cronjobs/([^/]+)", url.path):
            found = self.cronjobs.get(m.group(2))
            return (200, json.loads(json.dumps(found))) if found and found["metadata"]["namespace"] == m.group(1) else (404, {"kind": "Status", "code": 404})
        if method == "POST" and (m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", url.path)):
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
            assert restricted_violations(body["spec"]["template"]["spec"]) == []
            self.created.append(json.loads(json.dumps(body)))
            self.jobs[body["metadata"]["name"]] = body
            self.run_job(body)
            return 201, body
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)", url.path):
            return 200, self.jobs[m.group(2)]
        if url.path.endswith("/pods"):
            wanted = dict(kv.split("=") for kv in urllib.parse.parse_qs(url.query)["labelSelector"][0].split(","))
            items = [p for p in self.pods.values() if wanted.items() <= p["metadata"]["labels"].items()]
            return 200, {"kind": "PodList", "items": items}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", url.path):
            return 200, self.logs[m.group(2)]
        return 404, {"kind": "Status", "code": 404}


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def _serve(cluster: Cluster) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            assert self.headers.get("Authorization") == f"Bearer {TOKEN}"
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = cluster.handle(method, self.path, body)
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def cluster(project, capsys, tmp_path, pg, request, monkeypatch, engine_secrets) -> Iterator[tuple[Cluster, str]]:
    """The stack `request.param` planned, its objects served; KUBECONFIG names the server."""
    from mxinfra import plan

    # the stack's secrets read as the engine marks them, by `mxinfra backup` as by `mxinfra plan`
    monkeypatch.setattr("mxinfra.stackfile.read_stack_config", plan.read_stack_config)
    stack = request.param
    cfg = config(stack, instances=1)
    cfg = with_(cfg, "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    # the loopback PostgreSQL has no TLS (the CronJob's PGSSLMODE=require is tested in test_k8s_backups.py)
    cfg = with_(cfg, "mxinfra:kubernetes/database.requireTls", False)
    project.stack(stack, ungated(cfg))
    assert main(["plan", "-s", stack, "-C", str(project.path), "--out", str(tmp_path / "plan")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    objects = [d for d in yaml.safe_load_all((tmp_path / "plan" / "kubernetes" / f"{stack}.yaml").read_text()) if d]
    c = Cluster(objects, pg.url, tmp_path / "node")
    server, url = _serve(c)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "k",
    }
    (tmp_path / "ambient-kubeconfig").write_text(yaml.safe_dump(kubeconfig))  # conftest's KUBECONFIG
    try:
        yield c, stack
    finally:
        server.shutdown()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _records(project, stack: str, env: str) -> list[Any]:
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    return ActivityLog(open_store(f"file://{project.path / '.mxinfra'}")).records(env)


def _rows(pg: PostgresServer) -> str:
    return pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT')


SEED = """DROP SCHEMA public CASCADE; CREATE SCHEMA public;
CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), placed timestamp, doc bytea);
INSERT INTO "orders$order" SELECT g, 'ORD-' || g, g * 1.12345678, timestamp '2020-01-01' + g * interval '1 hour', decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;"""


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_create_list_restore_on_test(cluster, pg, project, capsys):
    c, stack = cluster
    pg.psql(SEED)
    before = _rows(pg)
    files = c.root / "pvc" / "orders-test-files"
    files.mkdir(parents=True)
    (files / "doc1").write_bytes(b"\x00\x01 file one")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    (job,) = c.created
    assert job["metadata"]["name"].startswith("orders-test-backup-")
    assert {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}["BACKUP_NOW"] == backup_id
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path), "--json")
    assert rc == 0 and json.loads(out) == [backup_id], err

    pg.psql('UPDATE "orders$order" SET total = 0, doc = NULL WHERE id % 2 = 0; DELETE FROM "orders$order" WHERE id > 1500;')
    (files / "doc1").write_bytes(b"changed")
    (files / "doc2").write_bytes(b"new")
    assert _rows(pg) != before
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == before
    assert {p.name: p.read_bytes() for p in files.iterdir()} == {"doc1": b"\x00\x01 file one"}
    assert [j["metadata"]["name"].split("-")[2] for j in c.created] == ["backup", "restore"]  # no backup first below production

    recs = _records(project, stack, "test")
    assert [(r.action, r.changes) for r in recs] == [
        ("backup", {"backup": {"id": backup_id, "trigger": "on-demand"}}),
        ("restore", {"restore": {"id": backup_id, "from": "test"}}),
    ]
    assert all(r.signature for r in recs)
    rc, out, err = _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))
    assert rc == 0, out + err


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_production_restore_takes_a_backup_first(cluster, pg, project, capsys):
    c, stack = cluster
    pg.psql(SEED)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    before = _rows(pg)
    pg.psql('DELETE FROM "orders$order" WHERE id % 3 = 0')
    after_change = _rows(pg)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == before
    kinds = [j["metadata"]["name"].split("-")[2] for j in c.created]
    assert kinds == ["backup", "backup", "restore"]
    recs = _records(project, stack, "production")
    assert [r.action for r in recs] == ["backup", "backup", "restore"]
    safety = recs[1].changes["backup"]
    assert safety["trigger"] == "before restore" and recs[2].changes["restore"]["backupBefore"] == safety["id"]
    # the backup taken first holds the changed rows: the restore can be undone
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", safety["id"], "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == after_change


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_refused_without_the_rights(cluster, project, capsys):
    c, stack = cluster
    c.allowed = False
    for args in (["create"], ["restore", "--id", "20261204T020000Z"], ["list"]):
        rc, out, err = _cli(capsys, "backup", *args, "-s", stack, "-e", "production", "-C", str(project.path))
        assert rc == 2 and "Traceback" not in err, args
        assert "may not" in err
    assert c.created == []
    assert "platform or release identity" in _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))[2]
    assert _records(project, stack, "production") == []


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_restore_of_an_unknown_or_malformed_id_is_refused(cluster, pg, project, capsys):
    c, stack = cluster
    pg.psql(SEED)
    assert _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))[0] == 0
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "20001231T000000Z", "-C", str(project.path))
    assert rc == 2 and "has no backup 20001231T000000Z" in err
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "latest", "-C", str(project.path))
    assert rc == 2 and "YYYYmmddTHHMMSSZ" in err
    assert len(c.created) == 1


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_failed_job_is_exit_2_and_recorded_nowhere(cluster, project, capsys):
    c, stack = cluster
    c.pg_url = "postgres://nobody:x@127.0.0.1:1/none"  # the database does not answer
    rc, _, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 2 and "failed" in err and "kubectl -n orders-test logs job/orders-test-backup-" in err
    assert _records(project, stack, "test") == []
