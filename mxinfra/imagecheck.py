"""Does a container image hold the MDA being deployed? Read it from its registry by digest and compare.

The Docker buildpack (mendix/docker-mendix-buildpack) copies the unpacked MDA into /opt/mendix/build:
the model under /opt/mendix/build/model/ (metadata.json, the compiled .mpk/.mdp, bundles...) and the web
client under /opt/mendix/build/web/. The image is read by digest (an index resolves to its linux/amd64
manifest), its layers newest first; the first layer holding opt/mendix/build/model/metadata.json is the
app's, and each of its files under model/ and web/ is compared by sha256 with the package's members.
Layers stream through gzip and tar in constant memory; they are cached by digest under
~/.cache/mxinfra/layers and hashed again every time they are read, so a cache file altered since it was
written is never trusted.

`verify_image(reference, mda)` is the one entry point the program and the plan can call (not wired
into `pulumi up` or `mxinfra plan` yet).
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
from .mda import MAX_METADATA_BYTES, Metadata, open_mda
from .registry import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Credentials,
    DigestMismatch,
    RegistryClient,
    RegistryError,
    docker_credentials,
)

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


def verify_image(
    image_ref: str,
    mda_path: str | os.PathLike[str],
    *,
    credentials: Credentials | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    docker_config: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Verified:
    """Check that `image_ref` (registry/repository@sha256:...) holds the MDA at `mda_path`; raise ImageMismatch if not."""
    registry, repository, digest = _split(image_ref)
    pkg = open_mda(mda_path, hash_ahead=True)
    pkg.check_members()
    expected = package_members(mda_path)
    if credentials is None:
        credentials = docker_credentials(registry, docker_config)
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    with RegistryClient(registry, credentials=credentials, ca_bundle=ca_bundle) as client:
        manifest_digest, index_digest, manifest = resolve_manifest(client, repository, digest)
        config_desc = manifest.get("config") or {}
        labels: dict[str, str] = {}
        if _is_digest(config_desc.get("digest")):
            config = json.loads(client.blob_bytes(repository, config_desc["digest"], MAX_CONFIG_BYTES))
            labels = {str(k): str(v) for k, v in ((config.get("config") or {}).get("Labels") or {}).items()}
        newer: list[LayerScan] = []
        for layer in reversed(manifest.get("layers") or []):
            found = scan_cached_layer(client, repository, layer, cache)
            if found.metadata is None:
                newer.append(found)
                continue
            # A layer above the app's can still replace or delete its files (a whiteout): what runs is
            # the app layer with those applied, oldest first.
            for above in reversed(newer):
                found.apply(above)
            return _compare(image_ref, manifest_digest, index_digest, layer["digest"], found, pkg.metadata, pkg.sha256(), expected, labels)
    raise ImageMismatch(
        f"image {manifest_digest} holds no Mendix app: no layer has /{METADATA} "
        f"(the package is {pkg.metadata.model_version}, ProjectID {pkg.metadata.project_id})"
    )


def _split(image_ref: str) -> tuple[str, str, str]:
    ref = image_ref[len(OCI_SCHEME) :] if image_ref.startswith(OCI_SCHEME) else image_ref
    parsed = parse_image(ref)
    if parsed is None:
        raise UserError(f"{image_ref!r} is not an image reference: registry/repository@sha256:<digest>")
    if parsed.digest is None:
        raise UserError(f"{image_ref!r} names a tag: verify an image by digest (registry/repository@sha256:<digest>), since a tag can move")
    if parsed.registry is None:
        raise UserError(f"{image_ref!r} names no registry host: registry.example.com/{parsed.repository}@{parsed.digest}")
    return parsed.registry, parsed.repository, parsed.digest


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and value.startswith("sha256:") and len(value) == 71 and all(c in "0123456789abcdef" for c in value[7:])


def resolve_manifest(client: RegistryClient, repository: str, digest: str) -> tuple[str, str | None, dict]:
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


def scan_cached_layer(client: RegistryClient, repository: str, layer: dict, cache: Path) -> LayerScan:
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


def package_members(mda_path: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of each file of the package under model/ and web/ (streamed), by its relative path."""
    p = Path(mda_path)
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
