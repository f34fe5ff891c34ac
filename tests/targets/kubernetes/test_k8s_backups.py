"""Backups on the kubernetes target: the CronJob, the restore template, their claim and scripts, as
`mxinfra plan` renders them (strict kubernetes-validate, Pod Security `restricted`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mxinfra.access import Permission
from mxinfra.backup_archive import CLEAN_SQL
from mxinfra.cli import main
from mxinfra.naming import Naming

from k8s_stacks import K8S_VERSION, config, restricted_violations, with_

from mxinfra_kubernetes import access
from mxinfra_kubernetes.backups import SCRIPTS, TRANSFER_PORT, export_job_spec
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


def _step(docs: list[dict], cron: str, name: str) -> dict:
    """The container `name` of a CronJob's pod, init containers included."""
    pod = _one(docs, "CronJob", cron)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (found,) = [c for c in (*pod.get("initContainers", []), *pod["containers"]) if c["name"] == name]
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
    # its files are in S3: copied into the scratch volume first, which backup.sh archives as tree/
    assert env["FILES_DIR"] == "/files"
    (pull,) = backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
    pull_env = _env(pull)
    assert (pull["name"], pull["command"], pull["image"]) == ("pull-files", ["/bin/sh", "/scripts/store.sh", "pull-files"], "rclone/rclone:1.76.0")
    assert pull_env["FILES_REMOTE"] == "files:orders-files" and pull_env["RCLONE_CONFIG_FILES_ENDPOINT"] == "https://s3.example.com"
    assert "DATABASE_URL" not in pull_env and pull_env["RCLONE_CONFIG_FILES_ACCESS_KEY_ID"]["secretKeyRef"]["name"].startswith("orders-production-backup-files-")
    (back,) = restore["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
    (push,) = restore["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert (back["name"], push["name"]) == ("restore", "push-files")
    assert c["command"] == ["/bin/sh", "/scripts/backup.sh"]
    claim = _one(docs, "PersistentVolumeClaim", "orders-production-backups")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    quota = _one(docs, "ResourceQuota", "orders-production-quota")
    assert quota["spec"]["hard"]["persistentvolumeclaims"] == "1"


@pytest.mark.usefixtures("engine_secrets")
def test_the_cluster_runs_the_scripts_the_tests_run(project, capsys, tmp_path):
    docs, _ = _render(project, capsys, tmp_path, "production", config("production"))
    scripts = _one(docs, "ConfigMap", "orders-production-backup-scripts")
    # the scripts as the target ships them, and the core's clean.sql (what every target runs before a dump)
    assert scripts["data"] == {**{name: (SCRIPTS / name).read_text() for name in ("backup.sh", "restore.sh", "receive.pl", "export.sh", "export.pl", "Transfer.pm", "store.sh")}, "clean.sql": CLEAN_SQL}


@pytest.mark.usefixtures("engine_secrets")
def test_local_files_are_read_by_the_backup_and_written_by_the_restore(project, capsys, tmp_path):
    cfg = with_(config("test", instances=1), "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    cfg = with_(cfg, "mxinfra:kubernetes/database", {"inCluster": {"size": "2Gi", "image": "postgres:16.4"}})
    cfg = with_(cfg, "mxinfra:environments/test.backups", {"schedule": "30 3 * * 1-5", "retention": {"daily": 7, "weekly": 4, "monthly": 0}})
    docs, out = _render(project, capsys, tmp_path, "test", cfg)
    # 16.4's pg_restore predates \restrict: the plan says the restore will refuse, and where to change it
    assert ("the restore Job's pg_restore (postgres:16.4) does not write \\restrict, so `mxinfra backup restore` refuses to run a dump through psql "
            "with it (a crafted dump could run psql's meta-commands): use PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 or newer "
            "(mxinfra:kubernetes.database.inCluster.image)") in " ".join(out.split())
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
    assert "readOnly" not in mounts["orders-test-restore"]["files"]  # writable (a false readOnly the API server would drop)
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
    for r in access.rules(Permission.BACKUPS, lay, "plain", production=True):
        assert set(r["verbs"]) <= {"get", "list", "watch"}, r


@pytest.mark.usefixtures("engine_secrets")
def test_restore_from_opens_the_restore_pods_to_the_sources_export_pods_only(project, capsys, tmp_path):
    cfg = with_(config("acceptance"), "mxinfra:environments/acceptance.backups", {"restoreFrom": ["production"]})
    docs, _ = _render(project, capsys, tmp_path, "acceptance", cfg)
    policy = _one(docs, "NetworkPolicy", "orders-acceptance-restore-transfer")
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "restore", "app.kubernetes.io/instance": "orders-acceptance"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "orders-production"}}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": "backup-export"}}}],
                "ports": [{"protocol": "TCP", "port": TRANSFER_PORT}],
            }
        ],
    }
    # the restore template's pods carry both labels the policy selects
    restore = _one(docs, "CronJob", "orders-acceptance-restore")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= restore["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].items()
    # without restoreFrom nothing reaches a restore pod
    docs, _ = _render(project, capsys, tmp_path, "acceptance", config("acceptance"))
    assert not [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-restore-transfer")]


@pytest.mark.usefixtures("engine_secrets")
def test_the_export_job_holds_the_archive_and_nothing_else(project, capsys, tmp_path):
    cfg = with_(config("production", instances=1), "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    docs, _ = _render(project, capsys, tmp_path, "production", cfg)
    restore = _one(docs, "CronJob", "orders-production-restore")
    job = export_job_spec(restore, "orders-production-export", "20261204T020000Z", "t0k3n", "20261205T010203Z", to="acceptance", target="10.0.0.7:8765")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == [] and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["command"] == ["/bin/sh", "/scripts/export.sh"]
    assert _env(c) == {"BACKUP_DIR": "/backups", "HOME": "/tmp", "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": "10.0.0.7:8765", "BACKUP_TOKEN": "t0k3n"}
    assert [v["name"] for v in pod["volumes"]] == ["scripts", "backups"] and all(m["readOnly"] for m in c["volumeMounts"])
    labels = job["spec"]["template"]["metadata"]["labels"]
    # not the environment's pod (its NetworkPolicy allows the database only); the destination admits this label
    assert "app.kubernetes.io/instance" not in labels and labels["app.kubernetes.io/component"] == "backup-export"
    assert job["metadata"]["name"] == "orders-production-export-20261205010203" and job["metadata"]["namespace"] == "orders-production"
    assert job["metadata"]["annotations"]["mxinfra.io/export-to"] == "acceptance"
    assert restore["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["/bin/sh", "/scripts/restore.sh"]  # the template untouched
    # a download: the same pod, serving on the transfer port instead of sending
    served = export_job_spec(restore, "orders-production-export", "20261204T020000Z", "t0k3n", "20261205T010203Z", to="download", serve_port=TRANSFER_PORT)
    kubernetes_validate.validate(served, K8S_VERSION, strict=True)
    (c,) = served["spec"]["template"]["spec"]["containers"]
    assert _env(c)["BACKUP_SERVE_PORT"] == str(TRANSFER_PORT) and "BACKUP_TARGET" not in _env(c)
    # the server holds the token's sha256, never the token: the pod's spec is the environment's monitor's to read
    assert _env(c)["BACKUP_TOKEN_SHA256"] == hashlib.sha256(b"t0k3n").hexdigest() and "BACKUP_TOKEN" not in _env(c)
    assert "t0k3n" not in json.dumps(served)
    assert c["ports"] == [{"name": "archive", "containerPort": TRANSFER_PORT, "protocol": "TCP"}]


def test_below_production_backups_reads_its_two_cron_jobs_and_downloads_through_the_proxy():
    # `mxinfra backup` makes its Jobs from the CronJobs' templates: the Role reads those two, no other.
    lay = Layout.of(Naming("orders", "acceptance"), for_environment(KubernetesConfig.model_validate({"mode": "plain"}), "acceptance"), {})
    crons = [r for r in access.rules(Permission.BACKUPS, lay, "plain") if "cronjobs" in r["resources"]]
    assert crons == [{"apiGroups": ["batch"], "resources": ["cronjobs"], "resourceNames": ["orders-acceptance-backup", "orders-acceptance-restore"], "verbs": ["get"]}]
    # download: GET through the pod proxy (not exec, not attach, not port-forward); production has none of it
    rules = access.rules(Permission.BACKUPS, lay, "plain")
    assert {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]} in rules
    assert not [r for r in rules if {"pods/exec", "pods/attach", "pods/portforward"} & set(r["resources"])]
    # a restore reads whether the app runs; stopping it is the deploy permission's scale right, never backups'
    assert {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [lay.workload], "verbs": ["get"]} in rules
    assert not [r for r in rules if "apps" in r["apiGroups"] and (set(r["verbs"]) - {"get"} or "statefulsets/scale" in r["resources"])]
    prod = Layout.of(Naming("orders", "production"), for_environment(KubernetesConfig.model_validate({"mode": "plain"}), "production"), {})
    assert not [r for r in access.rules(Permission.BACKUPS, prod, "plain", production=True) if "pods/proxy" in r["resources"]]


PINNED = "registry.example.com/postgres:17.4@sha256:" + "ab" * 32


@pytest.mark.usefixtures("engine_secrets")
def test_an_external_databases_backup_runs_the_configured_image(project, capsys, tmp_path):
    cfg = with_(config("production"), "mxinfra:kubernetes/backups", {"image": PINNED})
    docs, _ = _render(project, capsys, tmp_path, "production", cfg)
    for action in ("backup", "restore"):
        assert _step(docs, f"orders-production-{action}", action)["image"] == PINNED
    # without the key: the default client image
    docs, _ = _render(project, capsys, tmp_path / "default", "production", config("production"))
    assert _step(docs, "orders-production-backup", "backup")["image"] == "postgres:17.7"


@pytest.mark.parametrize(
    "stack, image, in_cluster, expected",
    [
        ("production", "postgres:17.4", False, "is not pinned by digest"),
        ("production", "Postgres:17", False, "is not an image reference"),
        ("test", PINNED, True, "has an in-cluster database, whose own image backs it up"),
    ],
)
@pytest.mark.usefixtures("engine_secrets")
def test_a_backups_image_that_cannot_be_trusted_is_refused(project, capsys, stack, image, in_cluster, expected):
    cfg = config(stack, instances=1) if stack == "test" else config(stack)
    if in_cluster:
        cfg = with_(cfg, "mxinfra:kubernetes/database", {"inCluster": {}})
    cfg = with_(cfg, "mxinfra:kubernetes/environments", {stack: {"backups": {"image": image}}})
    project.stack(stack, ungated(cfg))
    rc = main(["plan", "-s", stack, "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"mxinfra:kubernetes.environments.{stack}.backups.image" in err and expected in err, err
    assert " 1 problem(s)" in err, err  # that one alone


@pytest.mark.usefixtures("engine_secrets")
def test_a_tag_is_enough_below_production(project, capsys, tmp_path):
    cfg = with_(config("acceptance"), "mxinfra:kubernetes/backups", {"image": "postgres:17.4"})
    project.stack("acceptance", cfg)
    rc = main(["plan", "-s", "acceptance", "-C", str(project.path)])
    assert rc == 0, capsys.readouterr().err


@pytest.mark.usefixtures("engine_secrets")
def test_production_is_warned_while_its_backup_runs_an_image_by_tag(project, capsys, tmp_path):
    _, out = _render(project, capsys, tmp_path, "production", config("production"))
    warning = "the backup Job runs postgres:17.7 by tag, with the database's credentials: pin it by digest with mxinfra:kubernetes.backups.image"
    assert warning in " ".join(out.split()) and "does not write \\restrict" not in out  # the default restricts
    _, out = _render(project, capsys, tmp_path / "pinned", "production", with_(config("production"), "mxinfra:kubernetes/backups", {"image": PINNED}))
    assert "postgres:17.7 by tag" not in out


@pytest.mark.usefixtures("engine_secrets")
def test_an_empty_backups_override_is_the_defaults(project, capsys, tmp_path):
    # `backups:` left empty under an environment (YAML null): the defaults, not the block's, and no crash
    cfg = with_(config("production"), "mxinfra:kubernetes/backups", {"size": "50Gi", "image": PINNED})
    cfg = with_(cfg, "mxinfra:kubernetes/environments", {"production": {"backups": None}})
    docs, _ = _render(project, capsys, tmp_path, "production", cfg)
    assert _one(docs, "PersistentVolumeClaim", "orders-production-backups")["spec"]["resources"]["requests"]["storage"] == "20Gi"
    (c,) = _one(docs, "CronJob", "orders-production-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "postgres:17.7"


@pytest.mark.parametrize("where", ["mxinfra:kubernetes/backups", "mxinfra:kubernetes/environments"])
def test_operator_mode_refuses_a_backups_block_it_would_ignore(project, capsys, where):
    value = {"size": "50Gi"} if where.endswith("backups") else {"production": {"backups": {"size": "50Gi"}}}
    cfg = with_(config("production", mode="operator"), where, value)
    project.stack("production", ungated(cfg))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    key = "mxinfra:kubernetes.backups" if where.endswith("backups") else "mxinfra:kubernetes.environments.production.backups"
    assert rc == 2 and f"{key}: operator mode takes no backups block" in err and "Traceback" not in err, err


@pytest.mark.usefixtures("engine_secrets")
def test_the_backup_jobs_cpu_is_a_key_and_the_quota_holds_it(project, capsys, tmp_path):
    from mxinfra_kubernetes.layout import cpu_milli

    def rendered(cfg: dict, where: Path) -> tuple[dict, dict, dict]:
        docs, _ = _render(project, capsys, where, "production", cfg)
        (c,) = _one(docs, "CronJob", "orders-production-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        (r,) = _one(docs, "CronJob", "orders-production-restore")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        limits = _one(docs, "LimitRange", "orders-production-limits")["spec"]["limits"][0]
        assert c["resources"] == r["resources"]
        return c["resources"], _one(docs, "ResourceQuota", "orders-production-quota")["spec"]["hard"], limits

    res, quota, _ = rendered(config("production"), tmp_path / "default")
    assert cpu_milli(res["limits"]["cpu"]) == cpu_milli(res["requests"]["cpu"]) == 500
    res2, quota2, limits2 = rendered(with_(config("production"), "mxinfra:kubernetes/backups", {"cpu": 2000}), tmp_path / "two")
    assert cpu_milli(res2["limits"]["cpu"]) == cpu_milli(res2["requests"]["cpu"]) == 2000
    for key in ("requests.cpu", "limits.cpu"):
        assert cpu_milli(quota2[key]) - cpu_milli(quota[key]) == 1500, key
    assert cpu_milli(limits2["max"]["cpu"]) >= 2000  # the LimitRange admits the Job


@pytest.mark.parametrize("value", [100, 9000])
def test_a_backup_cpu_out_of_range_is_refused(project, capsys, value):
    project.stack("production", ungated(with_(config("production"), "mxinfra:kubernetes/backups", {"cpu": value})))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "mxinfra:kubernetes.backups.cpu" in err and "Traceback" not in err, err


# --- archives in object storage: backups.s3 / backups.azure ------------------------------------------------

BACKUP_KEY_ID, BACKUP_SECRET = "KNOWNBACKUPKEYID0077", "Known-Backup-Secret-4410"
RCLONE_PINNED = "registry.example.com/rclone:1.76.0@sha256:" + "cd" * 32
S3_BACKUPS = {"bucket": "orders-backups", "endpoint": "https://backups.example.com:9000", "accessKeyId": BACKUP_KEY_ID, "secretAccessKey": BACKUP_SECRET}


def _pod(docs: list[dict], name: str) -> dict:
    return _one(docs, "CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.usefixtures("engine_secrets")
def test_archives_in_s3_replace_the_claim_by_a_scratch_volume_and_an_rclone_step(project, capsys, tmp_path):
    cfg = with_(config("production"), "mxinfra:kubernetes/backups", {"s3": S3_BACKUPS, "transferImage": RCLONE_PINNED, "networks": ["10.9.0.0/16"]})
    docs, out = _render(project, capsys, tmp_path, "production", cfg)
    written = (tmp_path / "out" / "kubernetes" / "production.yaml").read_text()
    for text in (out, written):
        assert BACKUP_KEY_ID not in text and BACKUP_SECRET not in text
    assert "upload runs" not in out  # transferImage is pinned
    for d in docs:
        if d["kind"] in ("CronJob", "NetworkPolicy", "Secret"):
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert _one(docs, "ResourceQuota", "orders-production-quota")["spec"]["hard"]["persistentvolumeclaims"] == "0"
    secrets = {d["metadata"]["annotations"]["mxinfra.io/secret-keys"]: d for d in docs if d["kind"] == "Secret" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"}
    assert sorted(secrets) == ["RCLONE_CONFIG_FILES_ACCESS_KEY_ID,RCLONE_CONFIG_FILES_SECRET_ACCESS_KEY", "RCLONE_CONFIG_STORE_ACCESS_KEY_ID,RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"]
    secret = secrets["RCLONE_CONFIG_STORE_ACCESS_KEY_ID,RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"]

    backup, restore = _pod(docs, "orders-production-backup"), _pod(docs, "orders-production-restore")
    for pod in (backup, restore):
        assert restricted_violations(pod) == []
        assert {v["name"]: v for v in pod["volumes"]}["backups"] == {"name": "backups", "emptyDir": {"sizeLimit": "20Gi"}}
    # the backup: the files copied from their bucket, postgres writes the archive (init containers, one by
    # one), rclone uploads it
    (pull, dump), (upload,) = backup["initContainers"], backup["containers"]
    assert [c["name"] for c in (pull, dump, upload)] == ["pull-files", "backup", "upload"]
    assert (dump["image"], upload["image"], pull["image"]) == ("postgres:17.7", RCLONE_PINNED, RCLONE_PINNED)
    assert upload["command"] == ["/bin/sh", "/scripts/store.sh", "upload"]
    # restore: rclone fetches first, postgres restores, the files go back to their bucket
    (fetch, back), (push,) = restore["initContainers"], restore["containers"]
    assert [c["name"] for c in (fetch, back, push)] == ["fetch", "restore", "push-files"]
    # each rclone step holds one store's keys: the archives' or the files'
    assert not [k for k in _env(upload) if k.startswith("RCLONE_CONFIG_FILES")] and not [k for k in _env(pull) if k.startswith("RCLONE_CONFIG_STORE")]
    for postgres in (dump, back):
        env = _env(postgres)
        assert env["BACKUP_DIR"] == "/work" and "DATABASE_URL" in env
        assert not [k for k in env if k.startswith("RCLONE")]  # the database's container never holds the store's keys
    for rclone in (upload, fetch):
        env = _env(rclone)
        assert "DATABASE_URL" not in env and "PGSSLMODE" not in env  # nor the store's the database's
        assert env["BACKUP_REMOTE"] == "store:orders-backups/orders/production" and env["BACKUP_DIR"] == "/work"
        assert env["RCLONE_CONFIG"] == "/dev/null" and env["RCLONE_CONFIG_STORE_NO_CHECK_BUCKET"] == "true"
        assert env["RCLONE_CONFIG_STORE_SERVER_SIDE_ENCRYPTION"] == "AES256" and env["RCLONE_CONFIG_STORE_ENDPOINT"] == S3_BACKUPS["endpoint"]
        for key in ("RCLONE_CONFIG_STORE_ACCESS_KEY_ID", "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"):
            assert env[key]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
        assert {m["name"]: m["mountPath"] for m in rclone["volumeMounts"]} == {"scripts": "/scripts", "backups": "/work"}
    assert _env(upload)["KEEP_DAILY_DAYS"] == _env(dump)["KEEP_DAILY_DAYS"] and "BACKUP_ID" in _env(fetch) and "BACKUP_ID" in _env(back)
    # only the backup and restore pods may reach the store, on its port, in its networks
    policy = _one(docs, "NetworkPolicy", "orders-production-backup-store")
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/instance": "orders-production"},
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["backup", "restore"]}],
        },
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 9000, "protocol": "TCP"}]}],
    }
    assert backup["initContainers"][0]["env"] and _one(docs, "CronJob", "orders-production-backup")["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"


@pytest.mark.usefixtures("engine_secrets")
def test_archives_in_azure_with_a_sas_token_and_the_default_image_warned_on_production(project, capsys, tmp_path):
    azure = {"accountName": "ordersbackups", "container": "archives", "sasToken": "sv=2024&sig=Known-Sas-Sig-1"}
    docs, out = _render(project, capsys, tmp_path, "production", with_(config("production"), "mxinfra:kubernetes/backups", {"azure": azure, "prefix": "prod"}))
    assert "Known-Sas-Sig-1" not in (tmp_path / "out" / "kubernetes" / "production.yaml").read_text() and "Known-Sas-Sig-1" not in out
    warning = "the backup Jobs' object-storage steps run rclone/rclone:1.76.0 by tag, with the stores' credentials: pin it by digest with mxinfra:kubernetes.backups.transferImage"
    assert warning in " ".join(out.split())
    assert "the backup store, from the backup and restore pods (tcp/443; set mxinfra:kubernetes.backups.networks)" in " ".join(out.split())
    env = _env(_step(docs, "orders-production-backup", "upload"))
    assert env["BACKUP_REMOTE"] == "store:archives/prod" and env["RCLONE_CONFIG_STORE_TYPE"] == "azureblob"
    assert "RCLONE_CONFIG_STORE_ACCOUNT" not in env and set(env["RCLONE_CONFIG_STORE_SAS_URL"]["secretKeyRef"]) == {"name", "key"}
    assert _one(docs, "NetworkPolicy", "orders-production-backup-store")["spec"]["egress"] == [{"ports": [{"port": 443, "protocol": "TCP"}]}]


@pytest.mark.usefixtures("engine_secrets")
def test_archives_in_object_storage_problems_in_one_report(project, capsys):
    same_as_files = {"bucket": "orders-files", "endpoint": "https://s3.example.com"}
    cfg = with_(
        config("production"),
        "mxinfra:kubernetes/backups",
        {"s3": same_as_files, "azure": {"accountName": "ordersbackups", "container": "archives", "endpoint": "http://blob.example.com"}, "storageClass": "fast", "transferImage": "rclone/rclone:1.76.0"},
    )
    project.stack("production", ungated(cfg))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "Traceback" not in err, err
    for path, message in [
        ("mxinfra:kubernetes.backups", "set at most one of s3 and azure"),
        ("mxinfra:kubernetes.backups.azure", "needs accountKey or sasToken"),
        ("mxinfra:kubernetes.backups.azure.endpoint", "'http://blob.example.com' is not an https URL"),
        ("mxinfra:kubernetes.backups.storageClass", "the archives are in object storage: there is no backups claim to class"),
        ("mxinfra:kubernetes.backups.transferImage", "'rclone/rclone:1.76.0' is not pinned by digest, and production 'production''s data passes through it"),
        ("mxinfra:kubernetes.backups", "production 'production' keeps its backups in its own file store, whose credentials the runtime holds"),
        ("mxinfra:kubernetes.backups.s3", "production 'production' would reach its backups with the pod's identity, which its runtime shares"),
    ]:
        assert f"{path}: {message}" in err, (path, err)
    assert " 7 problem(s)" in err, err


@pytest.mark.usefixtures("engine_secrets")
def test_object_storage_keys_without_a_store_are_refused(project, capsys):
    # local files: nothing in object storage, so no rclone step either
    cfg = with_(config("acceptance", instances=1), "mxinfra:kubernetes/storage", {"local": {}})
    cfg = with_(cfg, "mxinfra:kubernetes/backups", {"prefix": "x", "transferImage": RCLONE_PINNED})
    project.stack("acceptance", cfg)
    rc = main(["plan", "-s", "acceptance", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "mxinfra:kubernetes.backups.prefix: applies to archives in s3 or azure, and neither is set" in err, err
    assert "mxinfra:kubernetes.backups.transferImage: applies to archives in s3 or azure" in err and " 2 problem(s)" in err, err


def _with_acceptance(cfg: dict) -> dict:
    """The stack with a second environment, acceptance, beside production."""
    from k8s_stacks import ADMIN_PASSWORD

    cfg = ungated(cfg)
    cfg["mxinfra:environments"]["acceptance"] = {"instances": 1, "memory": 2048, "adminPassword": ADMIN_PASSWORD}
    return cfg


def _problems(project, capsys, cfg: dict) -> str:
    project.stack("production", cfg)
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "Traceback" not in err, err
    return err


@pytest.mark.usefixtures("engine_secrets")
def test_environments_never_share_a_place_for_their_archives_nor_production_its_keys(project, capsys):
    # the block's store for both, one prefix: each one's retention would delete the other's archives; and
    # acceptance's backup Jobs (which its backups holders may start) would hold production's keys
    err = _problems(project, capsys, _with_acceptance(with_(config("production"), "mxinfra:kubernetes/backups", {"s3": S3_BACKUPS, "prefix": "orders"})))
    assert "mxinfra:kubernetes.backups.prefix: would be one prefix for 2 environments" in err, err
    assert "mxinfra:kubernetes.backups: production 'production' and 'acceptance' hold the same keys to the backup store" in err, err
    # the same bucket, each environment its own override but one prefix
    cfg = _with_acceptance(config("production"))
    for env, key in (("production", "KEYPRODUCTION00000001"), ("acceptance", "KEYACCEPTANCE00000002")):
        cfg = with_(cfg, f"mxinfra:kubernetes/environments.{env}", {"backups": {"s3": {**S3_BACKUPS, "accessKeyId": key}, "prefix": "shared"}})
    err = _problems(project, capsys, cfg)
    assert "mxinfra:kubernetes.environments.acceptance.backups.prefix: environments 'production' and 'acceptance' would keep their archives in one place (orders-backups/shared)" in err, err
    assert " 1 problem(s)" in err, err
    # their own prefixes (or the default <app>/<environment>) and keys: fine
    cfg = with_(cfg, "mxinfra:kubernetes/environments.acceptance.backups.prefix", None)
    project.stack("production", cfg)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 0, capsys.readouterr().err


@pytest.mark.usefixtures("engine_secrets")
def test_store_inputs_that_would_break_at_run_time_are_refused(project, capsys):
    backups = {"azure": {"accountName": "ordersbackups", "container": "archives", "sasToken": "sv=2024&sig=abc\n"}}
    cfg = with_(config("production"), "mxinfra:kubernetes/backups", backups)
    cfg = with_(cfg, "mxinfra:kubernetes/storage.s3.keySuffix", "[prod]")
    err = _problems(project, capsys, cfg)
    assert "mxinfra:kubernetes.backups.azure.sasToken: is not a SAS token" in err, err
    assert "mxinfra:kubernetes.storage.s3.keySuffix: '[prod]' holds characters other than letters, digits and . _ -" in err, err
    # a segment of dots: rclone would store it under another name, and list, retention and fetch would never see it
    err = _problems(project, capsys, with_(config("production"), "mxinfra:kubernetes/backups", {**backups, "prefix": "orders/../production"}))
    assert "mxinfra:kubernetes.backups.prefix" in err, err
    for bad in ({"container": "My_Archives"}, {"accountName": "Orders_Backups"}):
        err = _problems(project, capsys, with_(config("production"), "mxinfra:kubernetes/backups", {"azure": {**backups["azure"], "sasToken": "sv=1&sig=a", **bad}}))
        assert f"mxinfra:kubernetes.backups.azure.{next(iter(bad))}" in err, err


@pytest.mark.usefixtures("engine_secrets")
def test_the_file_stores_own_bucket_is_refused_however_its_endpoint_is_spelled_and_under_its_keys(project, capsys):
    from k8s_stacks import S3_KEY_ID

    spelled = {**S3_BACKUPS, "bucket": "orders-files", "endpoint": "https://S3.Example.com:443"}
    err = _problems(project, capsys, with_(config("production"), "mxinfra:kubernetes/backups", {"s3": spelled}))
    assert "production 'production' keeps its backups in its own file store" in err, err
    err = _problems(project, capsys, with_(config("production"), "mxinfra:kubernetes/backups", {"s3": {**S3_BACKUPS, "accessKeyId": S3_KEY_ID}}))
    assert "production 'production' keeps its backups in its own file store" in err, err


def test_a_pod_fetching_its_archive_may_stay_pending_for_the_jobs_whole_timeout():
    from mxinfra_kubernetes.backup_actions import _pending_limit

    assert _pending_limit({}, 6 * 3600.0) == 900.0  # not scheduled, or pulling: 15 minutes
    assert _pending_limit({"initContainerStatuses": [{"name": "fetch", "state": {"waiting": {"reason": "PodInitializing"}}}]}, 6 * 3600.0) == 900.0
    assert _pending_limit({"initContainerStatuses": [{"name": "fetch", "state": {"running": {}}}]}, 6 * 3600.0) == 6 * 3600.0
    assert _pending_limit({"initContainerStatuses": [{"name": "pull-files", "state": {"terminated": {"exitCode": 0}}}]}, 600.0) == 600.0


def test_the_readmes_policy_for_the_backup_store_is_valid_and_prefix_bound():
    """The IAM policy the README gives for archives in S3, read from the README: parliament finds nothing in
    it, every object action is bound to the prefix, and listing to the prefix's keys."""
    import re

    from parliament import analyze_policy_string

    readme = (Path(__file__).resolve().parents[3] / "targets" / "kubernetes" / "README.md").read_text()
    (block,) = re.findall(r"The identity needs no more than:\n\n```json\n(.*?)```", readme, re.S)
    statements = json.loads(block.replace("<bucket>", "orders-backups").replace("<prefix>", "orders/production"))
    doc = {"Version": "2012-10-17", "Statement": statements}
    assert [(f.issue, f.detail) for f in analyze_policy_string(json.dumps(doc)).findings] == []
    listing, objects = statements
    assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == "arn:aws:s3:::orders-backups"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["orders/production/", "orders/production/*"]}}
    # upload (multipart included), fetch, retention, a failed multipart upload's clean-up: nothing else
    assert sorted(objects["Action"]) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == "arn:aws:s3:::orders-backups/orders/production/*"
