"""Issue 20: the image that runs holds the package that is recorded, on every target that runs an image.

The bundled stacks of Kubernetes (plain), AWS and Azure, copied, with their image pointed at a real
distribution registry on loopback (tests/registry.py: TLS, basic auth) holding images made here from the
example package and from its next release. `mxinfra plan` verifies with the Docker config's credentials
and warns when it cannot; the program under `pulumi up` (the mock runtime with preview off: the program's
own code path, no engine) refuses before declaring anything when the image holds another model or cannot
be read, and the activity record carries what was verified.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import RunError
from registry import Registry, docker_user, example_and_next, registry  # noqa: F401 (the fixture)
from scaffold import copy_example

from mxinfra.cli import main
from mxinfra.deployment import prepare
from mxinfra.imagebinding import Check
from mxinfra.program import run
from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config

# stack -> the image's config key (block, key)
STACKS = {"test": ("mxinfra:kubernetes", "image"), "aws-test": ("mxinfra:aws", "image"), "azure-test": ("mxinfra:azure", "image")}
ACTIVITY = "pulumi-python:dynamic:Resource"


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example's image and the next release's (model 1.4.3.1301), by digest."""
    return example_and_next(registry, tmp_path_factory, "orders/app")


@pytest.fixture
def user(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with the registry's credentials in their Docker config, its CA trusted, an empty layer cache."""
    return docker_user(registry, tmp_path, monkeypatch)


def project_with(tmp_path: Path, stack: str, image: str) -> Path:
    """The example project with `stack`'s image set to `image`."""
    project = copy_example(tmp_path / "project")
    path = project / "stacks" / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    block, key = STACKS[stack]
    doc["config"][block][key] = image
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return project


def plan_json(project: Path, stack: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["plan", "-s", stack, "-C", str(project), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def activity_inputs(plan: dict[str, Any], env: str) -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["type"] == ACTIVITY and r["name"].endswith(f"-{env}-activity")]
    return found["inputs"]


def warnings_of(plan: dict[str, Any], env: str) -> list[str]:
    return next(e["warnings"] for e in plan["environments"] if e["name"] == env)


def up(project: Path, stack: str, pulumi_run: Any) -> Any:
    """The program as `pulumi up` runs it (not a preview)."""
    raw = read_stack_config(read_project(project), stack)
    config, secret_keys = as_pulumi_config(raw)
    return pulumi_run(lambda: run(project), config=config, secret_keys=secret_keys, stack=stack, project="orders", preview=False)


@pytest.mark.parametrize("stack", list(STACKS))
def test_the_plan_verifies_the_image_and_the_record_carries_it(stack: str, images: dict[str, str], user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with(tmp_path, stack, images["example"])
    code, plan, err = plan_json(project, stack, capsys)
    assert code == 0, err
    assert not [w for w in warnings_of(plan, "test") if "image" in w], warnings_of(plan, "test")
    record = activity_inputs(plan, "test")["image"]
    assert record["digest"] == images["example"].split("@")[1] and record["verified"] is True
    assert record["layer"].startswith("sha256:") and record["members"] >= 3


@pytest.mark.parametrize("stack", list(STACKS))
def test_an_image_of_another_model_is_refused_naming_both(stack: str, images: dict[str, str], user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with(tmp_path, stack, images["next"])
    code, _, err = plan_json(project, stack, capsys)
    said = " ".join(err.split())
    block, key = STACKS[stack]
    digest = images["next"].split("@")[1]
    assert code == 2, said
    assert f"{block}.{key}" in said and "environment 'test'" in said
    assert f"image {digest} holds model 1.4.3.1301" in said and "the package is 1.4.2.1234" in said, said
    assert "Traceback" not in err


def test_without_credentials_the_plan_says_the_image_was_not_verified(images: dict[str, str], registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nobody"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(registry.ca))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = project_with(tmp_path, "test", images["next"])  # another model: the plan cannot know
    code, plan, err = plan_json(project, "test", capsys)
    assert code == 0, err
    [warning] = [w for w in warnings_of(plan, "test") if "image" in w]
    assert f"image {images['next']} was not verified against the package" in warning
    assert f"no credentials for {registry.host}" in warning and "`pulumi up` verifies it" in warning
    assert "image" not in activity_inputs(plan, "test")


def test_an_image_verified_before_is_verified_again_offline(images: dict[str, str], user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with(tmp_path, "test", images["example"])
    assert plan_json(project, "test", capsys)[0] == 0
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nobody"))  # no credentials now
    code, plan, err = plan_json(project, "test", capsys)
    assert code == 0, err
    assert activity_inputs(plan, "test")["image"]["digest"] == images["example"].split("@")[1]


@pytest.mark.parametrize("stack", list(STACKS))
def test_pulumi_up_refuses_an_image_of_another_model(stack: str, images: dict[str, str], user: Path, tmp_path: Path, pulumi_run: Any) -> None:
    project = project_with(tmp_path, stack, images["next"])
    with pytest.raises(RunError) as refused:
        up(project, stack, pulumi_run)
    said = " ".join(str(refused.value).split())
    assert f"image {images['next'].split('@')[1]} holds model 1.4.3.1301" in said and "the package is 1.4.2.1234" in said


@pytest.mark.parametrize("stack", list(STACKS))
def test_pulumi_up_refuses_an_image_it_cannot_read(stack: str, user: Path, tmp_path: Path, pulumi_run: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens: the registry is down
        project = project_with(tmp_path, stack, f"127.0.0.1:{port}/orders/app@sha256:{'a' * 64}")
        with pytest.raises(RunError) as refused:
            up(project, stack, pulumi_run)
    said = " ".join(str(refused.value).split())
    block, key = STACKS[stack]
    assert f"{block}.{key}" in said and f"registry 127.0.0.1:{port} cannot be reached" in said, said


def test_what_pulumi_up_verified_is_what_the_record_carries(images: dict[str, str], user: Path, tmp_path: Path, pulumi_run: Any) -> None:
    project = project_with(tmp_path, "test", images["example"])
    raw = read_stack_config(read_project(project), "test")
    verified = prepare(raw, project="orders", stack="test", base_dir=project, images=Check.REQUIRED).environment("test").image
    assert (verified.image, verified.digest) == (images["example"], images["example"].split("@")[1])
    # The program (a preview here: the mock runtime cannot answer every output an update needs) hands it to the record.
    config, secret_keys = as_pulumi_config(raw)
    res = pulumi_run(lambda: run(project), config=config, secret_keys=secret_keys, stack="test", project="orders")
    [activity] = [r for r in res if r.type == ACTIVITY and r.name == "orders-test-activity"]
    assert activity.inputs["image"] == verified.record()
    assert activity.inputs["artifact"] == images["example"]


def test_a_tag_is_verified_as_its_digest_and_the_plan_says_it_can_move(images: dict[str, str], registry: Registry, user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = images["example"].split("@")[1]
    with registry.session() as s:
        body = s.get(f"https://{registry.host}/v2/orders/app/manifests/{digest}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
        assert s.put(f"https://{registry.host}/v2/orders/app/manifests/1.4.2", data=body, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).status_code == 201
    project = project_with(tmp_path, "test", f"{registry.host}/orders/app:1.4.2")
    code, plan, err = plan_json(project, "test", capsys)
    assert code == 0, err
    assert activity_inputs(plan, "test")["image"]["digest"] == digest
    assert any(f"was verified as {digest}, the digest its tag names now" in w and "pin the image by digest" in w for w in warnings_of(plan, "test"))
