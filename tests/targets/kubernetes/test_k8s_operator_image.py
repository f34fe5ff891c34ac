"""Operator mode's `oci-image://` sourceURL is the image the Mendix Operator runs: it must hold the package
the activity log records, as plain mode's `image` must (tests/test_image_binding.py).

The bundled operator stack (an acceptance environment), copied, with its sourceURL pointed at a real
distribution registry on loopback (tests/registry.py: TLS, basic auth) holding images made here from the
example package and from its next release. Without this check an acceptance stack could record package X
with an image built from package Z, and `mxinfra promote` would carry both to production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import RunError
from registry import Registry, docker_user, example_and_next, registry  # noqa: F401 (the fixture)
from scaffold import copy_example

from mxinfra.cli import main
from mxinfra.deployment import prepare
from mxinfra.errors import ConfigError
from mxinfra.imagebinding import Check
from mxinfra.program import run
from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config

STACK = ENV = "operator"  # the bundled operator stack's environment (role acceptance)
KEY = "mxinfra:kubernetes.operator.sourceURL"
OVERRIDE_KEY = f"mxinfra:kubernetes.environments.{ENV}.operator.sourceURL"
ACTIVITY = "pulumi-python:dynamic:Resource"


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example's image and the next release's (model 1.4.3.1301), by digest, without the scheme."""
    return example_and_next(registry, tmp_path_factory, "orders/operator-app")


@pytest.fixture
def user(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with the registry's credentials in their Docker config, its CA trusted, an empty layer cache."""
    return docker_user(registry, tmp_path, monkeypatch)


def project_with(tmp_path: Path, source: str, *, override: bool = False) -> Path:
    """The example project with the operator stack's sourceURL set to `source` (with `override`: in an
    `environments.operator.operator` entry, the block's own left as it is)."""
    project = copy_example(tmp_path / "project")
    path = project / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    block = doc["config"]["mxinfra:kubernetes"]
    if override:
        block["environments"] = {ENV: {"operator": {**block["operator"], "sourceURL": source}}}
    else:
        block["operator"]["sourceURL"] = source
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return project


def plan_json(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["plan", "-s", STACK, "-C", str(project), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def activity_inputs(plan: dict[str, Any]) -> dict[str, Any]:
    [found] = [r for r in plan["resources"] if r["type"] == ACTIVITY and r["name"].endswith(f"-{ENV}-activity")]
    return found["inputs"]


def warnings_of(plan: dict[str, Any]) -> list[str]:
    return next(e["warnings"] for e in plan["environments"] if e["name"] == ENV)


def up(project: Path, pulumi_run: Any) -> Any:
    """The program as `pulumi up` runs it (not a preview)."""
    raw = read_stack_config(read_project(project), STACK)
    config, secret_keys = as_pulumi_config(raw)
    return pulumi_run(lambda: run(project), config=config, secret_keys=secret_keys, stack=STACK, project="orders", preview=False)


def prepared_as_up(project: Path) -> Any:
    """The stack prepared as `pulumi up` prepares it (every image verified, fail closed)."""
    raw = read_stack_config(read_project(project), STACK)
    return prepare(raw, project="orders", stack=STACK, base_dir=project, images=Check.REQUIRED)


def test_an_oci_image_that_holds_the_package_is_verified_and_recorded(images: dict[str, str], user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = f"oci-image://{images['example']}"
    project = project_with(tmp_path, source)
    code, plan, err = plan_json(project, capsys)
    assert code == 0, err
    assert not [w for w in warnings_of(plan) if "image" in w], warnings_of(plan)
    inputs = activity_inputs(plan)
    assert inputs["artifact"] == source  # what promotion compares and carries: the sourceURL as configured
    record = inputs["image"]
    assert record["digest"] == images["example"].split("@")[1] and record["verified"] is True
    assert record["layer"].startswith("sha256:") and record["members"] >= 3
    # `pulumi up`'s own preparation verifies it too, fail closed, and binds it to the environment
    verified = prepared_as_up(project).environment(ENV).image
    assert verified is not None and (verified.image, verified.digest) == (images["example"], images["example"].split("@")[1])


@pytest.mark.parametrize("override", [False, True], ids=["block", "environment-override"])
def test_an_oci_image_of_another_model_is_refused_naming_the_source_url_key(override: bool, images: dict[str, str], user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with(tmp_path, f"oci-image://{images['next']}", override=override)
    key = OVERRIDE_KEY if override else KEY
    digest = images["next"].split("@")[1]
    code, _, err = plan_json(project, capsys)
    said = " ".join(err.split())
    assert code == 2, said
    assert key in said and f"environment '{ENV}'" in said, said
    assert f"image {digest} holds model 1.4.3.1301" in said and "the package is 1.4.2.1234" in said, said
    assert "Traceback" not in err
    with pytest.raises(ConfigError) as refused:
        prepared_as_up(project)
    [issue] = refused.value.issues
    assert issue.path == key and f"image {digest} holds model 1.4.3.1301" in issue.message


def test_pulumi_up_refuses_an_oci_image_of_another_model(images: dict[str, str], user: Path, tmp_path: Path, pulumi_run: Any) -> None:
    project = project_with(tmp_path, f"oci-image://{images['next']}")
    with pytest.raises(RunError) as refused:
        up(project, pulumi_run)
    said = " ".join(str(refused.value).split())
    assert KEY in said, said
    assert f"image {images['next'].split('@')[1]} holds model 1.4.3.1301" in said and "the package is 1.4.2.1234" in said, said


def test_an_https_source_url_below_production_is_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An MDA the Operator downloads is no image: nothing is read from a registry, the plan does not warn
    about an image and the record carries none (as before); `pulumi up`'s preparation binds none."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nobody"))  # no credentials: a check would warn or fail
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = copy_example(tmp_path / "project")  # the bundled operator stack: sourceURL https://...mda
    source = yaml.safe_load((project / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]["mxinfra:kubernetes"]["operator"]["sourceURL"]
    assert source.startswith("https://")
    code, plan, err = plan_json(project, capsys)
    assert code == 0, err
    assert not [w for w in warnings_of(plan) if "image" in w], warnings_of(plan)
    assert "image" not in activity_inputs(plan) and activity_inputs(plan)["artifact"] == source
    assert prepared_as_up(project).environment(ENV).image is None


def test_app_image_is_the_oci_reference_without_its_scheme_and_none_for_an_mda_url() -> None:
    from mxinfra.environments import Environment, Role

    from mxinfra_kubernetes import target
    from mxinfra_kubernetes.config import KubernetesConfig

    ref = "registry.example.com/orders/app@sha256:" + "ab" * 32
    plans = {"databasePlan": "p", "storagePlan": "s"}
    block = KubernetesConfig.model_validate(
        {
            "mode": "operator",
            "image": "ignored.example.com/a:1",
            "operator": {"sourceURL": f"oci-image://{ref}", **plans},
            "environments": {"b": {"operator": {"sourceURL": "https://x.example.com/a.mda", **plans}}},
        }
    )
    assert target.app_image(Environment("a", Role.ACCEPTANCE), block) == ref
    assert target.app_image(Environment("b", Role.TEST), block) is None
    assert target.app_image(Environment("a", Role.ACCEPTANCE), None) is None
    plain = KubernetesConfig.model_validate({"image": ref})
    assert target.app_image(Environment("a", Role.TEST), plain) == ref
