"""The expiry app: removes expired production grants every few minutes, as a Cloud Foundry app of its own.

Why an app: the Cloud Controller has no scheduler (schedulers are marketplace services, e.g. Tanzu's
Scheduler or SAP BTP's Job Scheduling Service, each with its own API), but every foundation runs a
long-running process and restarts it when it crashes. So the expiry is one instance of a worker (no
route, a `process` health check) staged with the Python buildpack from a bundle of this package and the
core, which loops: list the production space's roles, read the environment's grant records (believing
only verified ones), remove the expired roles and sign their revocations (`grants.expire_due`).

Where and as whom: it lives in `mxinfra:cloudfoundry.grantExpiry.space`, a space where no
`mxinfra:access` principal holds a role (only a space's Developers and Supporters can read its apps'
variables), with a UAA identity that is Space Manager of the production space, given as a Pulumi secret
and kept in the app's variables (never a resource input in plain text). The platform identity creates and
updates it; a release never changes it (its inputs hold nothing a release changes).

Module import must stay light: the app runs this module with only requests, pydantic, cryptography and
the store's SDK installed (no pulumi).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS = "MXINFRA_EXPIRY"  # the app's one plain variable: its settings as JSON
BUNDLE = "grant-expiry"  # the package input's `bundle`: the provider builds these bytes itself
PROCFILE = "web: python -m mxinfra_cloudfoundry.expiry\n"
# Runtime distributions of the worker: the core's and this target's imports on its path, and the SDK of
# the repository's store and of the signing key (the `extras`).
RUNTIME = ("requests", "pydantic", "cryptography")
EXTRAS = {"s3": ("boto3",), "azure": ("azure-storage-blob", "azure-identity", "azure-keyvault-keys")}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same installation gives the same bytes, so the same digest


@dataclass(frozen=True)
class Settings:
    """What one expiry app works on (the JSON of its `MXINFRA_EXPIRY` variable)."""

    api: str
    where: Mapping[str, str]  # the production space: org/orgGuid and space/spaceGuid
    environment: str
    app: str
    repository: str
    trust: tuple[str, ...]  # key references whose records count ([]: a file:// development key)
    signer: str  # the key its revoke records are signed with
    interval_seconds: int = 300
    job_timeout: float = 600
    sweep_origins: tuple[str, ...] = ()  # production's MFA origins: their users' roles need a verified grant

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Parse the settings variable."""
        d = json.loads(text)
        return cls(
            api=str(d["api"]),
            where=dict(d["where"]),
            environment=str(d["environment"]),
            app=str(d["app"]),
            repository=str(d["repository"]),
            trust=tuple(d.get("trust") or ()),
            signer=str(d["signer"]),
            interval_seconds=int(d.get("intervalSeconds", 300)),
            job_timeout=float(d.get("jobTimeout", 600)),
            sweep_origins=tuple(d.get("sweepOrigins") or ()),
        )

    def to_json(self) -> str:
        """The settings variable (sorted: the same settings give the same input)."""
        body = {
            "api": self.api,
            "where": dict(self.where),
            "environment": self.environment,
            "app": self.app,
            "repository": self.repository,
            "trust": list(self.trust),
            "signer": self.signer,
            "intervalSeconds": self.interval_seconds,
            "jobTimeout": self.job_timeout,
            "sweepOrigins": list(self.sweep_origins),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def run_once(settings: Settings, *, client: Any = None, environ: Mapping[str, str] | None = None, now: dt.datetime | None = None, base_dir: Path | None = None) -> Any:
    """One expiry round with the app's credentials (the CF_* variables of `environ`, default the process's): `grants.Expiry`."""
    import requests

    from mxinfra.errors import UserError
    from mxinfra.governance.signing import open_signer

    from .capi import Client
    from .grants import expire_due, resolve_trust
    from .uaa import TokenSource

    base = base_dir or Path.cwd()
    if client is None:
        session = requests.Session()
        client = Client(settings.api, TokenSource.from_environment(settings.api, environ, session), session)
    trust = resolve_trust(settings.trust, settings.repository, base)
    if trust is None:
        raise UserError(f"no key is trusted for {settings.environment}: the expiry believes no grant (set mxinfra:signing.trustedSigners or signers)")
    return expire_due(
        settings.repository,
        settings.environment,
        client,
        space=client.space_guid(settings.where),
        trust=trust,
        app=settings.app,
        signer=open_signer(settings.signer, base),
        now=now,
        job_timeout=settings.job_timeout,
        base_dir=base,
        sweep_origins=settings.sweep_origins,
    )


def main(environ: Mapping[str, str] | None = None, rounds: int | None = None, sleep: Any = time.sleep) -> None:
    """The app's process: a round every `intervalSeconds`, for ever (or `rounds` times); a failed round is
    reported in the app's log and retried at the next one."""
    env = os.environ if environ is None else environ
    settings = Settings.from_json(env[SETTINGS])
    done = 0
    while rounds is None or done < rounds:
        started = time.monotonic()
        try:
            result = run_once(settings, environ=env)
            for line in result.ignored:
                print(f"not acted on: {line}", file=sys.stderr, flush=True)
            for g in result.removed:
                print(f"removed {g['role']} of {g['principal']} (role {g['id']}, expired {g['expires']})", flush=True)
        except Exception as e:  # noqa: BLE001 (the next round tries again; a crash would only restart the same loop)
            print(f"expiry round failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        done += 1
        if rounds is None or done < rounds:
            sleep(max(0.0, settings.interval_seconds - (time.monotonic() - started)))


# --- the bundle: what the app is staged from ---------------------------------------------------------


def extras_for(*references: str) -> list[str]:
    """The store and key SDKs the app needs for a repository URL and a key reference."""
    out = set()
    for ref in references:
        if ref.startswith(("s3://", "kms:")):
            out.add("s3")
        elif ref.startswith(("azblob://", "azurekv:")):
            out.add("azure")
    return sorted(out)


def _pins(roots: Sequence[str]) -> list[str]:
    """`name==version` of `roots` and everything they need on the app's Linux, as installed here."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from mxinfra.errors import UserError

    target = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "extra": ""}
    seen: dict[str, str] = {}
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise UserError(f"the grant expiry app needs {name}, which is not installed here: install mxinfra with the extra for your repository (pip install 'mxinfra[s3]' or 'mxinfra[azure]')") from None
        seen[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(target):
                todo.append(canonicalize_name(req.name))
    return sorted(f"{n}=={v}" for n, v in seen.items())


def _sources() -> list[tuple[str, Path]]:
    """(archive name, file) of every module of the core and of this target."""
    import mxinfra

    import mxinfra_cloudfoundry

    out = []
    for pkg in (mxinfra, mxinfra_cloudfoundry):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".typed") and "__pycache__" not in f.parts:
                out.append((f"{root.name}/{f.relative_to(root).as_posix()}", f))
    return out


def bundle(extras: Sequence[str] = ()) -> tuple[bytes, str]:
    """The app's package (a zip the Python buildpack stages) and its sha256: the same installation gives the
    same bytes, so the plan's digest is what `pulumi up` uploads."""
    roots = [*RUNTIME, *(d for e in sorted(set(extras)) for d in EXTRAS[e])]
    files: list[tuple[str, bytes]] = [(name, path.read_bytes()) for name, path in _sources()]
    files += [
        ("requirements.txt", ("\n".join(_pins(roots)) + "\n").encode()),
        ("runtime.txt", f"python-{sys.version_info.major}.{sys.version_info.minor}.x\n".encode()),
        ("Procfile", PROCFILE.encode()),
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


# --- the program's side: the app's resource -----------------------------------------------------------


def settings_for(ctx: Any, cfg: Any) -> Settings:
    """The expiry app's settings for a production environment (plain: no secret in them)."""
    from .config import where
    from .grants import trust_refs

    from mxinfra.governance.signing import signer_reference

    env = ctx.environment.name
    ge = cfg.grantExpiry
    return Settings(
        api=cfg.api,
        where=where(cfg, ctx.environment),
        environment=env,
        app=ctx.deployment.config.app.name,
        repository=ctx.deployment.repository_input,
        trust=tuple(trust_refs(ctx.deployment.config.raw.values, env)),
        signer=str(ge.signer or signer_reference(ctx.deployment.config, env)),
        interval_seconds=ge.intervalSeconds,
        job_timeout=float(cfg.timeouts.job),
        sweep_origins=tuple(cfg.mfaOrigins),
    )


def credential_variables(credentials: Any) -> dict[str, str]:
    """The CF_* variables of a `credentials` block (what `uaa.credentials_from_environment` reads)."""
    out: dict[str, str] = {}
    if credentials.passwordGrant is not None:
        pg = credentials.passwordGrant
        out.update(CF_USERNAME=pg.username, CF_PASSWORD=pg.password, CF_CLIENT_ID=pg.clientId)
        if pg.origin:
            out["CF_ORIGIN"] = pg.origin
    else:
        out.update(CF_CLIENT_ID=str(credentials.clientId), CF_CLIENT_SECRET=str(credentials.clientSecret))
    if credentials.uaaUrl:
        out["CF_UAA_URL"] = credentials.uaaUrl
    return out


if __name__ == "__main__":
    main()
