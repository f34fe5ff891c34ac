"""What runs besides the package: container image references and package URLs, and the rule that what
runs on production (and on any promotion-gated environment) is exactly what was reviewed. Pure.

Tags (`orders:1.4.2`) and URLs (`https://.../orders-1.4.2.mda`) are mutable: whoever can push to the
registry or the web server changes what a gated environment runs after its promotion. A digest
(`@sha256:<64 hex>`) names the bytes themselves, and the container runtime verifies them on pull, so the
activity log records, and staged promotion compares, the bytes that were reviewed.

Every target calls `check_artifact` from its `check`, and may use `parse_image` to validate a reference
(and, for its registry, the repository name) before building policies from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .environments import Environment
from .errors import ConfigIssue

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
URL_DIGEST = re.compile(r"sha256=(?P<hex>[0-9a-f]{64})")  # the fragment that pins a downloaded file
OCI_SCHEME = "oci-image://"
# The reference grammar of the OCI distribution spec (github.com/distribution/reference), applied with
# fullmatch: a registry host (with optional port), a repository of lowercase path components, then an
# optional tag and an optional digest. No wildcard, blank or control character can pass.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_REMAINDER = re.compile(rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?", re.ASCII)
_REGISTRY = re.compile(_DOMAIN, re.ASCII)


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None


def parse_image(reference: str) -> ImageReference | None:
    """The parts of an image reference, or None when it is not one (wildcards, blanks, upper case repository...)."""
    registry = None
    rest = reference
    first, sep, tail = reference.partition("/")
    # The first component names a registry only if it looks like a host (distribution/reference's rule).
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _REGISTRY.fullmatch(first):
            return None
        registry, rest = first, tail
    m = _REMAINDER.fullmatch(rest)
    if m is None:
        return None
    return ImageReference(registry, m["repository"], m["tag"], m["digest"])


def digest_of(artifact: str | None) -> str | None:
    """The `sha256:...` digest an artifact (an image reference or an `oci-image://` source) pins, if any."""
    if not artifact:
        return None
    ref = artifact[len(OCI_SCHEME) :] if artifact.startswith(OCI_SCHEME) else artifact
    parsed = parse_image(ref)
    return parsed.digest if parsed is not None else None


def requires_digest(env: Environment) -> bool:
    """Production and every promotion-gated environment run only digest-pinned artifacts."""
    return env.is_production or env.require_promotion_from is not None


def check_artifact(env: Environment, artifact: str | None, path: str, file: str = "", *, kind: str = "image", platform: str = "the platform") -> list[ConfigIssue]:
    """The config problems of `artifact` (at config key `path`) for `env`.

    `kind` is "image" (a container image reference), "source" (a package source such as the Mendix
    Operator's `sourceURL`: an `oci-image://` reference, or a URL whose content nothing verifies) or "url"
    (a download the target verifies against the `#sha256=<64 hex>` the URL carries, such as Cloud Foundry's
    buildpack; `platform` names who would otherwise download it unverified).
    """
    if artifact is None or not requires_digest(env):
        return []
    why = "production" if env.is_production else f"promotion-gated (from {env.require_promotion_from})"
    if kind == "url":
        _, sep, fragment = artifact.partition("#")
        if sep and URL_DIGEST.fullmatch(fragment):
            return []
        return [
            ConfigIssue(
                path,
                f"environment {env.name!r} is {why}: {artifact!r} is a mutable URL (a release asset can be deleted and uploaded again) and {platform} does not verify what it downloads",
                f"pin its bytes: append the file's digest, ...#sha256=<64 hex> (sha256sum FILE); mxinfra checks the download against it before every use",
                file,
            )
        ]
    if kind == "source" and not artifact.startswith(OCI_SCHEME):
        return [
            ConfigIssue(
                path,
                f"environment {env.name!r} is {why}: a package URL is mutable and its content is not verified on download",
                f"build the app's image and use {OCI_SCHEME}<registry>/<repository>@sha256:<digest>; the digest is verified on pull",
                file,
            )
        ]
    ref = artifact[len(OCI_SCHEME) :] if artifact.startswith(OCI_SCHEME) else artifact
    parsed = parse_image(ref)
    if parsed is None:
        return [ConfigIssue(path, f"{ref!r} is not an image reference", "registry/repository[:tag]@sha256:<digest>", file)]
    if parsed.digest is None:
        return [
            ConfigIssue(
                path,
                f"environment {env.name!r} is {why}: {ref!r} is a mutable tag, not an image digest",
                f"pin the image: {parsed.registry + '/' if parsed.registry else ''}{parsed.repository}@sha256:<digest> (docker buildx imagetools inspect, or crane digest)",
                file,
            )
        ]
    return []


def postgres_major(image: str) -> int | None:
    """The PostgreSQL major version an image's tag names (`postgres:17.2`, `.../postgres:16-bookworm@sha256:...`: 17, 16), or None."""
    version = postgres_version(image)
    return version[0] if version is not None else None


def postgres_version(image: str) -> tuple[int, int | None] | None:
    """The PostgreSQL version an image's tag names, (major, minor or None): `postgres:17.2` (17, 2),
    `postgres:16-bookworm` (16, None); None when the tag names none."""
    ref = parse_image(image)
    if ref is None or ref.tag is None or ref.repository.rsplit("/", 1)[-1] not in ("postgres", "postgresql"):
        return None
    m = re.match(r"(\d+)(?:\.(\d+))?(?:[.-]|$)", ref.tag)
    return (int(m.group(1)), int(m.group(2)) if m.group(2) is not None else None) if m else None
