"""The image that runs holds the package that is recorded: the rule `pulumi up`, `pulumi preview` and
`mxinfra plan` apply to every environment whose target runs the package from a container image
(Kubernetes in plain mode and the Operator's `oci-image://` sources, AWS, Azure; Cloud Foundry, and the
Operator from an MDA URL, run the MDA itself).

- `Check.REQUIRED` (the program under `pulumi up`): every such image is read from its registry (by its
  digest, or by the digest its tag names now) and compared with the package before any resource is
  declared. A mismatch, a tampered layer, or an image that cannot be read (registry down, credentials
  refused, no such manifest) stops the deployment as a config problem on the environment's image key.
- `Check.PREVIEW` (the program under `pulumi preview`) reads with the same credentials, and `Check.PLAN`
  (`mxinfra plan`, which must work offline and without a cloud login) with the Docker config's only;
  both say plainly which image was not verified and why, as a warning, and stop only on a mismatch or a
  tampered layer.

Credentials: the Docker config (`auths`, `credHelpers`, `credsStore`), then (not for the plan) whatever a
target registers for its cloud's registries (ECR's token, ACR's exchange): `mxinfra.registry_auth`. CA:
the host's in Docker's or containers' certs.d, else `REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE`
(`mxinfra.imagecheck.ca_bundle_for`).
A reference by digest whose manifest and layers are cached (`~/.cache/mxinfra/layers`) is verified with
no request at all, so a plan of an image verified before needs neither network nor credentials.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigIssue, UserError


class Check(enum.Enum):
    """How hard an image is checked: see the module docstring."""

    REQUIRED = "required"
    PREVIEW = "preview"
    PLAN = "plan"


@dataclass(frozen=True)
class Bound:
    """An environment's image verified against the package: what its activity record carries."""

    image: str  # as configured
    digest: str  # the platform manifest whose layers were compared
    index: str | None  # the manifest list it was picked from, if any
    layer: str  # the layer that holds the app
    members: int  # files compared

    def record(self) -> dict[str, Any]:
        """The activity record's `image` entry (signed with the record)."""
        out: dict[str, Any] = {"digest": self.digest, "layer": self.layer, "members": self.members, "verified": True}
        if self.index:
            out["index"] = self.index
        return out


@dataclass
class Binding:
    """Every environment's outcome: verified, or a warning why not, or a problem that stops the run."""

    bound: dict[str, Bound] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)


class _NotAsked(UserError):
    """The plan has no Docker credentials for a registry, so it does not ask it."""


# The plan prepares the stack, then runs the program, which prepares it again: within `planning()` the
# program checks as the plan does and an image is read once. Nowhere else is an outcome remembered (a
# registry that was down a minute ago may be up).
_seen: ContextVar[dict[tuple[str, str, Check], Bound | UserError] | None] = ContextVar("mxinfra_image_checks", default=None)
_planning: ContextVar[bool] = ContextVar("mxinfra_image_planning", default=False)


@contextlib.contextmanager
def planning() -> Iterator[None]:
    """Within this block (the plan) images are checked as `Check.PLAN`, each once."""
    seen, plan = _seen.set({}), _planning.set(True)
    try:
        yield
    finally:
        _seen.reset(seen)
        _planning.reset(plan)


def program_check(dry_run: bool) -> Check:
    """The check the program applies: the plan's within `planning()`, else the preview's or `pulumi up`'s."""
    if _planning.get():
        return Check.PLAN
    return Check.PREVIEW if dry_run else Check.REQUIRED


def _lookup(mode: Check) -> Callable[[str], Any]:
    from .registry_auth import credentials_for, docker_config_credentials

    if mode is not Check.PLAN:
        return credentials_for  # the Docker config, then the installed targets' (ECR, ACR)

    def docker_only(host: str) -> Any:
        found = docker_config_credentials(host)
        if found is None:
            where = "$DOCKER_CONFIG/config.json" if os.environ.get("DOCKER_CONFIG") else "~/.docker/config.json"
            raise _NotAsked(
                f"the plan has no credentials for {host} in {where} and does not ask it "
                f"(`docker login {host}`, or a credHelpers entry, lets it); `pulumi up` verifies it"
            )
        return found

    return docker_only


def bind_images(
    images: Mapping[str, tuple[str, str]],
    package: Path,
    package_sha256: str,
    mode: Check,
    file: str = "",
    opened: Any = None,
) -> Binding:
    """Verify each environment's image (`env -> (image reference, its config key)`) against the package
    (`opened`: the MdaPackage the caller already read, so it is not hashed twice)."""
    from .imagecheck import ImageMismatch, verify_image
    from .registry import DigestMismatch

    out = Binding()
    seen = _seen.get()
    if seen is None:
        seen = {}  # this call only: environments that run one image read it once
    for env, (image, key) in images.items():
        memo = (image, package_sha256, mode)
        result = seen.get(memo)
        if result is None:
            try:
                v = verify_image(image, package, allow_tag=True, lookup=_lookup(mode), package=opened)
                result = Bound(image, v.manifest_digest, v.index_digest, v.layer_digest, v.members)
            except UserError as exc:  # RegistryError, ImageMismatch and a reference that cannot be read
                result = exc
            seen[memo] = result
        if isinstance(result, Bound):
            out.bound[env] = result
            if "@sha256:" not in image:
                out.warnings.setdefault(env, []).append(
                    f"image {image} was verified as {result.digest}, the digest its tag names now; the tag can "
                    "move before the runtime pulls it: pin the image by digest"
                )
            continue
        refused = isinstance(result, (ImageMismatch, DigestMismatch)) or mode is Check.REQUIRED
        if refused:
            out.issues.append(ConfigIssue(key, f"environment {env!r}: {result}", _fix(result, registry_of(image)), file))
        else:
            out.warnings.setdefault(env, []).append(f"image {image} was not verified against the package: {result}")
    return out


def registry_of(image: str) -> str:
    """The registry host of an image reference (its first component)."""
    from .artifacts import OCI_SCHEME

    ref = image[len(OCI_SCHEME) :] if image.startswith(OCI_SCHEME) else image
    return ref.split("/", 1)[0]


def _fix(exc: UserError, registry: str) -> str:
    from .imagecheck import ImageMismatch
    from .registry import DigestMismatch, RegistryAuthError, RegistryUnavailable

    if isinstance(exc, ImageMismatch):
        return (
            "deploy the package the image was built from, or an image built from this package "
            "(`mxinfra image build --base <runtime image> --package <mda> --push <repository>` prints its digest)"
        )
    if isinstance(exc, DigestMismatch):
        return "the registry serves other bytes than the digest names: report it to the registry's owner; nothing was deployed"
    if isinstance(exc, RegistryAuthError):
        return f"log in to {registry} with credentials that may pull the image (`docker login {registry}`, or your cloud's login)"
    if isinstance(exc, RegistryUnavailable):
        return f"make {registry} reachable from here (a private CA in ~/.config/containers/certs.d/{registry}/ca.crt); `pulumi up` verifies every image before it changes anything"
    return "give the image as registry/repository@sha256:<digest>, pushed to that registry"
