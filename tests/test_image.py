"""Image verification against a real distribution registry on loopback (TLS, htpasswd), images pushed
over its HTTP API without Docker: the image holds the package, or the refusal names both."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from mda_builders import write_zip
from registry import (  # noqa: F401 (the fixture)
    BASE_FILES,
    Registry,
    layer_tar,
    mda_files,
    push_image,
    push_index,
    push_manifest,
    registry,
)

from mxinfra.cli import main
from mxinfra.errors import UserError
from mxinfra.imagecheck import ImageMismatch, Verified, verify_image
from mxinfra.registry import Credentials, DigestMismatch, RegistryAuthError, RegistryUnavailable, docker_credentials

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orders" / "orders-1.4.2.mda"
MODEL_142, PROJECT = "1.4.2.1234", "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"


def release(dest: Path, version: str = "1.4.3.1301", *, change: str = "model/model.mdp", extra: dict[str, bytes] | None = None) -> Path:
    """The example app with another model version and one model file changed (the next release)."""
    members = []
    with zipfile.ZipFile(EXAMPLE) as z:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "model/metadata.json" and version != MODEL_142:
                doc = json.loads(data)
                doc["ModelVersion"] = version
                data = json.dumps(doc, indent=2).encode()
            elif info.filename == change:
                data += b"\nnext release"
            members.append((info.filename, data))
    members += list((extra or {}).items())
    return write_zip(dest, members)


def app_image(reg: Registry, repo: str, mda: Path, *, top: bool = True, labels: dict[str, str] | None = None) -> str:
    """Base layer, the app layer from `mda`, and (with `top`) a newer layer that holds no app."""
    layers = [layer_tar(BASE_FILES), layer_tar(mda_files(mda))]
    if top:
        layers.append(layer_tar([("etc/mendix-extra.conf", b"newer layer without the app\n")]))
    return push_image(reg, repo, layers, labels=labels)


def ref(reg: Registry, repo: str, digest: str) -> str:
    return f"{reg.host}/{repo}@{digest}"


def creds(reg: Registry) -> Credentials:
    return Credentials(reg.user, reg.password)


def registry_manifest(reg: Registry, repo: str, digest: str) -> tuple[bytes, str, str]:
    """A stored manifest's bytes, read with the tests' own HTTP session (not the client under test)."""
    with reg.session() as s:
        r = s.get(f"https://{reg.host}/v2/{repo}/manifests/{digest}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    return r.content, r.headers.get("Content-Type", ""), digest


def test_the_image_of_the_package_verifies(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE, labels={"org.opencontainers.image.version": "1.4.2"})
    v = verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    assert isinstance(v, Verified)
    assert (v.manifest_digest, v.index_digest, v.model_version, v.project_id) == (digest, None, MODEL_142, PROJECT)
    assert v.members == 9  # every file of the example: 5 under model/, 4 under web/
    assert v.labels == {"org.opencontainers.image.version": "1.4.2"}
    # the layer found is the app's (the second), not the newer one above it
    assert (tmp_path / "c" / "sha256" / v.layer_digest[7:]).is_file()


def test_another_model_is_refused_naming_both(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE)
    package = release(tmp_path / "orders-1.4.3.mda")
    with pytest.raises(ImageMismatch) as err:
        verify_image(ref(registry, "orders/app", digest), package, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert msg.startswith(f"image {digest} holds model {MODEL_142} (ProjectID {PROJECT}), the package is 1.4.3.1301"), msg
    assert "differ: model/metadata.json, model/model.mdp" in msg


def test_one_changed_file_under_the_same_version_is_refused(registry: Registry, tmp_path: Path) -> None:
    # Same metadata.json, one web file changed: the version alone would pass it.
    package = release(tmp_path / "patched.mda", MODEL_142, change="web/index.html")
    digest = app_image(registry, "orders/app", EXAMPLE)
    with pytest.raises(ImageMismatch, match=r"differ: web/index\.html$"):
        verify_image(ref(registry, "orders/app", digest), package, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    # and a file the image lacks
    bigger = release(tmp_path / "bigger.mda", MODEL_142, change="none", extra={"model/resources/new.txt": b"new"})
    with pytest.raises(ImageMismatch, match=r"missing from the image: model/resources/new\.txt"):
        verify_image(ref(registry, "orders/app", digest), bigger, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")


@pytest.mark.parametrize(
    ("top", "finding"),
    [
        ([("opt/mendix/build/model/model.mdp", b"replaced above the app")], r"differ: model/model\.mdp$"),
        ([("opt/mendix/build/web/.wh.index.html", b"")], r"missing from the image: web/index\.html$"),
        ([("opt/mendix/build/model/.wh..wh..opq", b""), ("opt/mendix/build/model/metadata.jsn", b"x")], r"missing from the image: model/bundles/project\.jar, .*only in the image: model/metadata\.jsn$"),
        ([("opt/mendix/.wh.build", b"")], r"missing from the image: model/bundles/project\.jar, model/dependencies\.json,"),
        ([("opt/mendix/build/web/extra.js", b"added above the app")], r"only in the image: web/extra\.js$"),
    ],
)
def test_layers_above_the_app_count(registry: Registry, tmp_path: Path, top: list[tuple[str, bytes]], finding: str) -> None:
    # What runs is the app layer with every newer layer laid over it: replaced, deleted or added files.
    digest = push_image(registry, "orders/over", [layer_tar(BASE_FILES), layer_tar(mda_files(EXAMPLE)), layer_tar(top)])
    with pytest.raises(ImageMismatch, match=finding):
        verify_image(ref(registry, "orders/over", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    harmless = push_image(registry, "orders/over", [layer_tar(BASE_FILES), layer_tar(mda_files(EXAMPLE)), layer_tar([("opt/mendix/.wh.runtime", b"")])])
    verify_image(ref(registry, "orders/over", harmless), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")


def test_an_image_without_the_app_is_refused(registry: Registry, tmp_path: Path) -> None:
    digest = push_image(registry, "orders/base", [layer_tar(BASE_FILES)])
    with pytest.raises(ImageMismatch, match=r"holds no Mendix app: no layer has /opt/mendix/build/model/metadata\.json"):
        verify_image(ref(registry, "orders/base", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")


def test_the_registry_refusing_the_credentials(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE)
    with pytest.raises(RegistryAuthError, match=rf"registry {registry.host} refused GET orders/app/manifests/{digest} as 'deployer': 401"):
        verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=Credentials("deployer", "wrong"), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    empty = tmp_path / "empty-config.json"
    empty.write_text("{}")
    with pytest.raises(RegistryAuthError, match="without credentials"):
        verify_image(ref(registry, "orders/app", digest), EXAMPLE, docker_config=empty, ca_bundle=registry.ca, cache_dir=tmp_path / "c")


def test_an_untrusted_certificate_is_refused(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE)
    with pytest.raises(RegistryUnavailable, match="TLS verification failed"):
        verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), cache_dir=tmp_path / "c")


def test_a_registry_that_is_down_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        start = time.monotonic()
        with pytest.raises(RegistryUnavailable, match=rf"registry 127\.0\.0\.1:{port} cannot be reached"):
            verify_image(f"127.0.0.1:{port}/orders/app@sha256:{'a' * 64}", EXAMPLE, credentials=Credentials("u", "p"), cache_dir=tmp_path / "c")
    assert time.monotonic() - start < 5  # no retry loop with back-off


def test_a_manifest_list_resolves_to_linux_amd64(registry: Registry, tmp_path: Path) -> None:
    other = app_image(registry, "orders/multi", release(tmp_path / "other.mda"))
    amd64 = app_image(registry, "orders/multi", EXAMPLE)
    index = push_index(registry, "orders/multi", [("arm64", other), ("amd64", amd64)])
    v = verify_image(ref(registry, "orders/multi", index), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    assert (v.index_digest, v.manifest_digest) == (index, amd64)
    only_arm = push_index(registry, "orders/multi", [("arm64", amd64)])
    with pytest.raises(ImageMismatch, match=r"manifest list without linux/amd64 \(it has linux/arm64\)"):
        verify_image(ref(registry, "orders/multi", only_arm), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")


def test_a_tampered_layer_in_the_registry_is_refused(registry: Registry, tmp_path: Path) -> None:
    body, layer, diff = layer_tar(mda_files(EXAMPLE, prefix="opt/mendix/build/") + [("opt/mendix/tamper-marker", b"1")])
    digest = push_image(registry, "orders/tampered", [layer_tar(BASE_FILES), (body, layer, diff)])
    stored = registry.blob_file(layer)
    assert stored.read_bytes() == body
    # Another valid layer's bytes under the digest: the registry serves them as they are on disk.
    other, _, _ = layer_tar(mda_files(release(tmp_path / "other.mda")))
    stored.write_bytes(other)  # type: ignore[arg-type]
    with pytest.raises(DigestMismatch, match=rf"layer {layer} from the registry has sha256 sha256:[0-9a-f]{{64}}: refused"):
        verify_image(ref(registry, "orders/tampered", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "sha256" / layer[7:]).exists()  # nothing of it was cached
    assert [p.name for p in (tmp_path / "c" / "sha256").iterdir() if p.name.startswith(".partial")] == []


def test_a_tampered_cache_file_is_not_trusted(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE, top=False)
    cache = tmp_path / "c"
    first = verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=cache)
    cached = cache / "sha256" / first.layer_digest[7:]
    good = cached.read_bytes()
    # A valid layer of the other release written over the cache file: it would pass any check but the hash.
    other, _, _ = layer_tar(mda_files(release(tmp_path / "other.mda")))
    cached.write_bytes(other)  # type: ignore[arg-type]
    again = verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=cache)
    assert again == first
    assert cached.read_bytes() == good  # fetched again from the registry


def test_a_second_verification_by_digest_asks_the_registry_nothing(registry: Registry, tmp_path: Path) -> None:
    digest = app_image(registry, "orders/app", EXAMPLE)
    cache = tmp_path / "c"
    first = verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=cache)
    assert (cache / "sha256" / digest[7:]).is_file()  # the manifest, beside the layers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = s.getsockname()[1]  # nothing listens there: any request would fail
        moved = f"127.0.0.1:{down}/orders/app@{digest}"
        again = verify_image(moved, EXAMPLE, credentials=Credentials("u", "p"), cache_dir=cache)
    assert (again.manifest_digest, again.layer_digest, again.members) == (first.manifest_digest, first.layer_digest, first.members)
    # A cached manifest altered since (another valid manifest's bytes) is not trusted: the registry is asked.
    (cache / "sha256" / digest[7:]).write_bytes(b'{"schemaVersion":2,"layers":[]}')
    with pytest.raises(RegistryUnavailable, match="cannot be reached"):
        verify_image(f"127.0.0.1:{down}/orders/app@{digest}", EXAMPLE, credentials=Credentials("u", "p"), cache_dir=cache)
    assert verify_image(ref(registry, "orders/app", digest), EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=cache) == first


def test_a_tag_is_verified_as_the_digest_it_names_now(registry: Registry, tmp_path: Path) -> None:
    old = app_image(registry, "orders/tagged", release(tmp_path / "other.mda"))
    new = app_image(registry, "orders/tagged", EXAMPLE)
    tagged = f"{registry.host}/orders/tagged:1.4.2"
    body, _, _ = registry_manifest(registry, "orders/tagged", new)
    push_manifest(registry, "orders/tagged", json.loads(body), "application/vnd.oci.image.manifest.v1+json", tag="1.4.2")
    v = verify_image(tagged, EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c", allow_tag=True)
    assert (v.image, v.manifest_digest) == (tagged, new)
    body, _, _ = registry_manifest(registry, "orders/tagged", old)
    push_manifest(registry, "orders/tagged", json.loads(body), "application/vnd.oci.image.manifest.v1+json", tag="1.4.2")
    with pytest.raises(ImageMismatch, match=rf"image {old} holds model 1\.4\.3\.1301"):
        verify_image(tagged, EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c", allow_tag=True)
    with pytest.raises(UserError, match="names a tag"):
        verify_image(tagged, EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")


def test_a_tag_is_refused_before_any_request() -> None:
    with pytest.raises(UserError, match="names a tag"):
        verify_image("registry.example.com/orders/app:1.4.2", EXAMPLE)
    with pytest.raises(UserError, match="names no registry host"):
        verify_image(f"orders/app@sha256:{'a' * 64}", EXAMPLE)


@pytest.mark.slow
def test_a_large_layer_streams_in_flat_memory(registry: Registry, tmp_path: Path) -> None:
    size = 96 << 20
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:  # incompressible, so the layer is as large as the file
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    package = tmp_path / "big.mda"
    shutil.copy(EXAMPLE, package)
    with zipfile.ZipFile(package, "a", compression=zipfile.ZIP_STORED) as z:
        z.write(big, "model/resources/big.bin")
    files = mda_files(EXAMPLE)

    def stream() -> object:
        yield from files
        yield ("opt/mendix/build/model/resources/big.bin", big.read_bytes())

    layer_file = tmp_path / "layer.tar.gz"
    app_layer = layer_tar(stream(), dest=layer_file)  # type: ignore[arg-type]
    assert layer_file.stat().st_size > size
    digest = push_image(registry, "orders/big", [layer_tar(BASE_FILES), app_layer])
    del files
    tracemalloc.start()
    try:
        v = verify_image(ref(registry, "orders/big", digest), package, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert v.members == 10
    # The package's hash reads 16 MiB at a time (mxinfra.digest); the layer streams in 1 MiB chunks. Reading
    # either the 96 MiB layer or the 96 MiB package whole would pass the bound three times over.
    assert peak < 32 << 20, f"peak {peak >> 20} MiB while verifying a {size >> 20} MiB layer"


# ---- credentials ----------------------------------------------------------------------------------------


def test_docker_config_credentials(tmp_path: Path) -> None:
    import base64

    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "https://old.example.com/v1/": {"auth": base64.b64encode(b"ci:pa:ss").decode()},
                    "new.example.com:5000": {"username": "u", "password": "p"},
                },
                "credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"},
            }
        )
    )
    assert docker_credentials("old.example.com", cfg) == Credentials("ci", "pa:ss")
    assert docker_credentials("new.example.com:5000", cfg) == Credentials("u", "p")
    assert docker_credentials("other.example.com", cfg) is None
    with pytest.raises(RegistryAuthError, match="credential helper .ecr-login. .* not supported yet"):
        docker_credentials("123.dkr.ecr.eu-west-1.amazonaws.com", cfg)
    assert docker_credentials("x.example.com", tmp_path / "absent.json") is None
    assert "pa:ss" not in repr(Credentials("ci", "pa:ss"))


# ---- the command line ----------------------------------------------------------------------------------


def test_cli_verify(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    registry.docker_config(tmp_path / "docker" / "config.json")
    digest = app_image(registry, "orders/app", EXAMPLE)
    image = ref(registry, "orders/app", digest)
    ca = ["--ca-bundle", str(registry.ca)]

    assert main(["image", "verify", image, str(EXAMPLE), *ca]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"verified: image {digest} holds package sha256:") and f"model {MODEL_142}" in out
    assert (tmp_path / "cache" / "mxinfra" / "layers" / "sha256").is_dir()  # the default cache, under XDG_CACHE_HOME

    assert main(["image", "verify", image, str(release(tmp_path / "next.mda")), *ca]) == 2
    err = capsys.readouterr().err
    assert f"image {digest} holds model {MODEL_142} (ProjectID {PROJECT}), the package is 1.4.3.1301" in " ".join(err.split())

    registry.docker_config(tmp_path / "docker" / "config.json", password="wrong")
    # Everything of the image is cached by digest: nothing is asked of the registry, so no credential.
    assert main(["image", "verify", image, str(EXAMPLE), *ca]) == 0
    capsys.readouterr()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cold"))
    assert main(["image", "verify", image, str(EXAMPLE), *ca]) == 2
    assert "refused GET" in capsys.readouterr().err

    assert main(["image", "verify", image, str(EXAMPLE), *ca, "--json", "--docker-config", str(registry.docker_config(tmp_path / "ok.json"))]) == 0
    assert json.loads(capsys.readouterr().out)["manifest_digest"] == digest
