"""A small client of the OCI distribution API (pull by digest, push): manifests, blobs, basic and bearer auth.

Built on `requests` (already a dependency) rather than the `oras` SDK: oras-py 0.2.43 retries every
failed request five times with sleeps of 3 to 83 seconds (a registry that is down is reported after
about two minutes), sends `Authorization: Basic None` when it has no credentials, and runs any
`credHelpers` program named in the Docker config while loading credentials, with no timeout and no
message of its own when it fails. Here a request fails at once with an error that says which registry
and why.

Credentials (`mxinfra.registry_auth.credentials_for(registry, docker_config=None)`), the first that has some:
1. the Docker config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json), in Docker's order:
   `credHelpers[<host>]`, else `credsStore` (each run as `docker-credential-<name> get`, with a
   timeout), then `auths[<host>]` (`identitytoken`, `auth`, or `username`/`password`). A helper that
   answers "credentials not found" passes on to `auths` and the plug-ins (Docker would stop there);
   a helper that is missing, fails, hangs or prints anything but the protocol's JSON is an error.
2. the registry plug-ins of the installed targets (entry point group `mxinfra.registry_credentials`:
   mxinfra-aws for ECR, mxinfra-azure for ACR), loaded only when the Docker config has nothing for the host.
`docker_credentials(registry, config)` is step 1's `auths` alone (no helper is run).

A registry that answers with a Basic challenge gets the user name and password; one that answers with a
Bearer challenge gets a token from its realm (HTTPS only), asked with those credentials as basic auth,
or, for an identity token (a helper's user name `<token>`, or `identitytoken` in `auths`), with the
OAuth2 refresh-token grant (POST grant_type=refresh_token), as the Docker CLI does. An identity token is
never sent as basic auth.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from .errors import UserError

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20  # the distribution registry's own limit on a manifest
_CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The user name under which Docker (and its credential helpers) keep an identity token: an OAuth2
# refresh token for the registry's token service, not a password.
IDENTITY_TOKEN_USER = "<token>"
# Docker Hub's hosts, whose credentials Docker keeps under one legacy key.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class RegistryError(UserError):
    """A registry refused, failed or could not be reached (exit 2: the reference, credentials or network are the user's)."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached (connection refused, DNS, TLS, timeout)."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or asked for some and none were found."""


class NotFound(RegistryError):
    """The registry has no such manifest or blob."""


class DigestMismatch(RegistryError):
    """Bytes whose sha256 is not the digest they were asked for (or cached) under."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for basic auth; user name `<token>` makes the password an
    identity (refresh) token. `source` says where they were found, for messages (not compared)."""

    username: str
    password: str
    source: str = field(default="", compare=False)

    def __repr__(self) -> str:  # never print the password
        return f"Credentials({self.username!r}, ***)"

    @property
    def is_identity_token(self) -> bool:
        """Whether the password is an identity token (only good for a bearer token service's refresh grant)."""
        return self.username == IDENTITY_TOKEN_USER


def docker_config_path() -> Path:
    """Where the Docker CLI keeps its config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json)."""
    root = os.environ.get("DOCKER_CONFIG")
    return Path(root) / "config.json" if root else Path.home() / ".docker" / "config.json"


def read_docker_config(path: Path) -> dict[str, Any]:
    """The Docker config at `path` as a dict ({} when there is none); unreadable or not an object is an error."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(f"{path}: cannot be read as the Docker config ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistryAuthError(f"{path}: the Docker config is not a JSON object")
    return doc


def config_host(key: str) -> str:
    """The host of a key of the Docker config: `docker login` writes the host alone, older clients a URL."""
    return re.sub(r"^https?://", "", str(key)).split("/", 1)[0]


def same_registry(key: str, registry: str) -> bool:
    """Whether a Docker config key names `registry` (Docker Hub's hosts are one registry)."""
    host = config_host(key)
    return host == registry or (host in DOCKER_HUB_HOSTS and registry in DOCKER_HUB_HOSTS)


def auths_credentials(doc: dict[str, Any], registry: str, path: Path) -> Credentials | None:
    """The credentials `auths` of a Docker config holds for `registry`: `identitytoken` (as user `<token>`),
    else `auth` (base64 of user:password), else `username`/`password`; None when it holds none."""
    auths = doc.get("auths")
    for key, entry in (auths.items() if isinstance(auths, dict) else ()):
        if not same_registry(key, registry) or not isinstance(entry, dict):
            continue
        where = f"auths of {path}"
        if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
            return Credentials(IDENTITY_TOKEN_USER, entry["identitytoken"], source=where)
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError, TypeError):
                raise RegistryAuthError(f"{path}: auths[{key!r}].auth is not base64 of user:password") from None
            if sep:
                return Credentials(user, password, source=where)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), source=where)
    return None


def docker_credentials(registry: str, config: str | os.PathLike[str] | None = None) -> Credentials | None:
    """The credentials `auths` of the Docker config holds for `registry`, or None; a helper-only entry is an
    error. Runs no credential helper: `mxinfra.registry_auth.credentials_for` is the whole lookup."""
    path = Path(config) if config is not None else docker_config_path()
    doc = read_docker_config(path)
    found = auths_credentials(doc, registry, path)
    if found is not None:
        return found
    helper = (doc.get("credHelpers") or {}).get(registry) if isinstance(doc.get("credHelpers"), dict) else None
    if helper or doc.get("credsStore"):
        raise RegistryAuthError(
            f"{path} names a credential helper ({helper or doc.get('credsStore')}) for {registry}: "
            "helpers are not supported yet by this lookup of `auths` alone; run `docker login` with --password-stdin into a config without one, or pass credentials"
        )
    return None


def sha256_of(data: bytes) -> str:
    """`sha256:<hex>` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    """One registry host over HTTPS: `RegistryClient("host:port", credentials=..., ca_bundle=...)`."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self.timeout = timeout
        self._session = requests.Session()
        # requests' trust store unless told: a private registry's CA comes as a PEM bundle.
        self._session.verify = os.fspath(ca_bundle) if ca_bundle is not None else True
        self._session.trust_env = False  # no proxy or netrc from the environment decides where credentials go
        self._auth_header: str | None = None

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests -----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith("https://") else f"https://{self.registry}/v2/{path}"

    def _send(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> requests.Response:
        if self._auth_header:
            headers = {**headers, "Authorization": self._auth_header}
        try:
            return self._session.request(method, url, headers=headers, timeout=self.timeout, allow_redirects=True, **kw)
        except requests.exceptions.SSLError as exc:
            raise RegistryUnavailable(f"registry {self.registry}: TLS verification failed ({_reason(exc)}); pass its CA bundle") from None
        except requests.exceptions.RequestException as exc:
            raise RegistryUnavailable(f"registry {self.registry} cannot be reached: {_reason(exc)}") from None

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,), **kw: Any) -> requests.Response:
        """One API call, authenticating on a 401 challenge; a status outside `ok` raises a RegistryError."""
        headers = dict(headers or {})
        url = self._url(path)
        resp = self._send(method, url, headers, **kw)
        if resp.status_code == 401 and self._authenticate(resp):
            resp.close()
            body = kw.get("data")
            if hasattr(body, "seek"):
                body.seek(0)  # a file body was consumed by the refused attempt
            resp = self._send(method, url, headers, **kw)
        if resp.status_code in ok:
            return resp
        try:
            detail = _errors(resp)
        finally:
            resp.close()
        what = f"{method} {url.split('/v2/', 1)[-1]}"
        if resp.status_code in (401, 403):
            if self.credentials is None:
                who = "without credentials (none in the Docker config or from a registry plug-in)"
            else:
                who = "with an identity token" if self.credentials.is_identity_token else f"as {self.credentials.username!r}"
                who += f" (from {self.credentials.source})" if self.credentials.source else ""
            raise RegistryAuthError(f"registry {self.registry} refused {what} {who}: {resp.status_code} {detail}")
        if resp.status_code == 404:
            raise NotFound(f"registry {self.registry}: {what}: not found ({detail})")
        raise RegistryError(f"registry {self.registry}: {what}: {resp.status_code} {detail}")

    def _authenticate(self, resp: requests.Response) -> bool:
        """Answer a 401 challenge (Basic, or Bearer from the realm); False when there is nothing new to try."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None or self.credentials.is_identity_token or self._auth_header is not None:
                return False
            self._auth_header = "Basic " + _basic(self.credentials)
            return True
        if scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            realm = fields.pop("realm", "")
            if not realm.startswith("https://"):
                return False  # a token endpoint over plain HTTP would see the password
            try:
                if self.credentials is not None and self.credentials.is_identity_token:
                    # The OAuth2 refresh-token grant of the distribution token spec, as the Docker CLI asks it.
                    form = {**fields, "grant_type": "refresh_token", "refresh_token": self.credentials.password, "client_id": "mxinfra"}
                    tok = self._session.post(realm, data=form, timeout=self.timeout, allow_redirects=False)
                else:
                    headers = {"Authorization": "Basic " + _basic(self.credentials)} if self.credentials else {}
                    tok = self._session.get(realm, params=fields, headers=headers, timeout=self.timeout)
            except requests.exceptions.RequestException as exc:
                raise RegistryUnavailable(f"registry {self.registry}: token service {realm} cannot be reached: {_reason(exc)}") from None
            try:
                doc = tok.json() if tok.status_code == 200 else {}
            except ValueError:
                doc = {}
            token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
            if not token or self._auth_header == f"Bearer {token}":
                return False
            self._auth_header = f"Bearer {token}"
            return True
        return False

    # ---- pull ---------------------------------------------------------------------------------------

    def manifest(self, repository: str, reference: str, accept: tuple[str, ...] = MANIFEST_TYPES + INDEX_TYPES) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest; by digest, the body's sha256 must be that digest."""
        resp = self.request("GET", f"{repository}/manifests/{reference}", headers={"Accept": ", ".join(accept)}, stream=True)
        with resp:
            body = _read_bounded(resp, MAX_MANIFEST_BYTES, f"manifest {repository}@{reference}")
        digest = sha256_of(body)
        if _DIGEST.fullmatch(reference) and digest != reference:
            raise DigestMismatch(f"registry {self.registry} sent a manifest for {repository}@{reference} whose sha256 is {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            doc_type = json.loads(body).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryError(f"registry {self.registry}: manifest {repository}@{reference} is not JSON") from None
        return body, doc_type or media_type, digest

    def blob_bytes(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob (a config), read whole and checked against its digest."""
        with self.request("GET", f"{repository}/blobs/{digest}", stream=True) as resp:
            body = _read_bounded(resp, limit, f"blob {repository}@{digest}")
        if sha256_of(body) != digest:
            raise DigestMismatch(f"registry {self.registry}: blob {repository}@{digest} has sha256 {sha256_of(body)}")
        return body

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        """A blob's bytes in chunks as they arrive (the caller checks the digest)."""
        resp = self.request("GET", f"{repository}/blobs/{digest}", stream=True)
        with resp:
            try:
                yield from resp.iter_content(_CHUNK)
            except requests.exceptions.RequestException as exc:
                raise RegistryUnavailable(f"registry {self.registry}: blob {digest} broke off: {_reason(exc)}") from None

    # ---- push ---------------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository already holds the blob."""
        resp = self.request("HEAD", f"{repository}/blobs/{digest}", ok=(200, 404))
        resp.close()
        return resp.status_code == 200

    def push_blob(self, repository: str, digest: str, body: bytes | IO[bytes], size: int) -> None:
        """Upload a blob in one PUT (monolithic upload), unless the repository has it."""
        if self.has_blob(repository, digest):
            return
        start = self.request("POST", f"{repository}/blobs/uploads/", ok=(202,))
        start.close()
        location = start.headers.get("Location", "")
        if not location:
            raise RegistryError(f"registry {self.registry}: upload to {repository} started without a Location")
        if location.startswith("/"):
            location = f"https://{self.registry}{location}"
        sep = "&" if "?" in location else "?"
        done = self.request(
            "PUT", f"{location}{sep}digest={digest}", ok=(201,), data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        done.close()

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; the digest."""
        resp = self.request("PUT", f"{repository}/manifests/{reference}", ok=(201,), data=body, headers={"Content-Type": media_type})
        resp.close()
        digest = sha256_of(body)
        sent = resp.headers.get("Docker-Content-Digest")
        if sent and sent != digest:
            raise DigestMismatch(f"registry {self.registry} stored manifest {digest} as {sent}")
        return digest


def _basic(c: Credentials | None) -> str:
    return base64.b64encode(f"{c.username}:{c.password}".encode()).decode() if c else ""


def _read_bounded(resp: requests.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    for chunk in resp.iter_content(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes: refused")
    return bytes(buf)


def _errors(resp: requests.Response) -> str:
    """The registry's own error codes and messages, briefly."""
    try:
        doc = json.loads(resp.content[: 64 << 10])
        errs = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in doc.get("errors", []) if isinstance(e, dict)]
        return "; ".join(errs)[:300] or resp.reason or ""
    except Exception:  # noqa: BLE001 (a body that is not the spec's JSON only loses the detail)
        return resp.reason or ""


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, which says what happened (refused, timed out, certificate)."""
    while exc.__cause__ is not None or (exc.args and isinstance(exc.args[0], BaseException)):
        exc = exc.__cause__ if exc.__cause__ is not None else exc.args[0]
    text = str(exc)
    return re.sub(r"<urllib3\.[^>]*>:?\s*", "", text)[:300]
