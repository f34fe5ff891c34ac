"""`mxinfra image ...`: check that a container image holds a package (and build one that does).

Imports typer only: the registry client and the verification load when a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

image_app = typer.Typer(
    help="Container images of a package: verify that an image holds it, or build one that does.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CaBundle = Annotated[
    Optional[Path], typer.Option("--ca-bundle", help="PEM file of the CAs that sign the registry's certificate (default: the host's in /etc/docker/certs.d or containers/certs.d, else REQUESTS_CA_BUNDLE or SSL_CERT_FILE, else the public CAs)")
]
DockerConfig = Annotated[
    Optional[Path], typer.Option("--docker-config", help="Docker config.json with the registry's credentials (default: ~/.docker/config.json)")
]


@image_app.command("verify")
def verify(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="registry/repository@sha256:<digest> (a tag is refused: it can move)")],
    package: Annotated[Path, typer.Argument(metavar="PACKAGE", help="The .mda being deployed")],
    ca_bundle: CaBundle = None,
    docker_config: DockerConfig = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a line")] = False,
) -> None:
    """Check that IMAGE holds PACKAGE: its model/ and web/ files, byte for byte (exit 2 names both if not)."""
    from dataclasses import asdict

    from .imagecheck import verify_image

    v = verify_image(image, package, ca_bundle=ca_bundle, docker_config=docker_config)
    if as_json:
        sys.stdout.write(json.dumps(asdict(v), indent=2) + "\n")
        return
    from .display import clean

    listed = f" (linux/amd64 of list {v.index_digest})" if v.index_digest else ""
    sys.stdout.write(
        clean(
            f"verified: image {v.manifest_digest}{listed} holds package sha256:{v.package_sha256} "
            f"(model {v.model_version}, ProjectID {v.project_id}; {v.members} files in layer {v.layer_digest})"
        )
        + "\n"
    )


@image_app.command("build")
def build(
    base: Annotated[str, typer.Option("--base", metavar="IMAGE", help="The runtime image to add the app to: registry/repository@sha256:<digest> (or :tag)")],
    package: Annotated[Path, typer.Option("--package", metavar="MDA", help="The .mda to unpack into /opt/mendix/build")],
    push: Annotated[str, typer.Option("--push", metavar="REPO", help="Where to push: registry/repository[:tag]")],
    ca_bundle: CaBundle = None,
    docker_config: DockerConfig = None,
) -> None:
    """Append one layer holding PACKAGE where the Docker buildpack puts it, push, verify by pulling back; print the digest."""
    from .imagecheck import verify_image

    pushed = build_image(base, package, push, ca_bundle=ca_bundle, docker_config=docker_config)
    v = verify_image(pushed, package, ca_bundle=ca_bundle, docker_config=docker_config)
    from .display import clean

    sys.stderr.write(clean(f"pushed and verified: model {v.model_version}, package sha256:{v.package_sha256}") + "\n")
    sys.stdout.write(clean(pushed) + "\n")


def build_image(
    base: str,
    mda_path: str | Path,
    push: str,
    *,
    credentials: object = None,
    ca_bundle: str | Path | None = None,
    docker_config: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """Push `base` plus one layer with the package under /opt/mendix/build to `push`; the pushed `registry/repo@sha256:...`.

    Base layers are copied through the verified layer cache when `push` is another repository or registry.
    `credentials` (a mxinfra.registry.Credentials) is used for both registries when given."""
    import hashlib
    import tempfile

    from .artifacts import parse_image
    from .errors import UserError
    from .imagecheck import MAX_CONFIG_BYTES, default_cache, fetch_layer, registry_client, resolve_manifest
    from .mda import open_mda
    from .registry import RegistryClient, sha256_of

    b = parse_image(base)
    dest = parse_image(push)
    if b is None or b.registry is None:
        raise UserError(f"--base {base!r}: expected registry/repository@sha256:<digest> (or :tag)")
    if dest is None or dest.registry is None or dest.digest is not None:
        raise UserError(f"--push {push!r}: expected registry/repository[:tag] (the digest is what the push gives)")
    pkg = open_mda(mda_path)
    pkg.verify()  # a damaged package never goes into an image
    meta = pkg.metadata
    cache = Path(cache_dir) if cache_dir is not None else default_cache()

    def client(registry: str) -> RegistryClient:
        return registry_client(registry, credentials, ca_bundle=ca_bundle, docker_config=docker_config)  # type: ignore[arg-type]

    with client(b.registry) as src, client(dest.registry) as dst, tempfile.TemporaryDirectory(prefix="mxinfra-image-") as tmp:
        ref = b.digest or b.tag or "latest"
        if b.digest is None:
            _, _, ref = src.manifest(b.repository, ref)  # pin the tag once: everything below reads that digest
        base_digest, _, manifest = resolve_manifest(src, b.repository, ref)
        config = json.loads(src.blob_bytes(b.repository, manifest["config"]["digest"], MAX_CONFIG_BYTES))
        docker_types = manifest.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json"

        # The base layers: present in the destination, else copied through the (verified) cache.
        for layer in manifest.get("layers") or []:
            if dst.has_blob(dest.repository, layer["digest"]):
                continue
            cached = cache / "sha256" / layer["digest"][7:]
            if not cached.exists():
                fetch_layer(lambda d=layer["digest"]: src.blob_chunks(b.repository, d), layer["digest"], cached)
            with open(cached, "rb") as f:
                h = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                if "sha256:" + h.hexdigest() != layer["digest"]:
                    cached.unlink()
                    raise UserError(f"cached layer {layer['digest']} no longer matches its digest: removed, run again")
                f.seek(0)
                dst.push_blob(dest.repository, layer["digest"], f, cached.stat().st_size)

        # The app layer, streamed to a file: digest of the gzip, diff_id of the tar inside it.
        layer_path = Path(tmp) / "app.tar.gz"
        digest, diff_id, size = _app_layer(pkg.path, layer_path, pkg.is_archive)
        with open(layer_path, "rb") as f:
            dst.push_blob(dest.repository, digest, f, size)

        labels = dict((config.get("config") or {}).get("Labels") or {})
        labels.update(
            {
                "org.opencontainers.image.title": meta.project_name,
                "org.opencontainers.image.version": meta.model_version,
                "org.opencontainers.image.base.name": base,
                "org.opencontainers.image.base.digest": base_digest,
                "mxinfra.package-sha256": pkg.sha256(),
                "mxinfra.model-version": meta.model_version,
                "mxinfra.project-id": meta.project_id,
            }
        )
        config.setdefault("config", {})["Labels"] = labels
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        config.setdefault("history", []).append({"created_by": f"mxinfra image build: {meta.project_name} {meta.model_version} into /opt/mendix/build"})
        config_body = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
        config_type = manifest["config"].get("mediaType") or "application/vnd.oci.image.config.v1+json"
        dst.push_blob(dest.repository, sha256_of(config_body), config_body, len(config_body))

        layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker_types else "application/vnd.oci.image.layer.v1.tar+gzip"
        manifest_type = manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
        out = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": sha256_of(config_body), "size": len(config_body)},
            "layers": list(manifest.get("layers") or []) + [{"mediaType": layer_type, "digest": digest, "size": size}],
        }
        body = json.dumps(out, separators=(",", ":")).encode()
        pushed = dst.push_manifest(dest.repository, dest.tag or sha256_of(body), body, manifest_type)
    return f"{dest.registry}/{dest.repository}@{pushed}"


def _app_layer(source: Path, dest: Path, is_archive: bool) -> tuple[str, str, int]:
    """Write a reproducible tar.gz of the app's model/, web/ and native/ under opt/mendix/build/; (digest, diff_id, size)."""
    import gzip
    import hashlib
    import io
    import os
    import tarfile
    import zipfile

    raw = hashlib.sha256()

    class _Tap(io.RawIOBase):
        # the tar's own bytes are the diff_id the config lists, hashed on their way into gzip
        def __init__(self, inner: gzip.GzipFile) -> None:
            self.inner = inner

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            raw.update(data)
            return self.inner.write(data)

    def info(name: str, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
        t = tarfile.TarInfo(name)
        # fixed owner, modes and time: the same package gives the same layer digest
        t.type, t.mode, t.size, t.mtime = (tarfile.DIRTYPE, 0o755, 0, 0) if is_dir else (tarfile.REGTYPE, 0o644, size, 0)
        return t

    prefix = "opt/mendix/build/"
    with open(dest, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=_Tap(gz), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            made: set[str] = set()

            def dirs(path: str) -> None:
                parts = path.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in made:
                        made.add(d)
                        tar.addfile(info(d, is_dir=True))

            if is_archive:
                with zipfile.ZipFile(source) as z:
                    for zi in sorted(z.infolist(), key=lambda i: i.filename):
                        if zi.is_dir() or not zi.filename.startswith(("model/", "web/", "native/")):
                            continue
                        dirs(prefix + zi.filename)
                        with z.open(zi) as f:
                            tar.addfile(info(prefix + zi.filename, zi.file_size), f)
            else:
                for top in ("model", "web", "native"):
                    for root, subdirs, files in os.walk(source / top):
                        subdirs.sort()
                        for name in sorted(files):
                            full = Path(root) / name
                            rel = full.relative_to(source).as_posix()
                            dirs(prefix + rel)
                            with open(full, "rb") as f:
                                tar.addfile(info(prefix + rel, full.stat().st_size), f)
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), "sha256:" + raw.hexdigest(), dest.stat().st_size
