"""Running a Pulumi program under the SDK's mock runtime and recording every registration.

Used by `mxinfra plan` and by the test harness (`mxinfra.testing`): no engine, no plugins, no cloud.
Runs as a preview, so nothing that only happens on `pulumi up` (dynamic providers, applies on values
only the cloud knows) runs here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime import settings as settings_module
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

COMPUTED = "[computed]"
SECRET = "[secret]"


class Sealed:
    """A secret input as the engine would receive it; tests can assert on `.value`, output shows [secret]."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Sealed([secret])"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.value == self.value


class Computed:
    """A value only the cloud would know (unknown during a preview)."""

    def __repr__(self) -> str:
        return "Computed()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Computed)

    def __hash__(self) -> int:
        return 0


def _inputs(value: Any) -> Any:
    """A request's properties with each secret where the program put it.

    The SDK's own deserializer lifts a nested secret to the top-level property (a MendixApp spec with
    one secret field would read as an all-secret spec); the engine keeps it nested, and so does this.
    """
    if isinstance(value, struct_pb2.Struct):
        sig = value.fields.get(rpc._special_sig_key)
        if sig is not None and sig.string_value == rpc._special_secret_sig:
            return rpc.wrap_rpc_secret(_inputs(value["value"]))
        if sig is not None:  # assets, archives, resource references: as the SDK reads them
            return rpc.deserialize_properties(value, keep_unknowns=True)
        return {k: v for k, v in ((k, _inputs(v)) for k, v in value.items()) if v is not None}
    if isinstance(value, struct_pb2.ListValue):
        return [_inputs(v) for v in value]
    return rpc.deserialize_property(value, keep_unknowns=True)


def _convert(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return Sealed(_convert(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, pulumi.output.Unknown) or value == rpc.UNKNOWN:
        return Computed()
    if isinstance(value, dict):
        return {k: _convert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # The wire format carries every number as a double; integral ones read back as int.
        return int(value)
    return value


def public(value: Any) -> Any:
    """`value` with secrets as "[secret]" and unknowns as "[computed]": safe to print and write."""
    if isinstance(value, Sealed):
        return SECRET
    if isinstance(value, Computed):
        return COMPUTED
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return "[resource]"
    return value


def reveal(value: Any) -> Any:
    """`value` with secrets unwrapped (unknowns stay Computed): for tests that check a secret's content."""
    if isinstance(value, Sealed):
        return reveal(value.value)
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


@dataclass
class Registration:
    """One resource the program registered, as the engine would have received it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    provider: str = ""
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # the URNs the resource was known by (alias specs resolved)

    def input(self, path: str, default: Any = KeyError) -> Any:
        """The input at a dotted path (`spec.template.spec`), list indexes as numbers."""
        cur: Any = self.inputs
        for part in path.split("."):
            try:
                cur = cur[int(part)] if isinstance(cur, list) else cur[part]
            except (KeyError, IndexError, ValueError, TypeError):
                if default is KeyError:
                    raise KeyError(f"{self.type} {self.name}: no input {path!r}") from None
                return default
            if isinstance(cur, Sealed):
                cur = cur.value
        return cur


CloudOutputs = Callable[[pulumi_mocks.MockResourceArgs], Mapping[str, Any]]
# Echo adjusters: a provider whose outputs differ in shape from its inputs (a list of ids in, a map out),
# or that fills in what was left out (a name it generates), registers one, so that echoing the inputs
# back as state stays what its SDK's output types and the program expect.
_ECHO_ADJUSTERS: list[Callable[[str, str, dict[str, Any]], dict[str, Any]]] = []


def add_echo_adjuster(adjust: Callable[[str, str, dict[str, Any]], dict[str, Any]]) -> None:
    """Register `adjust(type, name, state) -> state`, applied to every echoed state before test outputs."""
    if adjust not in _ECHO_ADJUSTERS:
        _ECHO_ADJUSTERS.append(adjust)


class _Mocks(pulumi_mocks.Mocks):
    def __init__(self, call: Callable[[pulumi_mocks.MockCallArgs], Mapping[str, Any]] | None, outputs: CloudOutputs | None) -> None:
        self._call = call
        self._outputs = outputs

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        # The inputs come back as state: what a provider would echo. Everything else is unknown,
        # unless a test plays the cloud and supplies outputs (ARNs, endpoints) itself.
        state = dict(args.inputs)
        for adjust in _ECHO_ADJUSTERS:
            state = adjust(args.typ, args.name, state)
        if self._outputs is not None:
            state.update(self._outputs(args))
        return f"{args.name}-id", state

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list | None]:
        # The SDK iterates the failures: an empty list, not None (which fails every invoke).
        return (dict(self._call(args)) if self._call else {}), []


class _Recorder(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _convert(_inputs(request.object))
            if "__provider" in inputs:
                # A dynamic resource's pickled provider: code, not configuration.
                inputs["__provider"] = "[dynamic provider]"
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=inputs,
                    provider=request.provider,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    ignore_changes=list(request.ignoreChanges),
                    dependencies=list(request.dependencies),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    replace_on_changes=list(request.replaceOnChanges),
                    aliases=[*request.aliasURNs, *(_alias_urn(a, request) for a in request.aliases)],
                )
            )
        return response


def _alias_urn(alias: Any, request: Any) -> str:
    """An alias spec as `<type>::<name>` (what the engine turns into a URN), or its URN."""
    if alias.WhichOneof("alias") == "urn":
        return str(alias.urn)
    spec = alias.spec
    return f"{spec.type or request.type}::{spec.name or request.name}"


@dataclass
class MockRun:
    """Everything one mock run produced."""

    registrations: list[Registration]
    warnings: list[str]


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_mocked(
    program: Callable[[], Any],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
    call: Callable[[pulumi_mocks.MockCallArgs], Mapping[str, Any]] | None = None,
    outputs: CloudOutputs | None = None,
    preview: bool = True,
) -> MockRun:
    """Run `program` under the mock runtime (a preview unless preview=False) and return what it registered.

    `outputs(args)` adds what the cloud would return for a resource (used with preview=False to see
    inputs that depend on ARNs or endpoints with known values).
    """
    recorder = _Recorder(_Mocks(call, outputs))
    logger = logging.getLogger(f"mxinfra.mockrun.{id(recorder)}")
    logger.propagate = False
    collector = _WarningCollector()
    logger.addHandler(collector)
    # Each run gets its own root Stack resource (named after this run's project and stack).
    settings_module.ROOT.set(None)
    pulumi_mocks.set_mocks(recorder.mocks, project=project, stack=stack, preview=preview, logger=logger, monitor=recorder)
    set_all_config(dict(config or {}), list(secret_keys or []))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    def body() -> None:
        program()

    _sync_await(run_pulumi_func(body))
    return MockRun(recorder.registrations, collector.messages)
