"""Does a container image hold the MDA being deployed? Read it from its registry by digest and compare.

The Docker buildpack (mendix/docker-mendix-buildpack) copies the unpacked MDA into /opt/mendix/build:
the model under /opt/mendix/build/model/ (metadata.json, the compiled .mpk/.mdp, bundles...) and the web
client under /opt/mendix/build/web/. The image is read by digest (an index resolves to its linux/amd64
manifest), its layers newest first; the first layer holding opt/mendix/build/model/metadata.json is the
app's, and each of its files under model/ and web/ is compared by sha256 with the package's members.
Layers stream through gzip and tar in constant memory; they are cached by digest under
~/.cache/mxinfra/layers and hashed again every time they are read, so a cache file altered since it was
written is never trusted.

Manifests and configs are cached by digest beside the layers (content-addressed, checked on every read),
so verifying an image by digest a second time makes no request at all. `verify_image(reference, mda)`
is the entry point; `mxinfra.imagebinding` applies it to every environment for `pulumi up` and the plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .artifacts import OCI_SCHEME, parse_image
from .errors import UserError
from .mda import MAX_METADATA_BYTES, MdaPackage, Metadata, open_mda
from .registry import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    Credentials,
    DigestMismatch,
    RegistryClient,
    RegistryError,
    sha256_of,
)
from .registry_auth import credentials_for

APP_ROOT = "opt/mendix/build/"
METADATA = APP_ROOT + "model/metadata.json"
COMPARED_ROOTS = ("model/", "web/")
PLATFORM = ("linux", "amd64")
MAX_CONFIG_BYTES = 8 << 20
_CHUNK = 1 << 20
_GZIP_LAYERS = {
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
_TAR_LAYERS = {"application/vnd.oci.image.layer.v1.tar"}


class ImageMismatch(UserError):
    """The image does not hold the package: the message names both."""


@dataclass(frozen=True)
class Verified:
    """An image whose app layer holds exactly the package's model/ (and web/) members."""

    image: str  # the reference as given
    manifest_digest: str  # the platform manifest whose layers were read
    index_digest: str | None  # the manifest list it was picked from, if any
    layer_digest: str  # the layer holding the app
    package_sha256: str
    model_version: str
    project_id: str
    members: int  # files compared
    labels: dict[str, str] = field(default_factory=dict)


def default_cache() -> Path:
    """~/.cache/mxinfra/layers (XDG_CACHE_HOME respected)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mxinfra" / "layers"


def ca_bundle_for(registry: str) -> str | None:
    """The CA bundle that signs `registry`'s certificate, where container tools keep one per host:
    /etc/docker/certs.d/<host>/, then containers-certs.d(5)'s per-user and system directories
    ($XDG_CONFIG_HOME or ~/.config, then /etc: containers/certs.d/<host>/), `ca.crt` or else the first
    `*.crt`; else REQUESTS_CA_BUNDLE or SSL_CERT_FILE; else None (the public CAs)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for root in (Path("/etc/docker/certs.d"), Path(config_home) / "containers" / "certs.d", Path("/etc/containers/certs.d")):
        host_dir = root / registry
        if (host_dir / "ca.crt").is_file():
            return str(host_dir / "ca.crt")
        found = sorted(host_dir.glob("*.crt")) if host_dir.is_dir() else []
        if found:
            return str(found[0])
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def verify_image(
    image_ref: str,
    mda_path: str | os.PathLike[str],
    *,
    credentials: Credentials | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    docker_config: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_tag: bool = False,
    lookup: Callable[[str], Credentials | None] | None = None,
    package: MdaPackage | None = None,
) -> Verified:
    """Check that `image_ref` (registry/repository@sha256:...) holds the MDA at `mda_path`; raise ImageMismatch if not.

    With `allow_tag`, a tag is resolved to the digest it names now (which is what is verified and
    reported: the tag can move later). Credentials: `credentials`, else `lookup(registry)`, else the
    Docker config's; they are looked up only if something must come from the registry (a reference by
    digest whose manifests and layers are all cached needs no request). `package` is the MDA at
    `mda_path` already opened (and hashed) by the caller, so that it is not read twice."""
    registry, repository, reference = _split(image_ref, allow_tag=allow_tag)
    pkg = package if package is not None else open_mda(mda_path, hash_ahead=True)
    pkg.check_members()
    cache = Path(cache_dir) if cache_dir is not None else default_cache()

    def connect() -> RegistryClient:
        return registry_client(registry, credentials, ca_bundle=ca_bundle, docker_config=docker_config, lookup=lookup)

    with CachedRegistry(connect, cache) as source:
        manifest_digest, index_digest, manifest = resolve_manifest(source, repository, reference)
        config_desc = manifest.get("config") or {}
        labels: dict[str, str] = {}
        if _is_digest(config_desc.get("digest")):
            config = json.loads(source.blob_bytes(repository, config_desc["digest"], MAX_CONFIG_BYTES))
            labels = {str(k): str(v) for k, v in ((config.get("config") or {}).get("Labels") or {}).items()}
        newer: list[LayerScan] = []
        for layer in reversed(manifest.get("layers") or []):
            found = scan_cached_layer(source, repository, layer, cache)
            if found.metadata is None:
                newer.append(found)
                continue
            # A layer above the app's can still replace or delete its files (a whiteout): what runs is
            # the app layer with those applied, oldest first.
            for above in reversed(newer):
                found.apply(above)
            # the package's side last: nothing of it is read for an image that cannot be fetched
            expected = package_members(mda_path)
            return _compare(image_ref, manifest_digest, index_digest, layer["digest"], found, pkg.metadata, pkg.sha256(), expected, labels)
    raise ImageMismatch(
        f"image {manifest_digest} holds no Mendix app: no layer has /{METADATA} "
        f"(the package is {pkg.metadata.model_version}, ProjectID {pkg.metadata.project_id})"
    )


def registry_client(
    registry: str,
    credentials: Credentials | None = None,
    *,
    ca_bundle: str | os.PathLike[str] | None = None,
    docker_config: str | os.PathLike[str] | None = None,
    lookup: Callable[[str], Credentials | None] | None = None,
) -> RegistryClient:
    """A client of `registry`: `credentials`, else `lookup(registry)`, else the user's (mxinfra.registry_auth);
    `ca_bundle`, else the host's (`ca_bundle_for`)."""
    if credentials is None:
        credentials = lookup(registry) if lookup is not None else credentials_for(registry, docker_config)
    return RegistryClient(registry, credentials=credentials, ca_bundle=ca_bundle if ca_bundle is not None else ca_bundle_for(registry))


class CachedRegistry:
    """A registry read through the digest cache: manifests and blobs named by digest come from the cache
    when it holds bytes that still hash to that digest; the client is made only when something is not."""

    def __init__(self, connect: Callable[[], RegistryClient], cache: Path) -> None:
        self._connect = connect
        self._cache = cache
        self._client: RegistryClient | None = None

    @property
    def client(self) -> RegistryClient:
        """The registry client, made on first use."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def __enter__(self) -> CachedRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()

    def _cached(self, digest: str, limit: int) -> bytes | None:
        path = self._cache / "sha256" / digest[7:]
        try:
            if path.stat().st_size > limit:
                return None
            body = path.read_bytes()
        except OSError:
            return None
        return body if sha256_of(body) == digest else None

    def _keep(self, digest: str, body: bytes) -> None:
        fetch_layer(lambda: iter((body,)), digest, self._cache / "sha256" / digest[7:])

    def manifest(self, repository: str, reference: str, accept: tuple[str, ...] = MANIFEST_TYPES + INDEX_TYPES) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest, from the cache when `reference` is a cached digest."""
        if _is_digest(reference) and (body := self._cached(reference, MAX_MANIFEST_BYTES)) is not None:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                # Stored manifests carry their type; one without it is told by its shape, as registries do.
                kind = doc.get("mediaType") or (INDEX_TYPES[0] if "manifests" in doc else MANIFEST_TYPES[0])
                if kind in accept:
                    return body, kind, reference
        body, kind, digest = self.client.manifest(repository, reference, accept)
        self._keep(digest, body)
        return body, kind, digest

    def blob_bytes(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob (a config), from the cache when it holds it."""
        if (body := self._cached(digest, limit)) is not None:
            return body
        body = self.client.blob_bytes(repository, digest, limit)
        self._keep(digest, body)
        return body

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        """A blob's bytes as they arrive from the registry (the caller checks and caches)."""
        return self.client.blob_chunks(repository, digest)


def _split(image_ref: str, *, allow_tag: bool = False) -> tuple[str, str, str]:
    """(registry, repository, digest or, with `allow_tag`, tag) of a reference."""
    ref = image_ref[len(OCI_SCHEME) :] if image_ref.startswith(OCI_SCHEME) else image_ref
    parsed = parse_image(ref)
    if parsed is None:
        raise UserError(f"{image_ref!r} is not an image reference: registry/repository@sha256:<digest>")
    if parsed.digest is None and not (allow_tag and parsed.tag and parsed.registry):
        what = "a tag" if parsed.tag else "no digest (the registry's 'latest')"
        raise UserError(f"{image_ref!r} names {what}: verify an image by digest (registry/repository@sha256:<digest>), since a tag can move")
    if parsed.registry is None:
        raise UserError(f"{image_ref!r} names no registry host: registry.example.com/{parsed.repository}@{parsed.digest}")
    return parsed.registry, parsed.repository, parsed.digest or str(parsed.tag)


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and value.startswith("sha256:") and len(value) == 71 and all(c in "0123456789abcdef" for c in value[7:])


def resolve_manifest(client: RegistryClient | CachedRegistry, repository: str, digest: str) -> tuple[str, str | None, dict]:
    """(platform manifest digest, index digest or None, manifest): an index resolves to linux/amd64."""
    body, media_type, got = client.manifest(repository, digest)
    doc = json.loads(body)
    if media_type in INDEX_TYPES or "manifests" in doc:
        picks = [
            m for m in doc.get("manifests") or []
            if isinstance(m, dict) and (m.get("platform") or {}).get("os") == PLATFORM[0]
            and (m.get("platform") or {}).get("architecture") == PLATFORM[1] and _is_digest(m.get("digest"))
        ]
        if not picks:
            offered = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}" for m in doc.get("manifests") or [] if isinstance(m, dict)})
            raise ImageMismatch(f"image {got} is a manifest list without {'/'.join(PLATFORM)} (it has {', '.join(offered) or 'none'})")
        body, media_type, sub = client.manifest(repository, picks[0]["digest"], accept=MANIFEST_TYPES)
        doc = json.loads(body)
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"image {sub} (from list {got}) is a {media_type or 'manifest of no type'}, not an image manifest")
        return sub, got, doc
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"image {got} is a {media_type or 'manifest of no type'}, not an image manifest")
    return got, None, doc


# ---- layers -------------------------------------------------------------------------------------------


@dataclass
class LayerScan:
    """What one layer holds under /opt/mendix/build: sha256 (or a kind such as 'symlink') per relative path."""

    members: dict[str, str]
    metadata: bytes | None
    deleted: list[str] = field(default_factory=list)  # whiteouts: paths from the root this layer removes below it
    opaque: list[str] = field(default_factory=list)  # directories from the root whose lower contents it hides

    def apply(self, above: LayerScan) -> None:
        """Lay a newer layer over this one (OCI whiteouts, then its files)."""
        gone = [d.rstrip("/") for d in above.deleted] + [d.rstrip("/") for d in above.opaque]
        for rel in list(self.members):
            full = APP_ROOT + rel
            if any(full == d or full.startswith(d + "/") for d in gone):
                del self.members[rel]
        self.members.update(above.members)


class _HashingReader:
    """A file wrapper that hashes every byte read through it (so what is parsed is what is hashed)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.digest.update(data)
        return data

    def drain(self) -> str:
        """Read to the end; the sha256 of everything."""
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.digest.hexdigest()


def scan_cached_layer(client: RegistryClient | CachedRegistry, repository: str, layer: dict, cache: Path) -> LayerScan:
    """Fetch a layer into the cache (unless there) and scan it."""
    digest, media_type = layer.get("digest"), layer.get("mediaType", "")
    if not _is_digest(digest):
        raise RegistryError(f"a layer of the image has no sha256 digest: {str(digest)[:80]!r}")
    if media_type not in _GZIP_LAYERS | _TAR_LAYERS:
        raise RegistryError(f"layer {digest} is {media_type or 'of no media type'}: only tar and tar+gzip layers are read")
    path = cache / "sha256" / digest[7:]
    for attempt in (1, 2):
        if not path.exists():
            fetch_layer(lambda: client.blob_chunks(repository, digest), digest, path)
        try:
            return scan_layer(path, digest, gzip=media_type in _GZIP_LAYERS)
        except DigestMismatch:
            # A cache file that no longer hashes to its name was altered after it was verified: drop it
            # and fetch again once; a second mismatch is refused.
            path.unlink(missing_ok=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def fetch_layer(chunks: Callable[[], Iterator[bytes]], digest: str, dest: Path) -> None:
    """Stream a blob into `dest` through a temporary file, renamed into place only if its sha256 is `digest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks():
                h.update(chunk)
                f.write(chunk)
        got = "sha256:" + h.hexdigest()
        if got != digest:
            raise DigestMismatch(f"layer {digest} from the registry has sha256 {got}: refused (tampered or corrupt)")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scan_layer(path: Path, digest: str, *, gzip: bool) -> LayerScan:
    """Stream a layer tar once: sha256 of each file under /opt/mendix/build/{model,web}/, and its whiteouts.

    The whole file is hashed as it is read and must match `digest`, else DigestMismatch (nothing of it
    is returned)."""
    members: dict[str, str] = {}
    metadata: bytes | None = None
    deleted: list[str] = []
    opaque: list[str] = []
    with open(path, "rb") as raw:
        reader = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|gz" if gzip else "r|") as tar:  # type: ignore[call-overload]
                while (info := tar.next()) is not None:
                    tar.members.clear()  # TarFile keeps every header it read: a layer of a million files would too
                    name = _normal(info.name)
                    parent, _, base = name.rpartition("/")
                    if base.startswith(".wh.") and (not parent or APP_ROOT.startswith(parent + "/") or name.startswith(APP_ROOT)):
                        # on /opt/mendix/build or one of its parents or children
                        if base == ".wh..wh..opq":
                            opaque.append(parent)
                        else:
                            deleted.append(f"{parent}/{base[4:]}" if parent else base[4:])
                        continue
                    if not name.startswith(APP_ROOT):
                        continue
                    rel = name[len(APP_ROOT) :]
                    if not rel.startswith(COMPARED_ROOTS) or info.isdir():
                        continue
                    if not info.isreg():
                        members[rel] = "symlink" if info.issym() else "hardlink" if info.islnk() else "special file"
                        continue
                    f = tar.extractfile(info)
                    assert f is not None  # a regular member always has a file object
                    h = hashlib.sha256()
                    keep = name == METADATA
                    kept = bytearray()
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        if keep and len(kept) <= MAX_METADATA_BYTES:
                            kept += chunk
                    members[rel] = h.hexdigest()
                    if keep:
                        metadata = bytes(kept)
        except (tarfile.TarError, OSError, EOFError) as exc:
            # Damaged bytes: if they are not the layer's, that is the finding; else the layer is corrupt.
            got = reader.drain()
            if got != digest:
                raise DigestMismatch(f"layer {digest} has sha256 {got}: refused (tampered or corrupt)") from None
            raise RegistryError(f"layer {digest} is not a readable tar{' (gzip)' if gzip else ''}: {exc}") from None
        got = reader.drain()  # the end of the gzip stream (and any padding) counts too
    if got != digest:
        raise DigestMismatch(f"layer {digest} has sha256 {got}: refused (tampered or corrupt)")
    return LayerScan(members, metadata, deleted, opaque)


def _normal(name: str) -> str:
    """A tar member name as a path from the root: no leading './' or '/'."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


# ---- the package --------------------------------------------------------------------------------------


_members_seen: dict[tuple[str, int, int, int], dict[str, str]] = {}


def package_members(mda_path: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of each file of the package under model/ and web/ (streamed), by its relative path; an
    unchanged archive (same file, size and mtime) is read once per process."""
    p = Path(mda_path)
    st = p.stat()
    key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if p.is_file() and key in _members_seen:
        return dict(_members_seen[key])
    out = _members_of(p)
    if p.is_file():
        _members_seen[key] = dict(out)
    return out


def _members_of(p: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if p.is_dir():
        for top in COMPARED_ROOTS:
            for root, _dirs, files in os.walk(p / top):
                for fname in files:
                    full = Path(root) / fname
                    out[full.relative_to(p).as_posix()] = _hash_stream(full.open("rb"))
        return out
    with zipfile.ZipFile(p) as z:
        for info in z.infolist():
            if info.is_dir() or not info.filename.startswith(COMPARED_ROOTS):
                continue
            out[info.filename] = _hash_stream(z.open(info))
    return out


def _hash_stream(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    with f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _compare(
    image_ref: str,
    manifest_digest: str,
    index_digest: str | None,
    layer_digest: str,
    found: LayerScan,
    meta: Metadata,
    package_sha: str,
    expected: dict[str, str],
    labels: dict[str, str],
) -> Verified:
    """Verified if the layer's model/ (and web/, when it has one) equal the package's; else ImageMismatch naming both."""
    try:
        image_meta: Metadata | None = Metadata.from_json(found.metadata, source=f"image {manifest_digest}:/{METADATA}")
    except UserError:
        image_meta = None
    compared = {k: v for k, v in expected.items() if k.startswith("model/")}
    image_side = {k: v for k, v in found.members.items() if k.startswith("model/")}
    if any(k.startswith("web/") for k in found.members):
        # The buildpack copies web/ beside model/; an image built some other way may serve it from elsewhere.
        compared.update({k: v for k, v in expected.items() if k.startswith("web/")})
        image_side.update({k: v for k, v in found.members.items() if k.startswith("web/")})
    differ = sorted(k for k in compared.keys() & image_side.keys() if compared[k] != image_side[k])
    missing = sorted(compared.keys() - image_side.keys())
    extra = sorted(image_side.keys() - compared.keys())
    if differ or missing or extra:
        held = (
            f"model {image_meta.model_version} (ProjectID {image_meta.project_id})"
            if image_meta is not None
            else "a metadata.json that does not parse"
        )
        parts = []
        for label, names in (("differ", differ), ("missing from the image", missing), ("only in the image", extra)):
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise ImageMismatch(
            f"image {manifest_digest} holds {held}, the package is {meta.model_version} "
            f"(ProjectID {meta.project_id}, sha256:{package_sha}); members {'; '.join(parts)}"
        )
    return Verified(
        image=image_ref,
        manifest_digest=manifest_digest,
        index_digest=index_digest,
        layer_digest=layer_digest,
        package_sha256=package_sha,
        model_version=meta.model_version,
        project_id=meta.project_id,
        members=len(compared),
        labels=labels,
    )
