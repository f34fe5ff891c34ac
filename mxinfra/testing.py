"""A pytest plugin for mxinfra and its targets: run a program or component under the mock runtime
and assert on every resource it registered (type, name, parent, inputs, options).

    def test_bucket(pulumi_run):
        res = pulumi_run(lambda: MyComponent("x", {...}))
        bucket = res.one("aws:s3/bucketV2:BucketV2", "x-files")
        assert bucket.parent == res.one("my:index:MyComponent").urn
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from .mockrun import Computed, Registration, Sealed, public, reveal

__all__ = ["Computed", "Resources", "Sealed", "engine_secrets", "public", "registered_target", "reveal", "walk_inputs"]


class Resources(list):
    """The registrations of one mock run, with finders that fail with a readable listing."""

    warnings: list[str]

    def of_type(self, type_: str) -> list[Registration]:
        """Every registration of `type_`."""
        return [r for r in self if r.type == type_]

    def named(self, name: str) -> Registration:
        """The one registration called `name`."""
        found = [r for r in self if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name!r}, found {len(found)}:\n{self.listing()}")
        return found[0]

    def one(self, type_: str, name: str | None = None) -> Registration:
        """The one registration of `type_` (and `name`, if given)."""
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {type_} {name or ''}, found {len(found)}:\n{self.listing()}")
        return found[0]

    def children(self, parent: Registration) -> list[Registration]:
        """Direct children of `parent`."""
        return [r for r in self if r.parent == parent.urn]

    def descendants(self, parent: Registration) -> list[Registration]:
        """Every registration below `parent`."""
        out, frontier = [], [parent.urn]
        while frontier:
            kids = [r for r in self if r.parent in frontier]
            out += kids
            frontier = [k.urn for k in kids]
        return out

    def listing(self) -> str:
        """One line per registration: type and name."""
        return "\n".join(f"  {r.type} {r.name}" for r in self)


def walk_inputs(value: Any) -> Iterator[Any]:
    """Every key and leaf of a nested structure of inputs, secrets unwrapped (to look for a value)."""
    if isinstance(value, Sealed):
        yield from walk_inputs(value.value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from walk_inputs(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_inputs(v)
    else:
        yield value


@contextlib.contextmanager
def engine_secrets(*keys: str) -> Iterator[None]:
    """Within this block `mxinfra plan` reads a stack's config as the engine hands it to a program:
    `keys` (config keys or paths) are secrets, as if set with `pulumi config set --secret`, although
    the stack file holds them in plain text (so a test knows the values it looks for in the output)."""
    from dataclasses import replace

    from . import plan, stackfile

    real = stackfile.read_stack_config
    original = plan.read_stack_config

    def read(project: Any, stack: str) -> Any:
        return replace(real(project, stack), secret_paths=frozenset(keys))

    plan.read_stack_config = read
    try:
        yield
    finally:
        plan.read_stack_config = original


@contextlib.contextmanager
def registered_target(target: Any) -> Iterator[Any]:
    """Make `target` loadable by name for the duration of a test."""
    from .target import register_target, unregister_target

    register_target(target)
    try:
        yield target
    finally:
        unregister_target(target.name)


@pytest.fixture
def pulumi_run() -> Callable[..., Resources]:
    """Run a callable under the mock runtime: pulumi_run(program, config=, stack=, project=, preview=, outputs=)."""
    from .mockrun import run_mocked

    def run(
        program: Callable[[], Any],
        *,
        config: Mapping[str, str] | None = None,
        secret_keys: list[str] | None = None,
        stack: str = "test",
        project: str = "test",
        preview: bool = True,
        outputs: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> Resources:
        result = run_mocked(program, project=project, stack=stack, config=config, secret_keys=secret_keys, preview=preview, outputs=outputs)
        res = Resources(result.registrations)
        res.warnings = result.warnings
        return res

    return run
