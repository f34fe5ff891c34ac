"""One strict base model for every config block (issue 19): each pydantic model of the core and of every
installed target derives from `mxinfra.schema.StrictModel`, so an unknown key is refused everywhere, the
same way, and a block cannot be changed once validated."""

from __future__ import annotations

import importlib
import pkgutil

import pydantic
import pytest

from mxinfra.schema import StrictModel
from mxinfra.target import KNOWN_DISTRIBUTIONS, installed_targets, load_target

PACKAGES = ["mxinfra", *sorted({type(load_target(n)).__module__.split(".")[0] for n in installed_targets() if n in KNOWN_DISTRIBUTIONS})]


def _models(package: str) -> list[type[pydantic.BaseModel]]:
    root = importlib.import_module(package)
    found: list[type[pydantic.BaseModel]] = []
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, pydantic.BaseModel) and value.__module__ == module.__name__:
                found.append(value)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_config_model_is_strict(package: str) -> None:
    models = _models(package)
    assert models, f"{package}: no config model found (is the walk broken?)"
    loose = sorted(f"{m.__module__}.{m.__qualname__}" for m in models if m is not StrictModel and not issubclass(m, StrictModel))
    assert loose == [], f"derive these from mxinfra.schema.StrictModel: {loose}"
    for m in models:
        assert m.model_config.get("extra") == "forbid" and m.model_config.get("frozen") is True, m
