"""A whole release as a user walks it (issue 18), under the real engine:

- a project created outside this repository, its own venv installed from the built wheels of the core and
  the Kubernetes target (pip's resolver, no lock, no test extras);
- its own app (`shop`) with test (in-cluster PostgreSQL, generated passwords), acceptance and production;
- release 1: packages pushed to the repository, `pulumi up` of test, acceptance, then `mxinfra promote`
  and production, each first creation by the platform identity;
- release 2 (a new package and a new image digest): test and acceptance deployed by a developer (group
  `orders-devs`, which holds `deploy` there), `mxinfra promote`, then production deployed by the release
  identity (group `orders-release`, production's `mxinfra:kubernetes.releaseIdentities`): no hand edit
  between the steps;
- day 2 on production as the release identity: a constant change, a scale; `mxinfra drift` as a release
  manager;
- `pulumi preview --expect-no-changes` after every `up`; `activity verify -s production` and `trace`.

Then issue 19 (F1): the production deploy group's `kubectl set image` is refused by admission; a change
the policy admits (the release identity's credential used by hand, a scale, the deploy group on
acceptance) is named by `mxinfra drift` and stops the next `pulumi up` in the same words.

Every step runs as the identity the README says performs it (a static token of that user and group on
the API server; the user's ambient KUBECONFIG, no kubeconfig in the stack config), never as the platform
identity unless it is the first creation.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cluster import LocalCluster
from engine_support import ROOT, Oci, Pulumi
from scaffold import example_release
from wheels_support import build_wheels, user_venv

import stack_secrets  # noqa: E402  (examples/orders, put on sys.path by engine_support)

APP = "shop"
STACKS = ("test", "acceptance", "production")


class Release:
    """The user's project, their Pulumi CLI and the identities' kubeconfigs."""

    def __init__(self, root: Path, engine_bin: Path, cluster: LocalCluster, oci: Oci) -> None:
        self.root = root
        self.cluster = cluster
        self.oci = oci
        self.images: dict[str, str] = {}  # package version -> the image `mxinfra image build` pushed for it
        self.dir = root / "shop"
        self.dir.mkdir()
        wheels = build_wheels(root / "build", ("kubernetes",))
        # The venv the project's Pulumi.yaml names: only the two wheels and what they declare.
        bin_dir = user_venv(self.dir / ".venv", [wheels["mxinfra"], wheels["mxinfra_kubernetes"]])
        (self.dir / "Pulumi.yaml").write_text(
            "name: shop\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: .venv\n"
        )
        (self.dir / "__main__.py").write_text("from mxinfra.program import run\n\nrun()\n")
        shutil.copy(ROOT / "examples" / "orders" / "orders-1.4.2.mda", self.dir / "shop-1.4.2.mda")
        example_release(self.dir / "shop-1.4.3.mda", "1.4.3.1301")
        for stack in STACKS:
            text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
            text = text.replace("    name: orders\n", f"    name: {APP}\n").replace("package: examples/orders/orders-1.4.2.mda", "package: 1.4.2")
            (self.dir / f"Pulumi.{stack}.yaml").write_text(oci.images_of(text))
        (root / "state").mkdir()
        self.pulumi = Pulumi(engine_bin, self.dir, root / "state", root / "pulumi-home", python=bin_dir / "python")
        self.kubeconfigs = {}
        for identity in ("admin", "developer", "release-manager", "release"):
            path = root / f"kubeconfig-{identity}"
            path.write_text(cluster.kubeconfig_text(identity))
            self.kubeconfigs[identity] = path

    def as_(self, identity: str) -> None:
        self.pulumi.as_identity(self.kubeconfigs[identity])

    def up(self, stack: str) -> str:
        out = self.pulumi.up(stack).stdout
        # Nothing left to do after an up: the program is deterministic and the state matches the cluster.
        self.pulumi.run("preview", "--expect-no-changes", "--diff", stack=stack)
        return out

    def edit(self, stack: str, old: str, new: str) -> None:
        f = self.dir / f"Pulumi.{stack}.yaml"
        text = f.read_text()
        assert old in text, (stack, old)
        f.write_text(text.replace(old, new))

    def activity(self, env: str) -> list[dict[str, Any]]:
        return json.loads(self.pulumi.mxinfra("activity", "-e", env, "--json").stdout)

    def kubectl(self, identity: str, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl as `identity` (its own kubeconfig: a static token of that user and group)."""
        argv = [str(self.cluster.bin / "kubectl"), "--kubeconfig", str(self.kubeconfigs[identity]), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def drift(self, identity: str, stack: str) -> subprocess.CompletedProcess[str]:
        self.as_(identity)
        return self.pulumi.mxinfra("drift", "-s", stack, check=False)


README = ROOT / "README.md"
MARKER = "<!-- release-path: the engine suite runs this block -->"
# Who each comment of the block names (README: "as the platform identity", "as a developer", ...); the
# first match wins ("the release identity (... a release manager starts it)" is the release identity).
WHO = {"release identity": "release", "platform identity": "admin", "developer": "developer", "release manager": "release-manager"}


ASSIGN = re.compile(r"^(\w+)=\$\((.*)\)$")  # VAR=$(command): the command's output, used later as "$VAR"


def readme_steps(registry: str = "registry.example.com") -> list[tuple[str, list[str], str | None]]:
    """The README's release path: (identity, argv, variable its output is assigned to) per command, in
    order; `registry.example.com` (the README's placeholder for the user's registry) as `registry`."""
    text = README.read_text()
    assert MARKER in text, f"README.md has no block marked {MARKER!r}"
    block = text.split(MARKER, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    steps, who = [], None
    for line in block.splitlines():
        if line.startswith("#"):
            named = [v for k, v in WHO.items() if k in line]
            who = named[0] if named else who
            continue
        line = line.replace("registry.example.com", registry)
        assigned = ASSIGN.match(line)
        if assigned:
            steps.append((who or "admin", shlex.split(assigned[2]), assigned[1]))
            continue
        for command in line.split(" && "):
            steps.append((who or "admin", shlex.split(command), None))
    return steps


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, engine_bin: Path, has_random: bool, oci: Oci, tmp_path_factory: pytest.TempPathFactory) -> Release:
    if not has_random:
        pytest.fail("the engine toolchain has no pulumi-resource-random: the test stack generates its passwords (./dev engine builds it)")
    return Release(tmp_path_factory.mktemp("release"), engine_bin, cluster, oci)


def test_the_readme_release_path_as_each_identity(release: Release) -> None:
    r = release
    steps = readme_steps(r.oci.host)
    # The first command installs the distributions; here they are the wheels built from this checkout.
    assert steps[0][1][:3] == ["python", "-m", "venv"] and steps[1][1][1:] == ["install", "mxinfra", "mxinfra-kubernetes"], steps[:2]
    ran: list[tuple[str, str]] = []
    variables: dict[str, str] = {}
    for who, argv, assign in steps[2:]:
        r.as_(who)
        argv = [variables.get(a[1:], a) if a.startswith("$") else a for a in argv]
        if argv[:2] == ["pulumi", "up"]:
            r.up(argv[argv.index("-s") + 1])
        elif argv[0] == "pulumi":
            r.pulumi.run(*argv[1:])
        elif argv[0] == "mxinfra":
            done = r.pulumi.mxinfra(*argv[1:])
            if assign:
                variables[assign] = done.stdout.strip()
        else:
            raise AssertionError(f"README release path: unknown command {argv}")
        if argv[:3] == ["mxinfra", "image", "build"]:
            r.images[argv[argv.index("--package") + 1].removesuffix(".mda").split("-")[-1]] = variables[assign or ""]
        ran.append((who, " ".join(argv[:3])))
    # Each release's image was built from its package by `mxinfra image build`, and pushed by digest.
    assert sorted(r.images) == ["1.4.2", "1.4.3"] and all(f"{r.oci.host}/shop/app@sha256:" in i for i in r.images.values()), r.images
    # The block still walks the whole release as the right identities (an edit that drops a step fails here).
    assert ("admin", "pulumi up -s") in ran and ("developer", "pulumi up -s") in ran and ("release", "pulumi up -s") in ran
    # production's releases are the release identity's alone; its release managers check what runs
    assert ("release-manager", "pulumi up -s") not in ran and ("release-manager", "mxinfra drift -s") in ran
    assert sum(1 for w, c in ran if c == "mxinfra promote --from") == 2

    # What the cluster runs and what the log says, per environment.
    for env in STACKS:
        deploys = [a for a in r.activity(env) if a["action"] == "deploy"]
        assert [d["package_version"] for d in deploys] == ["1.4.3", "1.4.2"], (env, deploys)
        # each record carries the image `pulumi up` verified against that package, by digest
        assert [d["artifact"] for d in deploys] == [r.images["1.4.3"], r.images["1.4.2"]], (env, deploys)
        assert [d["image"]["digest"] for d in deploys] == [r.images["1.4.3"].split("@")[1], r.images["1.4.2"].split("@")[1]]
        assert all(d["image"]["verified"] is True and d["image"]["members"] > 0 for d in deploys)
    live = r.cluster.get(f"/apis/apps/v1/namespaces/{APP}-production/statefulsets/{APP}-production")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == r.images["1.4.3"]
    assert live["spec"]["replicas"] == 3
    # every change `pulumi up` applied was recorded as an intent first, its outcome right after
    for env in STACKS:
        log = r.activity(env)  # newest first
        for newer, older in zip(log, log[1:]):
            if newer["action"] in ("deploy", "settings", "scale"):
                assert older["action"] == "intent" and older["changes"]["intends"] == newer["action"], (env, older, newer)
                assert (older["package_sha256"], older["artifact"], older.get("instances")) == (newer["package_sha256"], newer["artifact"], newer.get("instances"))
    latest = [a for a in r.activity("production") if a["action"] != "intent"][:2]
    assert latest[0]["action"] == "scale" and latest[0]["changes"]["instances"] == {"from": 2, "to": 3}
    assert latest[1]["action"] == "settings" and set(latest[1]["changes"]["constants"]) == {"Orders.PageSize"}
    assert str(latest[1]["changes"]["constants"]["Orders.PageSize"]["to"]) == "60"
    verified = r.pulumi.mxinfra("activity", "verify", "-s", "production")
    assert "activity log intact" in verified.stdout
    traced = json.loads(r.pulumi.mxinfra("trace", "SHOP-2", "--json").stdout)
    [package] = traced["packages"]
    assert sorted(d["environment"] for d in package["deployments"]) == ["acceptance", "production", "test"]


def test_pulumi_up_refuses_an_image_that_holds_another_package(release: Release) -> None:
    """Issue 20: test ran package 1.4.3 with an image built from 1.4.2 and the log said 1.4.3. Now `pulumi up`
    reads the image from the registry, compares it with the package, and stops before changing anything."""
    r = release
    r.as_("developer")
    records = r.activity("test")
    before = _sts(r, "test")
    r.pulumi.run("config", "set", "--path", "mxinfra:kubernetes.image", r.images["1.4.2"], stack="test")
    try:
        up = r.pulumi.up("test", check=False)
    finally:
        r.pulumi.run("config", "set", "--path", "mxinfra:kubernetes.image", r.images["1.4.3"], stack="test")
    shown = " ".join((up.stdout + up.stderr).split())
    digest = r.images["1.4.2"].split("@")[1]
    assert up.returncode != 0, shown
    assert "mxinfra:kubernetes.image" in shown and f"image {digest} holds model 1.4.2.1234" in shown and "the package is 1.4.3.1301" in shown, shown
    assert "Traceback" not in shown
    assert r.activity("test") == records
    assert _sts(r, "test")["spec"]["template"] == before["spec"]["template"]
    r.pulumi.run("preview", "--expect-no-changes", stack="test")


def test_a_plain_value_beside_secrets_is_refused_by_preview_as_by_plan(release: Release) -> None:
    """Issue 18, item 3: `pulumi config set --path` without --secret beside secret values of the same block
    was refused by `mxinfra plan` and deployed by `pulumi preview`/`up`. Both refuse it now, in the same words."""
    r = release
    r.as_("developer")
    plain_url = "postgres://shop:Plain-Text-Pw-1@db.example.com:5432/shop"
    r.pulumi.run("config", "set", "--path", "mxinfra:kubernetes.database.url", plain_url, stack="acceptance")
    try:
        preview = r.pulumi.run("preview", stack="acceptance", check=False)
        planned = r.pulumi.mxinfra("plan", "-s", "acceptance", check=False)
    finally:
        original = stack_secrets.VALUES["acceptance"]["mxinfra:kubernetes.database.url"]
        r.pulumi.run("config", "set", "--secret", "--path", "mxinfra:kubernetes.database.url", original, stack="acceptance")
    line = "mxinfra:kubernetes.database.url: is stored in plain text (store it encrypted: pulumi config set --secret --path 'mxinfra:kubernetes.database.url' VALUE)"
    assert preview.returncode != 0 and line in preview.stdout + preview.stderr, preview.stdout + preview.stderr
    assert planned.returncode == 2 and line in planned.stderr, planned.stderr
    for out in (preview.stdout, preview.stderr, planned.stdout, planned.stderr):
        assert "Plain-Text-Pw-1" not in out
    assert "Traceback" not in preview.stdout + preview.stderr
    # and with the value encrypted again, nothing is left to do
    r.pulumi.run("preview", "--expect-no-changes", stack="acceptance")


# ---- issue 19, F1: what runs changes only through a recorded release ------------------------------------
EVIL = "registry.example.com/orders/orders:1.4.3-hotfix@sha256:" + "66" * 32


def _sts(r: Release, env: str) -> dict[str, Any]:
    return r.cluster.get(f"/apis/apps/v1/namespaces/{APP}-{env}/statefulsets/{APP}-{env}")


def _refused_by_admission(proc: subprocess.CompletedProcess[str]) -> None:
    # the API server's answer for a ValidatingAdmissionPolicy, not RBAC's "cannot patch"
    assert proc.returncode != 0, proc.stdout
    assert "ValidatingAdmissionPolicy" in proc.stderr and "denied request" in proc.stderr, proc.stderr
    assert "only its release identities (group:orders-release) and cluster administrators may" in proc.stderr, proc.stderr


def test_the_production_deploy_group_cannot_change_what_runs(release: Release) -> None:
    r = release
    ns, sts = f"{APP}-production", f"statefulset/{APP}-production"
    before = _sts(r, "production")
    # RBAC lets a release manager (deploy) patch the StatefulSet and delete ConfigMaps; admission refuses
    # every change of what runs, whatever the route.
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "set", "image", sts, f"mendix={EVIL}"))
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "set", "env", sts, "MX_Orders_ApiUrl=https://evil.example.com"))
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "annotate", "--overwrite", sts, "mxinfra.io/runtime-config-sha256=" + "0" * 64))
    # nor an owner that does not exist (the garbage collector would delete production's StatefulSet: RBAC
    # gives deploy no delete), nor a finalizer (hostile review)
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-0000-0000-0000-000000000000"}
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "patch", sts, "--type=merge", "-p", json.dumps({"metadata": {"ownerReferences": [ghost]}})))
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "patch", sts, "--type=merge", "-p", json.dumps({"metadata": {"finalizers": ["example.com/hold"]}})))
    config = [e["configMapRef"]["name"] for e in before["spec"]["template"]["spec"]["containers"][0]["envFrom"] if "configMapRef" in e][0]
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "delete", "configmap", config))
    # nor the backup Jobs' scripts, which the nightly backup runs with the database's credentials
    scripts = f"{APP}-production-backup-scripts"
    kept = r.cluster.get(f"/api/v1/namespaces/{ns}/configmaps/{scripts}")["data"]
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "patch", "configmap", scripts, "--type=merge", "-p", '{"data": {"backup.sh": "exit 0"}}'))
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "delete", "configmap", scripts))
    assert r.cluster.get(f"/api/v1/namespaces/{ns}/configmaps/{scripts}")["data"] == kept
    # Once a cluster administrator (or a release) deletes one of them, the garbage collector, as its own
    # service account, removes the finalizers that held the deletion: an update that only does that is
    # admitted to anyone RBAC lets patch, and any other change of the object still is not.
    held = f"{config}-held"
    made = r.kubectl("admin", "-n", ns, "create", "configmap", held, "--from-literal=k=v")
    assert made.returncode == 0, made.stderr
    assert r.kubectl("admin", "-n", ns, "patch", "configmap", held, "--type=merge", "-p", '{"metadata": {"finalizers": ["example.com/hold"]}}').returncode == 0
    assert r.kubectl("admin", "-n", ns, "delete", "configmap", held, "--wait=false").returncode == 0
    _refused_by_admission(r.kubectl("release-manager", "-n", ns, "patch", "configmap", held, "--type=merge", "-p", '{"data": {"k": "evil"}}'))
    released = r.kubectl("release-manager", "-n", ns, "patch", "configmap", held, "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    assert released.returncode == 0, released.stderr
    assert not r.cluster.exists(f"/api/v1/namespaces/{ns}/configmaps/{held}")
    after = _sts(r, "production")
    assert after["spec"]["template"] == before["spec"]["template"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert "ownerReferences" not in after["metadata"] and "finalizers" not in after["metadata"]
    assert r.cluster.exists(f"/api/v1/namespaces/{ns}/configmaps/{config}")
    # a restart is still theirs (an incident), and changes nothing the log records
    restarted = r.kubectl("release-manager", "-n", ns, "rollout", "restart", sts)
    assert restarted.returncode == 0, restarted.stderr
    assert r.drift("release-manager", "production").returncode == 0


def test_an_unrecorded_change_is_named_and_stops_the_next_release(release: Release) -> None:
    r = release
    ns, sts = f"{APP}-production", f"statefulset/{APP}-production"
    records = r.activity("production")
    # The release identity's credential used by hand (a leaked pipeline token): admitted, and no record.
    done = r.kubectl("release", "-n", ns, "set", "image", sts, f"mendix={EVIL}")
    assert done.returncode == 0, done.stderr
    drift = r.drift("release-manager", "production")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    named = f"production: StatefulSet {ns}/{APP}-production runs image {EVIL}, but the last record (seq {records[0]['seq']}: scale by"
    said = " ".join(drift.stderr.split())
    assert "unrecorded changes: what runs is not what the activity log's signed records say" in said
    image_2 = r.images["1.4.3"]
    assert named in said and f"names image {image_2}: an unrecorded change" in said, said
    assert f"kubectl -n {ns} set image {sts} mendix={image_2}" in said and "Traceback" not in drift.stderr
    # the next `pulumi up` refuses in the same words before it changes anything
    r.as_("release")
    up = r.pulumi.up("production", check=False)
    shown = " ".join((up.stdout + up.stderr).split())
    assert up.returncode != 0 and named in shown and f"names image {image_2}: an unrecorded change" in shown, shown
    assert r.activity("production") == records
    assert _sts(r, "production")["spec"]["template"]["spec"]["containers"][0]["image"] == EVIL
    # put back what the record names (the message's own command): both agree again, nothing left to do
    done = r.kubectl("release", "-n", ns, "set", "image", sts, f"mendix={image_2}")
    assert done.returncode == 0, done.stderr
    clean = r.drift("release-manager", "production")
    assert clean.returncode == 0, clean.stderr
    assert f"production: StatefulSet {ns}/{APP}-production runs what the last record (seq {records[0]['seq']}" in clean.stdout
    r.as_("release")
    r.pulumi.run("preview", "--expect-no-changes", stack="production")


def test_a_scale_and_an_acceptance_edit_are_named_too(release: Release) -> None:
    r = release
    # production: scaling is the deploy group's (admitted), but not recorded
    ns = f"{APP}-production"
    assert r.kubectl("release-manager", "-n", ns, "scale", f"statefulset/{APP}-production", "--replicas=1").returncode == 0
    drift = r.drift("release-manager", "production")
    said = " ".join(drift.stderr.split())
    assert drift.returncode == 2 and f"runs 1 instance(s), but the last record" in said and "names 3: an unrecorded scale" in said, said
    assert r.kubectl("release-manager", "-n", ns, "scale", f"statefulset/{APP}-production", "--replicas=3").returncode == 0
    assert r.drift("release-manager", "production").returncode == 0
    # acceptance has no admission policy: the deploy group's own edit of the pod's configuration is admitted
    ns, sts = f"{APP}-acceptance", f"statefulset/{APP}-acceptance"
    done = r.kubectl("developer", "-n", ns, "set", "env", sts, "MX_Orders_ApiUrl=https://evil.example.com")
    assert done.returncode == 0, done.stderr
    drift = r.drift("developer", "acceptance")
    said = " ".join(drift.stderr.split())
    assert drift.returncode == 2 and f"acceptance: StatefulSet {ns}/{APP}-acceptance's runtime configuration (containers, env, ConfigMaps) hashes to" in said, said
    assert "changed after the release" in said
    r.as_("developer")
    up = r.pulumi.up("acceptance", check=False)
    assert up.returncode != 0 and "changed after the release" in " ".join((up.stdout + up.stderr).split())
    assert r.kubectl("developer", "-n", ns, "set", "env", sts, "MX_Orders_ApiUrl-").returncode == 0
    assert r.drift("developer", "acceptance").returncode == 0
