"""`mxinfra image build`: the base image plus one layer with the package where the Docker buildpack
puts it, pushed to a real registry and read back by the verification (independent test helpers push the base)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry import BASE_FILES, Registry, layer_tar, push_image, registry  # noqa: F401 (the fixture)
from test_image import EXAMPLE, MODEL_142, creds, release

from mxinfra.cli import main
from mxinfra.image import build_image
from mxinfra.imagecheck import ImageMismatch, verify_image
from mxinfra.mda import open_mda


def test_cli_build_pushes_an_image_that_verifies(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = registry.docker_config(tmp_path / "docker.json")
    base = push_image(registry, "runtime/base", [layer_tar(BASE_FILES)], labels={"org.opencontainers.image.vendor": "base"})
    args = ["image", "build", "--base", f"{registry.host}/runtime/base@{base}", "--package", str(EXAMPLE),
            "--push", f"{registry.host}/orders/built:1.4.2", "--ca-bundle", str(registry.ca), "--docker-config", str(config)]
    assert main(args) == 0
    out = capsys.readouterr()
    pushed = out.out.strip()
    assert pushed.startswith(f"{registry.host}/orders/built@sha256:") and "pushed and verified" in out.err

    v = verify_image(pushed, EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    assert v.model_version == MODEL_142 and v.members == 9
    sha = open_mda(EXAMPLE).sha256()
    assert v.labels["mxinfra.package-sha256"] == sha and v.labels["mxinfra.model-version"] == MODEL_142
    assert v.labels["org.opencontainers.image.version"] == MODEL_142
    assert v.labels["org.opencontainers.image.base.digest"] == base
    assert v.labels["org.opencontainers.image.vendor"] == "base"  # the base's labels are kept

    with registry.session() as s:  # the tag names the pushed manifest, which keeps the base layer
        r = s.get(f"https://{registry.host}/v2/orders/built/manifests/1.4.2", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert "sha256:" + __import__("hashlib").sha256(r.content).hexdigest() == pushed.split("@")[1]
        layers = json.loads(r.content)["layers"]
        assert len(layers) == 2 and layers[0]["digest"] == layer_tar(BASE_FILES)[1]

    # The same package on the same base is the same image.
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == pushed


def test_build_puts_that_package_in_the_image(registry: Registry, tmp_path: Path) -> None:
    base = push_image(registry, "runtime/base", [layer_tar(BASE_FILES)])
    nxt = release(tmp_path / "orders-1.4.3.mda")
    pushed = build_image(f"{registry.host}/runtime/base@{base}", nxt, f"{registry.host}/orders/built", credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
    assert verify_image(pushed, nxt, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c").model_version == "1.4.3.1301"
    with pytest.raises(ImageMismatch, match=rf"image {pushed.split('@')[1]} holds model 1.4.3.1301 .*the package is {MODEL_142}"):
        verify_image(pushed, EXAMPLE, credentials=creds(registry), ca_bundle=registry.ca, cache_dir=tmp_path / "c")
