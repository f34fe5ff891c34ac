"""Backups on the kubernetes target: the CronJob, the restore template, their claim and scripts, as
`mxinfra plan` renders them (strict kubernetes-validate, Pod Security `restricted`)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mxinfra.access import Permission
from mxinfra.cli import main
from mxinfra.naming import Naming

from k8s_stacks import K8S_VERSION, config, restricted_violations, with_

from mxinfra_kubernetes import rbac
from mxinfra_kubernetes.backups import SCRIPTS
from mxinfra_kubernetes.config import KubernetesConfig, for_environment
from mxinfra_kubernetes.layout import Layout


def ungated(cfg: dict) -> dict:
    """Production as these tests plan it: without staged promotion (no acceptance deploy recorded here),
    said explicitly, with a reason (issue 19, F6)."""
    from scaffold import UNGATED

    env = (cfg.get("mxinfra:environments") or {}).get("production")
    if env is None or "requirePromotionFrom" in env or "ungated" in env:
        return cfg
    return with_(cfg, "mxinfra:environments/production.ungated", dict(UNGATED))


def _render(project, capsys, tmp_path: Path, stack: str, cfg: dict) -> tuple[list[dict], str]:
    project.stack(stack, ungated(cfg))
    rc = main(["plan", "-s", stack, "-C", str(project.path), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    docs = [d for d in yaml.safe_load_all((tmp_path / "out" / "kubernetes" / f"{stack}.yaml").read_text()) if d]
    return docs, out.out


def _one(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.usefixtures("engine_secrets")
def test_production_gets_a_nightly_backup_and_a_suspended_restore_template(project, capsys, tmp_path):
    docs, _ = _render(project, capsys, tmp_path, "production", config("production"))
    for d in docs:
        if d["kind"] in ("CronJob", "PersistentVolumeClaim", "ConfigMap"):
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    backup = _one(docs, "CronJob", "orders-production-backup")
    restore = _one(docs, "CronJob", "orders-production-restore")
    assert backup["spec"]["schedule"] == "0 2 * * *" and backup["spec"]["timeZone"] == "Etc/UTC"
    assert backup["spec"]["suspend"] is False and restore["spec"]["suspend"] is True
    assert backup["spec"]["concurrencyPolicy"] == restore["spec"]["concurrencyPolicy"] == "Forbid"
    for cron in (backup, restore):
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], cron["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        # its pods carry the environment's instance label: the NetworkPolicy's egress to the database applies
        assert cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "orders-production"
    (c,) = backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = _env(c)
    assert env["DATABASE_URL"]["secretKeyRef"]["key"] == "DATABASE_URL"
    assert env["DATABASE_URL"]["secretKeyRef"]["name"].startswith("orders-production-database-secret-")
    assert (env["KEEP_DAILY_DAYS"], env["KEEP_WEEKLY_WEEKS"], env["KEEP_MONTHLY_MONTHS"]) == ("14", "13", "12")
    assert env["PGSSLMODE"] == "require"  # the example's external database requires TLS
    assert "FILES_DIR" not in env  # its files are in S3: not copied by this slice
    assert c["command"] == ["/bin/sh", "/scripts/backup.sh"]
    claim = _one(docs, "PersistentVolumeClaim", "orders-production-backups")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    quota = _one(docs, "ResourceQuota", "orders-production-quota")
    assert quota["spec"]["hard"]["persistentvolumeclaims"] == "1"


@pytest.mark.usefixtures("engine_secrets")
def test_the_cluster_runs_the_scripts_the_tests_run(project, capsys, tmp_path):
    docs, _ = _render(project, capsys, tmp_path, "production", config("production"))
    scripts = _one(docs, "ConfigMap", "orders-production-backup-scripts")
    assert scripts["data"] == {name: (SCRIPTS / name).read_text() for name in ("backup.sh", "restore.sh")}


@pytest.mark.usefixtures("engine_secrets")
def test_local_files_are_read_by_the_backup_and_written_by_the_restore(project, capsys, tmp_path):
    cfg = with_(config("test", instances=1), "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    cfg = with_(cfg, "mxinfra:kubernetes/database", {"inCluster": {"size": "2Gi", "image": "postgres:16.4"}})
    cfg = with_(cfg, "mxinfra:environments/test.backups", {"schedule": "30 3 * * 1-5", "retention": {"daily": 7, "weekly": 4, "monthly": 0}})
    docs, _ = _render(project, capsys, tmp_path, "test", cfg)
    backup = _one(docs, "CronJob", "orders-test-backup")
    restore = _one(docs, "CronJob", "orders-test-restore")
    for d in (backup, restore):
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    assert backup["spec"]["schedule"] == "30 3 * * 1-5"
    mounts = {}
    for cron in (backup, restore):
        (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        # an in-cluster database: the backup runs its image, so pg_dump matches the server
        assert c["image"] == "postgres:16.4"
        assert "PGSSLMODE" not in _env(c)
        mounts[cron["metadata"]["name"]] = {m["name"]: m for m in c["volumeMounts"]}
        assert _env(c)["FILES_DIR"] == "/files"
    assert mounts["orders-test-backup"]["files"]["readOnly"] is True
    assert mounts["orders-test-restore"]["files"]["readOnly"] is False
    (c,) = backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert (_env(c)["KEEP_DAILY_DAYS"], _env(c)["KEEP_WEEKLY_WEEKS"], _env(c)["KEEP_MONTHLY_MONTHS"]) == ("7", "4", "0")
    (rc,) = restore["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    # set by whoever makes a Job of the template; no value here (the API server would drop an empty one)
    assert {"name": "BACKUP_ID"} in rc["env"]


@pytest.mark.usefixtures("engine_secrets")
def test_opted_out_production_has_no_backup_objects_and_is_warned(project, capsys, tmp_path):
    cfg = with_(config("production"), "mxinfra:environments/production.backups", {"enabled": False, "reason": "a replica of the ERP database"})
    docs, out = _render(project, capsys, tmp_path, "production", cfg)
    assert not [d for d in docs if d["kind"] == "CronJob" or d["metadata"].get("name", "").endswith(("-backups", "-backup-scripts"))]
    assert "production has no backups (a replica of the ERP database)" in " ".join(out.split())


def test_opting_out_production_without_a_reason_is_refused(project, capsys):
    cfg = with_(config("production"), "mxinfra:environments/production.backups", {"enabled": False})
    project.stack("production", ungated(cfg))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "mxinfra:environments.production.backups.reason" in err and "Traceback" not in err


def test_production_backups_holders_still_create_no_job():
    # The platform's CronJob takes production's backups: a person holding backups there only follows them.
    lay = Layout.of(Naming("orders", "production"), for_environment(KubernetesConfig.model_validate({"mode": "plain"}), "production"), {})
    for r in rbac.rules(Permission.BACKUPS, lay, "plain", production=True):
        assert set(r["verbs"]) <= {"get", "list", "watch"}, r
