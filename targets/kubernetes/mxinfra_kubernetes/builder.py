"""What every object of an environment is created with: parent, provider, namespace ordering, secrets.

Imported only while deploying (it imports pulumi_kubernetes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mxinfra.environments import Secret
from mxinfra.target import EnvironmentContext

from .config import EnvironmentSettings
from .layout import POD_SECURITY_LABELS, Layout

# Secrets' keys are listed here (never their values) so a rendered manifest shows which keys exist:
# the provider wraps all of stringData as one secret, which hides the keys from a plan.
KEYS_ANNOTATION = "mxinfra.io/secret-keys"


def _echo_autoname(type_: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Under the mock runtime: the provider names an object given none (`<name>-<8 random>`); the echoed
    state gets the name `mxinfra plan` shows for it, its suffix marked as known only after apply."""
    meta = state.get("metadata")
    if type_.startswith("kubernetes:") and isinstance(meta, dict) and "name" not in meta:
        from .render import autoname

        state = {**state, "metadata": {**meta, "name": autoname(name)}}
    return state


def _register_echo_adjuster() -> None:
    from mxinfra.mockrun import add_echo_adjuster

    add_echo_adjuster(_echo_autoname)


_register_echo_adjuster()


def secret_input(value: Any) -> Any:
    """`value` as a Pulumi secret input (core Secret objects are revealed only into the secret Output)."""
    if isinstance(value, Secret):
        return pulumi.Output.secret(value.reveal())
    return pulumi.Output.secret(value)


@dataclass
class Builder:
    """Creates one environment's objects with the environment's options and layout."""

    ctx: EnvironmentContext
    settings: EnvironmentSettings
    layout: Layout
    provider: k8s.Provider | None = None
    namespace: k8s.core.v1.Namespace | None = None
    created: dict[str, Any] = field(default_factory=dict)

    def opts(self, *, protect_data: bool = False, kubernetes: bool = True, depends_on: list[Any] | None = None) -> pulumi.ResourceOptions:
        """Options of a child: parent = the environment; the configured provider; after the namespace."""
        kw: dict[str, Any] = {}
        if kubernetes and self.provider is not None:
            kw["provider"] = self.provider
        deps = list(depends_on or [])
        if kubernetes and self.namespace is not None:
            deps.append(self.namespace)
        if deps:
            kw["depends_on"] = deps
        return self.ctx.opts(protect_data=protect_data, **kw)

    def logical(self, kind: str) -> str:
        """The Pulumi name of the environment's `kind` object."""
        return self.ctx.naming.logical(kind)

    def make_namespace(self, *, holds_data: bool = False) -> None:
        """The environment's Namespace (unless an existing one is used): the standard labels and the
        `restricted` Pod Security level. Deleting a namespace deletes everything in it, so one that
        `holds_data` is protected on production like the data itself."""
        if not self.layout.create_namespace:
            return
        meta = self.layout.metadata(self.layout.namespace, namespaced=False, annotations=self.ctx.prepared.annotations)  # stable: a release never touches it
        meta["labels"] = dict(sorted({**meta["labels"], **POD_SECURITY_LABELS}.items()))
        self.namespace = k8s.core.v1.Namespace(self.logical("namespace"), metadata=meta, opts=self.opts(protect_data=holds_data))
        self.created["namespace"] = self.namespace

    def secret(self, kind: str, values: Mapping[str, Any], component: str = "runtime") -> k8s.core.v1.Secret:
        """An Opaque Secret whose every value is a Pulumi secret, named by the provider (see below)."""
        # No fixed name: the provider replaces a Secret whose data changes, and only an autonamed one
        # (`<app>-<env>-<kind>-<8 random>`) is replaced create-first. Everything that reads it takes
        # its name from `secret_name`, so a new value makes a new Secret, the pods roll onto it, and the
        # old one is deleted; a fixed name would be deleted first and the pods would keep the old value.
        res = k8s.core.v1.Secret(
            self.logical(kind),
            metadata=self.layout.metadata(None, component, per_release=False, annotations={KEYS_ANNOTATION: ",".join(sorted(values))}),
            type="Opaque",
            string_data={k: secret_input(v) for k, v in sorted(values.items())},
            opts=self.opts(),
        )
        self.created[kind] = res
        return res

    def secret_name(self, kind: str) -> pulumi.Output[str]:
        """The provider-assigned name of the environment's `kind` Secret."""
        return self.created[kind].metadata.apply(lambda m: m.get("name") if isinstance(m, Mapping) else m.name)
