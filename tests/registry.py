"""A real CNCF distribution registry on loopback (TLS from a CA made here, htpasswd basic auth), and
images written for it without Docker: OCI layers, config and manifest pushed over the registry's HTTP API.

The registry binary comes from `engine/registry.sh build` (cached outside the clone); tests that need it
skip, saying so, only when it has not been built. The pushing code here is deliberately independent of
mxinfra.registry, so that a bug in the client cannot hide itself in the tests that check it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import os
import socket
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "deployer", "s3cret-registry-password"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def registry_binary() -> Path | None:
    """The built registry: $MXINFRA_REGISTRY_BIN, else the complete entry engine/registry.sh caches."""
    env = os.environ.get("MXINFRA_REGISTRY_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    out = subprocess.run([str(ROOT / "engine" / "registry.sh"), "path"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Block until 127.0.0.1:port accepts connections; fail with the registry's log if it died or never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"registry did not listen on 127.0.0.1:{port} within {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")


# ---- TLS and auth ------------------------------------------------------------------------------------


def make_tls(dest: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1 and localhost, written under `dest`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mxinfra test registry CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    dest.mkdir(parents=True, exist_ok=True)
    paths = dest / "ca.pem", dest / "server.pem", dest / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@dataclass
class Registry:
    """A running registry: its host:port, CA bundle, storage root and credentials."""

    host: str
    ca: Path
    storage: Path
    user: str = USER
    password: str = PASSWORD

    def session(self) -> requests.Session:
        """An authenticated HTTPS session that trusts the registry's CA."""
        s = requests.Session()
        s.verify = str(self.ca)
        s.auth = (self.user, self.password)
        s.trust_env = False
        return s

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem storage driver keeps a blob's bytes (to tamper with them)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"

    def docker_config(self, dest: Path, password: str | None = None) -> Path:
        """A Docker config.json holding this registry's credentials (the wrong ones if `password` is given)."""
        auth = base64.b64encode(f"{self.user}:{password if password is not None else self.password}".encode()).decode()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return dest


def start_registry(binary: Path, work: Path) -> Iterator[Registry]:
    """Run the registry on a free loopback port until the generator is closed."""
    import bcrypt

    ca, cert, key = make_tls(work / "tls")
    htpasswd = work / "htpasswd"
    # cost 5: the registry checks the hash on every request; the default 12 would cost ~0.25 s each
    htpasswd.write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)) + b"\n")
    storage = work / "storage"
    port = free_port()
    config = work / "config.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(storage)}, "maintenance": {"uploadpurging": {"enabled": False}}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": "mxinfra-test-secret", "tls": {"certificate": str(cert), "key": str(key)}},
                "auth": {"htpasswd": {"realm": "mxinfra-test", "path": str(htpasswd)}},
            }
        )
    )
    log = work / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield Registry(f"127.0.0.1:{port}", ca, storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- images ------------------------------------------------------------------------------------------


def logged_in(reg: Registry, home: Path) -> dict[str, str]:
    """The environment of a user who ran `docker login` to `reg` (a Docker config under `home`) and trusts
    its CA where container tools keep a host's (containers-certs.d), with a layer cache of their own.
    Not REQUESTS_CA_BUNDLE: pip, run by the same processes, would use it for PyPI too."""
    reg.docker_config(home / "docker" / "config.json")
    certs = home / "config" / "containers" / "certs.d" / reg.host
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_bytes(reg.ca.read_bytes())
    return {"DOCKER_CONFIG": str(home / "docker"), "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}


def sha(data: bytes) -> str:
    """`sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def layer_tar(files: Iterable[tuple[str, bytes]], dest: Path | None = None) -> tuple[bytes | Path, str, str]:
    """A gzip layer of `files` (path, content): (bytes, or `dest` when given, digest, diff_id)."""
    raw_hash = hashlib.sha256()

    class _Tap(io.RawIOBase):
        """Hashes the uncompressed tar (the diff_id) on its way into gzip."""

        def __init__(self, inner: gzip.GzipFile) -> None:
            self.inner = inner

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            raw_hash.update(b)
            return self.inner.write(b)

    sink: io.BytesIO | object = io.BytesIO() if dest is None else open(dest, "wb")
    with gzip.GzipFile(fileobj=sink, mode="wb", mtime=0, compresslevel=1) as gz:  # type: ignore[arg-type]
        with tarfile.open(fileobj=_Tap(gz), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            seen: set[str] = set()
            for path, content in files:
                for d in _dirs(path):
                    if d not in seen:
                        seen.add(d)
                        info = tarfile.TarInfo(d)
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    if dest is None:
        data = sink.getvalue()  # type: ignore[union-attr]
        return data, sha(data), "sha256:" + raw_hash.hexdigest()
    sink.close()  # type: ignore[union-attr]
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return dest, "sha256:" + h.hexdigest(), "sha256:" + raw_hash.hexdigest()


def mda_files(mda: Path, prefix: str = "opt/mendix/build/") -> list[tuple[str, bytes]]:
    """An MDA's members as the Docker buildpack lays them out."""
    with zipfile.ZipFile(mda) as z:
        return [(prefix + i.filename, z.read(i)) for i in z.infolist() if not i.is_dir()]


BASE_FILES = [("etc/os-release", b'NAME="test base"\n'), ("opt/mendix/runtime/README", b"a runtime would be here\n")]


def push_blob(reg: Registry, repo: str, body: bytes | Path, digest: str) -> None:
    """Upload one blob (POST, then PUT with the digest)."""
    with reg.session() as s:
        r = s.post(f"https://{reg.host}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        loc = loc if loc.startswith("https://") else f"https://{reg.host}{loc}"
        data = body.open("rb") if isinstance(body, Path) else body
        try:
            r = s.put(loc + ("&" if "?" in loc else "?") + f"digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"})
        finally:
            if isinstance(body, Path):
                data.close()  # type: ignore[union-attr]
        assert r.status_code == 201, r.text


def push_manifest(reg: Registry, repo: str, doc: dict, media_type: str, tag: str | None = None) -> str:
    """PUT a manifest (by its digest, or a tag); its digest."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    digest = sha(body)
    with reg.session() as s:
        r = s.put(f"https://{reg.host}/v2/{repo}/manifests/{tag or digest}", data=body, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return digest


def push_image(
    reg: Registry,
    repo: str,
    layers: list[tuple[bytes | Path, str, str]],
    *,
    labels: dict[str, str] | None = None,
    arch: str = "amd64",
    tag: str | None = None,
) -> str:
    """Push layers (oldest first), a config and an OCI manifest (under `tag`, if given); the manifest's digest."""
    for body, digest, _ in layers:
        push_blob(reg, repo, body, digest)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
        }
    ).encode()
    push_blob(reg, repo, config, sha(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": d, "size": (b.stat().st_size if isinstance(b, Path) else len(b))}
            for b, d, _ in layers
        ],
    }
    return push_manifest(reg, repo, manifest, OCI_MANIFEST, tag=tag)


def push_index(reg: Registry, repo: str, platforms: list[tuple[str, str]]) -> str:
    """An OCI index of (architecture, manifest digest) entries for linux; its digest."""
    entries = []
    with reg.session() as s:
        for arch, digest in platforms:
            r = s.get(f"https://{reg.host}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200, r.text
            entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(r.content), "platform": {"os": "linux", "architecture": arch}})
    return push_manifest(reg, repo, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The distribution registry on loopback (TLS, basic auth); skipped only when it is not built."""
    binary = registry_binary()
    if binary is None:
        where = f" (MXINFRA_REGISTRY_BIN={os.environ['MXINFRA_REGISTRY_BIN']} is not a file)" if os.environ.get("MXINFRA_REGISTRY_BIN") else ""
        message = f"the distribution registry is not built{where}: run `engine/registry.sh build` (./dev test builds it; about 4 minutes cold)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI ran ./dev test, which builds it: its absence is a failure there
        pytest.skip(message)
    yield from start_registry(binary, tmp_path_factory.mktemp("registry"))


def app_image(reg: Registry, repo: str, mda: Path) -> str:
    """A base layer, the app layer as the Docker buildpack writes it from `mda`, and a newer layer without the app."""
    layers = [layer_tar(BASE_FILES), layer_tar(mda_files(mda)), layer_tar([("etc/extra.conf", b"no app here\n")])]
    return push_image(reg, repo, layers)


def example_and_next(reg: Registry, tmp_path_factory: pytest.TempPathFactory, repo: str) -> dict[str, str]:
    """`repo`'s images of the example package and of its next release (model 1.4.3.1301), by digest."""
    from scaffold import EXAMPLE_MDA, example_release

    nxt = example_release(tmp_path_factory.mktemp("next") / "orders-1.4.3.mda", "1.4.3.1301")
    return {"example": f"{reg.host}/{repo}@{app_image(reg, repo, EXAMPLE_MDA)}", "next": f"{reg.host}/{repo}@{app_image(reg, repo, nxt)}"}


def docker_user(reg: Registry, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with the registry's credentials in their Docker config, its CA trusted, an empty layer cache:
    the Docker config's path."""
    for key, value in logged_in(reg, home).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    return home / "docker" / "config.json"
