"""Registry credentials the user already has: the Docker config with its credential helpers, then the
registry plug-ins of the installed targets (ECR, ACR).

`credentials_for(registry, docker_config=None)` is the whole lookup, the first that has some:
1. the Docker config, in Docker's order: `credHelpers[<host>]`, else `credsStore`, each run as
   `docker-credential-<name> get` (the docker-credential-helpers protocol: the server on stdin, JSON
   {"ServerURL", "Username", "Secret"} on stdout), then `auths[<host>]`. A helper that answers
   "credentials not found" passes on (Docker would stop: Docker Desktop's `credsStore` covers every
   host but knows only those logged in to, and the plug-ins below can still log in to the others).
2. the entry points of group `mxinfra.registry_credentials`, in name order: each a callable
   `(registry_host: str) -> Credentials | None` that returns None for a host it does not own. They are
   loaded only when the Docker config has nothing for the host: an explicit login always wins.

A helper's user name `<token>` (mxinfra.registry.IDENTITY_TOKEN_USER) makes its Secret an identity
token, kept as `Credentials("<token>", secret)`: RegistryClient spends it only at a bearer realm, in
the OAuth2 refresh-token grant (POST grant_type=refresh_token), never as basic auth; a registry that
asks for basic auth gets nothing and the refusal says "with an identity token". No message here ever
holds a secret: a helper's output that is not the protocol's JSON is counted, not shown.

The core imports no cloud SDK: ECR and ACR come from the plug-ins of mxinfra-aws and mxinfra-azure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from .registry import (
    DOCKER_HUB_HOSTS,
    DOCKER_HUB_KEY,
    Credentials,
    RegistryAuthError,
    auths_credentials,
    docker_config_path,
    read_docker_config,
    same_registry,
)

ENTRY_POINT_GROUP = "mxinfra.registry_credentials"
HELPER_TIMEOUT = 30.0  # seconds: a helper that asks the network (ecr-login) or unlocks a keychain
# What docker-credential-helpers print (exit 1) for a server they hold nothing for.
_NOT_FOUND = "credentials not found in native keychain"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


__all__ = ["ENTRY_POINT_GROUP", "HELPER_TIMEOUT", "credentials_for", "docker_config_credentials", "plugin_credentials", "run_credential_helper"]


def credentials_for(registry: str, docker_config: str | os.PathLike[str] | None = None) -> Credentials | None:
    """The credentials for `registry` (a host[:port]) the user already has, or None (ask anonymously):
    the Docker config (helpers, then `auths`), then the installed registry plug-ins."""
    path = Path(docker_config) if docker_config is not None else docker_config_path()
    found = docker_config_credentials(registry, path)
    return found if found is not None else plugin_credentials(registry)


def docker_config_credentials(registry: str, config: str | os.PathLike[str] | None = None) -> Credentials | None:
    """What the Docker config gives for `registry`: `credHelpers[<host>]` or else `credsStore`, then `auths`."""
    path = Path(config) if config is not None else docker_config_path()
    doc = read_docker_config(path)
    helpers = doc.get("credHelpers")
    if helpers is not None and not isinstance(helpers, dict):
        raise RegistryAuthError(f"{path}: credHelpers is not an object of host: helper name")
    key = next((k for k in (helpers or {}) if same_registry(k, registry)), None)
    server = DOCKER_HUB_KEY if registry in DOCKER_HUB_HOSTS else registry  # where Docker keeps Hub's credentials
    if key is not None:
        found = run_credential_helper(helpers[key], server, path, f"credHelpers[{key!r}]")  # type: ignore[index]
        if found is not None:
            return found
    elif doc.get("credsStore"):
        found = run_credential_helper(doc["credsStore"], server, path, "credsStore")
        if found is not None:
            return found
    return auths_credentials(doc, registry, path)


def run_credential_helper(name: Any, server: str, config: Path, role: str, timeout: float | None = None) -> Credentials | None:
    """`docker-credential-<name> get` for `server`: its credentials, or None when it has none for it.

    `role` is the config entry that names it (`credsStore`, `credHelpers['host']`), for messages;
    `timeout` is HELPER_TIMEOUT unless given."""
    timeout = HELPER_TIMEOUT if timeout is None else timeout
    where = f"{role} in {config}"
    if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
        raise RegistryAuthError(f"{where} is not the name of a credential helper (docker-credential-<name>): correct or remove it")
    program = f"docker-credential-{name}"
    exe = shutil.which(program)
    if exe is None:
        raise RegistryAuthError(
            f"{where} names the credential helper {name!r} for {server}, but {program} is not on PATH: "
            f"install it, or remove {role} from {config} and log in again (`docker login {server}`)"
        )
    try:
        run = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(
            f"{program} get (named by {where}) did not answer within {timeout:g} s for {server}: "
            f"is it waiting for a keychain to be unlocked or a passphrase? Try `echo {server} | {program} get`"
        ) from None
    except OSError as exc:
        raise RegistryAuthError(f"{program} (named by {where}) cannot be run: {exc.strerror or exc}") from None
    out = run.stdout.decode("utf-8", "replace").strip()
    if run.returncode != 0:
        if _NOT_FOUND in out.lower():
            return None
        # A failing helper prints why (docker-credential-helpers: on stdout), never a secret.
        said = (out or run.stderr.decode("utf-8", "replace").strip()).splitlines()
        reason = f": {said[0][:300]}" if said else ""
        raise RegistryAuthError(
            f"{program} get failed for {server} (exit {run.returncode}{reason}); it is named by {where}: "
            f"log in again (`docker login {server}`), or fix or remove the helper"
        )
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    if not (isinstance(doc, dict) and isinstance(doc.get("Secret"), str) and isinstance(doc.get("Username", ""), str)):
        # Not shown: whatever it printed may hold the secret.
        raise RegistryAuthError(
            f"{program} get printed {len(run.stdout)} bytes for {server} that are not the credential helper "
            f'protocol\'s JSON {{"ServerURL", "Username", "Secret"}} (not shown); it is named by {where}: fix or remove the helper'
        )
    if not doc["Secret"]:
        return None
    # User `<token>` (IDENTITY_TOKEN_USER): the Secret is an identity token, kept under that user name.
    return Credentials(doc.get("Username") or "", doc["Secret"], source=f"{program}, {where}")


def plugin_credentials(registry: str) -> Credentials | None:
    """What the first installed registry plug-in (entry point group `mxinfra.registry_credentials`) that
    owns `registry` gives, or None. Each is loaded here, when first needed, in name order."""
    for ep in sorted(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        try:
            provider = ep.load()
        except Exception as exc:  # noqa: BLE001 (an installation fault the user fixes, reported as theirs)
            raise RegistryAuthError(
                f"the registry credential plug-in {ep.name!r} ({ep.value}, from {dist}) cannot be loaded "
                f"({type(exc).__name__}: {exc}): reinstall or uninstall {dist}"
            ) from exc
        found = provider(registry)
        if found is None:
            continue
        if not isinstance(found, Credentials):
            raise TypeError(f"registry credential plug-in {ep.value} ({dist}) returned {type(found).__name__}, not mxinfra.registry.Credentials or None")
        return found if found.source else replace(found, source=f"the {ep.name} registry plug-in ({dist})")
    return None
