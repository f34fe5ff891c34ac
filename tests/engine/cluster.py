"""A Kubernetes control plane on loopback for the engine suite: etcd, kube-apiserver and
kube-controller-manager from the engine toolchain, with a CA, a serving certificate, a service-account
key pair and a static admin token made here (openssl), and a kubeconfig of its own.

There is no node, scheduler, kubelet or ingress controller. Pods are still created by the controller
manager and admitted (or refused) by Pod Security admission, which is what the suite asks of them. But
the Kubernetes provider waits, as it should, until a StatefulSet's pods are ready and an Ingress has an
address; `StatusFaker` stands in for the kubelet and the ingress controller there: it writes only
`status` (a pod Running and Ready with a loopback IP, an Ingress with a loopback address), never a spec."""

from __future__ import annotations

import json
import secrets
import threading
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


STORAGE_CLASS = "engine-local"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


# Who may talk to the API server (static tokens): the platform identity that creates environments
# (cluster-admin through system:masters), members of the groups the example stacks grant `deploy`
# and `monitor` (mxinfra:access), as the README says each release step is performed, and the release
# pipeline's identity (production's mxinfra:kubernetes.releaseIdentities: group orders-release).
IDENTITIES = {
    "admin": ("admin", "system:masters"),
    "release-manager": ("rita", "release-managers"),
    "developer": ("dave", "orders-devs"),
    "release": ("release-pipeline", "orders-release"),
}


class LocalCluster:
    def __init__(self, bin_dir: Path, work: Path) -> None:
        self.bin = bin_dir
        self.dir = work
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen[bytes], Any]] = []
        self.tokens = {name: secrets.token_hex(24) for name in IDENTITIES}
        self.token = self.tokens["admin"]
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.dir / "kubeconfig"

    # -- start / stop ------------------------------------------------------------------------------
    def _certs(self) -> None:
        d = self.dir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mxinfra-engine-ca",
                 "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
                 "-keyout", str(d / "apiserver.key"), "-out", str(d / "apiserver.csr"))
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n")
        _openssl("x509", "-req", "-in", str(d / "apiserver.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "apiserver.crt"))
        _openssl("genrsa", "-out", str(d / "sa.key"), "2048")
        _openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))
        (d / "tokens.csv").write_text("".join(f'{self.tokens[k]},{user},{user},"{group}"\n' for k, (user, group) in IDENTITIES.items()))

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop())
        proc = subprocess.Popen([str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, proc, log))

    def log_tail(self, name: str, lines: int = 40) -> str:
        f = self.dir / f"{name}.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else ""

    def start(self, timeout: float = 180) -> LocalCluster:
        self._certs()
        d = self.dir
        client, peer = free_port(), free_port()
        self._spawn("etcd", [
            "--name", "engine", "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"engine=http://127.0.0.1:{peer}", "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
        ])
        self._spawn("kube-apiserver", [
            "--etcd-servers", f"http://127.0.0.1:{client}", "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.api_port), "--cert-dir", str(d / "certs"),
            "--tls-cert-file", str(d / "apiserver.crt"), "--tls-private-key-file", str(d / "apiserver.key"),
            "--client-ca-file", str(d / "ca.crt"), "--token-auth-file", str(d / "tokens.csv"),
            "--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(d / "sa.pub"), "--service-account-signing-key-file", str(d / "sa.key"),
            "--service-cluster-ip-range", "10.0.0.0/24",
        ])
        self.kubeconfig.write_text(self.kubeconfig_text())
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.request("GET", "/readyz", raw=True) == b"ok":
                    break
            except (OSError, urllib.error.URLError):
                pass
            for name, proc, _ in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready in {timeout} s:\n{self.log_tail('kube-apiserver')}")
            time.sleep(0.5)
        self._spawn("kube-controller-manager", [
            "--kubeconfig", str(self.kubeconfig), "--authentication-kubeconfig", str(self.kubeconfig),
            "--authorization-kubeconfig", str(self.kubeconfig), "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()), "--leader-elect=false", "--controllers", "*",
            "--service-account-private-key-file", str(d / "sa.key"), "--root-ca-file", str(d / "ca.crt"),
            # each controller as its own service account, as kubeadm runs them: an admission policy that
            # refuses a controller's step (the garbage collector's) shows here, not only on a real cluster
            "--use-service-account-credentials=true",
        ])
        self.faker = StatusFaker(self)
        self.faker.start()
        return self

    def stop(self) -> None:
        if getattr(self, "faker", None) is not None:
            self.faker.stop()
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, log in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self.procs.clear()

    # -- clients -----------------------------------------------------------------------------------
    def provide_storage(self, volumes: int = 16) -> None:
        """What a cluster operator provides: a default StorageClass and volumes for it (static provisioning:
        the controller manager's binder binds a claim to a free volume; no kubelet is needed for that).
        Every plain environment claims one (its backups), the test stack more (its database and files)."""
        self.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate", "reclaimPolicy": "Retain",
        })
        for i in range(volumes):
            self.request("POST", "/api/v1/persistentvolumes", {
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"engine-pv-{i}"},
                "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                         "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/engine-pv-{i}"}},
            })

    def kubeconfig_text(self, identity: str = "admin") -> str:
        ca = (self.dir / "ca.crt").read_text()
        import base64

        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "engine",
            "clusters": [{"name": "engine", "cluster": {"server": self.server, "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
            "users": [{"name": "admin", "user": {"token": self.tokens[identity]}}],
            "contexts": [{"name": "engine", "context": {"cluster": "engine", "user": "admin"}}],
        })

    def request(self, method: str, path: str, body: Any = None, *, raw: bool = False, content_type: str = "application/json") -> Any:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            # The API server's Status message says what it refused and why.
            raise urllib.error.HTTPError(e.url, e.code, f"{e.reason}: {e.read().decode(errors='replace')[:4000]}", e.headers, None) from None
        return payload if raw else json.loads(payload)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
            return True
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, timeout=120)


class StatusFaker(threading.Thread):
    """The kubelet's and the ingress controller's status writes, for a cluster without them (see above).
    Bounded: it polls twice a second until stopped."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.halt = threading.Event()
        self.ready_pods: set[str] = set()
        self.errors: list[str] = []

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        n = 0
        while not self.halt.wait(0.5):
            try:
                self._pods()
                self._ingresses()
            except Exception as e:  # noqa: BLE001 (kept for the tests to report; the API server may be stopping)
                self.errors.append(repr(e))
            n += 1

    def _patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.cluster.request("PATCH", path + "/status", {"status": status}, content_type="application/merge-patch+json")

    def _pods(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for pod in self.cluster.get("/api/v1/pods")["items"]:
            md = pod["metadata"]
            key = f"{md['namespace']}/{md['name']}/{md['uid']}"
            if key in self.ready_pods or md.get("deletionTimestamp"):
                continue
            ip = f"127.0.0.{len(self.ready_pods) % 250 + 2}"
            containers = [
                {"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "started": True, "restartCount": 0,
                 "state": {"running": {"startedAt": now}}}
                for c in pod["spec"]["containers"]
            ]
            conditions = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
            self._patch_status(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}", {
                "phase": "Running", "conditions": conditions, "containerStatuses": containers,
                "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": now,
            })
            self.ready_pods.add(key)

    def _ingresses(self) -> None:
        for ing in self.cluster.get("/apis/networking.k8s.io/v1/ingresses")["items"]:
            if (ing.get("status") or {}).get("loadBalancer", {}).get("ingress"):
                continue
            md = ing["metadata"]
            self._patch_status(f"/apis/networking.k8s.io/v1/namespaces/{md['namespace']}/ingresses/{md['name']}",
                               {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}})
