"""The `mxinfra:cloudfoundry` block: where the app runs (API, org, a space per environment, domain), the
buildpack release it is staged with (pinned by digest on production), the marketplace services it binds,
the production access rules and the app that expires production grants. Pure."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from mxinfra.artifacts import URL_DIGEST
from mxinfra.environments import Environment
from mxinfra.schema import StrictModel

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A release version in the buildpack URL's path: v5.0.20, 5.0.20 (a tag or a release asset directory).
RELEASE = re.compile(r"/v?[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?/")
# The buildpack's digest, pip's hash-checking form: `<release zip URL>#sha256=<64 hex>`. Cloud Foundry
# never sees the fragment; mxinfra verifies the download against it before every staging.
DIGEST_FRAGMENT = URL_DIGEST  # the core's pin of a downloaded file (mxinfra.artifacts)
# Path segments that name something that moves: a branch, a "latest" alias, a source archive of a head.
MOVING = re.compile(r"/(latest|master|main|develop|heads|nightly|snapshot)(/|$)|/archive/refs/heads/", re.IGNORECASE)
HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
DOMAIN = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,35}")

STACK = "cflinuxfs4"
# The cf-mendix-buildpack stages and runs a Mendix runtime only with at least 1 GB per instance
# (its own minimum; below it the JVM gets no usable heap next to nginx and the agent).
MIN_MEMORY_MB = 1024
MIN_DISK_MB = 1024  # the droplet (JDK, runtime, model) needs about 1 GB unpacked
SpaceRoleType = Literal["space_developer", "space_supporter"]
TIERS = ("test", "acceptance", "production")  # the keys of `spaces` besides environment names
# Names of expiry-app variables whose values must be Pulumi secrets (a store key, a client secret...).
SECRET_VARIABLE = re.compile(r"SECRET|PASSWORD|TOKEN|CONNECTION_STRING|SAS|CREDENTIAL", re.IGNORECASE)


class ServiceConfig(StrictModel):
    """A service the app binds: a new instance of a marketplace offering/plan, or an existing service by name."""

    offering: str | None = Field(None, description="marketplace offering, e.g. postgresql-db (SAP BTP), objectstore")
    plan: str | None = Field(None, description="the offering's plan, e.g. standard, s3-standard")
    parameters: dict[str, str | int | bool] = Field(default_factory=dict, description="broker parameters (not secret)")
    existing: str | None = Field(None, description="bind this existing (e.g. user-provided) service instance instead of creating one")

    @model_validator(mode="after")
    def _one_kind(self) -> ServiceConfig:
        if self.existing is not None:
            if self.offering or self.plan or self.parameters:
                raise ValueError("give either existing (a service instance to bind) or offering and plan, not both")
            if not SERVICE_NAME.fullmatch(self.existing):
                raise ValueError(f"{self.existing!r} is not a service instance name")
        elif not (self.offering and self.plan):
            raise ValueError("a new service instance needs offering and plan (or existing: NAME for one that exists)")
        return self


class TimeoutsConfig(StrictModel):
    """How long each asynchronous step may take before the deploy fails (seconds)."""

    upload: int = Field(600, ge=10, le=7200, description="package bits uploaded and the package READY")
    staging: int = Field(1200, ge=30, le=7200, description="build STAGED")
    start: int = Field(1200, ge=30, le=7200, description="instances RUNNING, or a deployment FINALIZED")
    job: int = Field(600, ge=10, le=7200, description="asynchronous jobs (service instances, bindings, deletes) COMPLETE")


class PasswordGrantConfig(StrictModel):
    """A UAA user's password grant (the cf CLI's way: client `cf` with an empty secret)."""

    username: str
    password: str = Field(description="a Pulumi secret: pulumi config set --secret --path 'mxinfra:cloudfoundry.credentials.passwordGrant.password'")
    origin: str | None = Field(None, description="the user's identity provider (login_hint), e.g. sap.ids")
    clientId: str = "cf"

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        if v is not None and not ORIGIN.fullmatch(v):
            raise ValueError(f"{v!r} is not an identity-provider origin")
        return v


class CredentialsConfig(StrictModel):
    """The API's credentials: a UAA client (clientId, clientSecret) or a password grant; secrets as Pulumi secrets."""

    clientId: str | None = Field(None, description="a UAA client with the client_credentials grant")
    clientSecret: str | None = Field(None, description="a Pulumi secret: pulumi config set --secret --path 'mxinfra:cloudfoundry.credentials.clientSecret'")
    passwordGrant: PasswordGrantConfig | None = None
    uaaUrl: str | None = Field(None, description="the UAA (default: from the API's root document)")

    @field_validator("uaaUrl")
    @classmethod
    def _uaa(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"{v!r} is not an https URL of a UAA")
            return v.rstrip("/")
        return v

    @model_validator(mode="after")
    def _one_form(self) -> CredentialsConfig:
        client = self.clientId is not None or self.clientSecret is not None
        if client and self.passwordGrant is not None:
            raise ValueError("give either clientId and clientSecret (client credentials) or passwordGrant, not both")
        if not client and self.passwordGrant is None:
            raise ValueError("give clientId and clientSecret (client credentials) or passwordGrant: {username, password}")
        if client and (self.clientId is None or self.clientSecret is None):
            raise ValueError("client credentials need both clientId and clientSecret")
        return self


class GrantExpiryConfig(StrictModel):
    """`grantExpiry`: the app that removes expired production grants every few minutes, in a space of its own.

    Cloud Foundry has no scheduler in the Cloud Controller; a long-running process is what every
    foundation runs and restarts when it crashes. The app holds a Space Manager identity of the production
    space, so it lives where no `mxinfra:access` principal has a role (only Space Developers and Supporters
    of a space can read its apps' variables)."""

    space: str = Field(description="the expiry app's space (existing): only the platform identity may hold a role there")
    org: str | None = Field(None, description="its organization (default: the block's org)")
    credentials: CredentialsConfig = Field(description="the app's UAA identity: Space Manager of the production space; secrets as Pulumi secrets")
    signer: str | None = Field(None, description="the key its revoke records are signed with (default: mxinfra:signing.signers.<production env>); kms: or azurekv:")
    environment: dict[str, str] = Field(default_factory=dict, description="variables the app needs to reach the repository and the key (AWS_*, AZURE_*): all kept as secrets")
    intervalSeconds: int = Field(300, ge=60, le=3600, description="how often it looks for expired grants")
    buildpack: str = Field("python_buildpack", description="the Python buildpack it is staged with (a system buildpack name or a URL)")
    memoryMb: int = Field(256, ge=128, le=2048)

    @field_validator("space")
    @classmethod
    def _space(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a space name")
        return v


class CloudFoundryConfig(StrictModel):
    """`mxinfra:cloudfoundry`: the target's settings, shared by the stack's environments."""

    api: str = Field(description="The Cloud Controller API URL, e.g. https://api.cf.eu10.hana.ondemand.com")
    org: str | None = Field(None, description="The organization's name (or orgGuid)")
    orgGuid: str | None = None
    space: str | None = Field(None, description="One space for every environment of the stack (or spaceGuid, or spaces)")
    spaceGuid: str | None = None
    spaces: dict[str, str] = Field(default_factory=dict, description="environment name or tier (test, acceptance, production) -> space name")
    createSpaces: bool = Field(False, description="the target creates the spaces (SSH disallowed on production's); needs an Org Manager for the first up")
    buildpack: str = Field(description="A pinned release of the cf-mendix-buildpack with its digest, e.g. https://github.com/mendix/cf-mendix-buildpack/releases/download/v5.0.20/cf-mendix-buildpack.zip#sha256=<64 hex>")
    domain: str = Field(description="The domain of the app's routes, e.g. cfapps.eu10.hana.ondemand.com")
    hostnames: dict[str, str] = Field(default_factory=dict, description="environment -> host (default <app>-<environment>)")
    diskMb: int = Field(2048, ge=MIN_DISK_MB, le=65536, description="disk per instance")
    healthCheckEndpoint: str = Field("/", pattern=r"^/[A-Za-z0-9/._~-]*$")
    startupTimeoutSeconds: int = Field(600, ge=60, le=1800, description="health-check start-up timeout: long enough for the database sync")
    database: ServiceConfig = Field(description="PostgreSQL: offering and plan, or existing")
    storage: ServiceConfig | None = Field(None, description="object store: offering and plan, or existing; absent: files on local disk (one instance only)")
    deployRole: SpaceRoleType = Field("space_developer", description="the space role of `deploy` (space_supporter cannot upload packages)")
    mfaOrigins: list[str] = Field(default_factory=list, description="identity-provider origins that enforce MFA: the only ones allowed production grants")
    releaseData: list[str] = Field(default_factory=list, description="production environments whose service instances a destroy may delete")
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    credentials: CredentialsConfig | None = Field(None, description="the API's credentials (secrets as Pulumi secrets); absent: CF_* environment variables")
    grantExpiry: GrantExpiryConfig | None = Field(None, description="the app that expires production grants on a schedule")

    @field_validator("api")
    @classmethod
    def _api(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(f"{v!r} is not an https API root URL (https://api.<system domain>)")
        return v.rstrip("/")

    @field_validator("orgGuid", "spaceGuid")
    @classmethod
    def _guid(cls, v: str | None) -> str | None:
        if v is not None and not GUID.fullmatch(v):
            raise ValueError(f"{v!r} is not a GUID")
        return v

    @field_validator("buildpack")
    @classmethod
    def _buildpack(cls, v: str) -> str:
        problem = pinned_release_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not DOMAIN.fullmatch(v):
            raise ValueError(f"{v!r} is not a domain name")
        return v

    @field_validator("hostnames")
    @classmethod
    def _hosts(cls, v: dict[str, str]) -> dict[str, str]:
        for env, host in v.items():
            if not HOST_LABEL.fullmatch(host):
                raise ValueError(f"{env}: {host!r} is not a host label (a-z, 0-9, '-', at most 63)")
        return v

    @field_validator("mfaOrigins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if not ORIGIN.fullmatch(o):
                raise ValueError(f"{o!r} is not an identity-provider origin")
            if o == "uaa":
                raise ValueError("the 'uaa' origin cannot enforce MFA (UAA's own MFA was removed): name your identity provider's origin")
        return v

    @field_validator("spaces")
    @classmethod
    def _spaces(cls, v: dict[str, str]) -> dict[str, str]:
        for key, name in v.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{key}: a space name")
        return v

    @model_validator(mode="after")
    def _where(self) -> CloudFoundryConfig:
        if (self.org is None) == (self.orgGuid is None):
            raise ValueError("give exactly one of org (a name) and orgGuid")
        given = [k for k in ("space", "spaceGuid", "spaces") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of space (a name), spaceGuid, or spaces (environment or tier -> space name)")
        if self.createSpaces and not self.spaces and self.space is None:
            raise ValueError("createSpaces needs the spaces by name (space or spaces), not spaceGuid")
        if self.createSpaces and self.org is None:
            raise ValueError("createSpaces needs org by name")
        return self

    def space_of(self, environment: str, tier: str) -> tuple[str | None, str | None, str]:
        """(space name, space GUID, config key) of an environment: `spaces` by name, then by tier, else the
        stack's one space; (None, None, key) when `spaces` has neither."""
        if self.spaces:
            key = environment if environment in self.spaces else tier
            return self.spaces.get(key), None, f"spaces.{key}"
        if self.spaceGuid is not None:
            return None, self.spaceGuid, "spaceGuid"
        return self.space, None, "space"


def buildpack_url(reference: str) -> str:
    """The URL Cloud Foundry downloads: the reference without its `#sha256=` digest."""
    return reference.split("#", 1)[0]


def buildpack_digest(reference: str) -> str | None:
    """The 64-hex sha256 a buildpack reference pins (`...zip#sha256=<hex>`), or None."""
    _, sep, fragment = reference.partition("#")
    m = DIGEST_FRAGMENT.fullmatch(fragment) if sep else None
    return m["hex"] if m else None


def pinned_release_problem(url: str) -> str | None:
    """Why `url` is not a pinned buildpack release, or None when it is one (a `#sha256=` digest may follow)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"{url!r}: the buildpack must be an https URL of a release"
    if parts.fragment and not DIGEST_FRAGMENT.fullmatch(parts.fragment):
        if parts.fragment.startswith("sha256"):
            return f"{url!r}: the digest must be #sha256=<64 lowercase hex digits> (sha256sum cf-mendix-buildpack.zip)"
        return f"{url!r} names a git ref, which moves: use a release asset URL (.../releases/download/vX.Y.Z/cf-mendix-buildpack.zip)"
    if url.endswith(".git") or parts.path.endswith(".git"):
        return f"{url!r} names a git ref, which moves: use a release asset URL (.../releases/download/vX.Y.Z/cf-mendix-buildpack.zip)"
    if parts.query:
        return f"{url!r} has a query string: use the plain release asset URL"
    if MOVING.search(parts.path):
        return f"{url!r} names a moving branch or 'latest': pin a release (.../releases/download/vX.Y.Z/cf-mendix-buildpack.zip)"
    if not parts.path.endswith(".zip") or not RELEASE.search(parts.path):
        return f"{url!r} is not a pinned release: expected a .zip under a version directory, e.g. .../releases/download/v5.0.20/cf-mendix-buildpack.zip"
    return None


def where(cfg: CloudFoundryConfig, environment: Environment | None = None) -> dict[str, Any]:
    """The API, org and space inputs every resource of `environment` carries (names or GUIDs, whichever
    config gives); without an environment, the stack's one space (`space`/`spaceGuid`)."""
    if environment is not None:
        space, space_guid, _ = cfg.space_of(environment.name, environment.role.value)
    else:
        space, space_guid = cfg.space, cfg.spaceGuid
    out = {"api": cfg.api, "org": cfg.org, "orgGuid": cfg.orgGuid, "space": space, "spaceGuid": space_guid}
    return {k: v for k, v in out.items() if v is not None}
