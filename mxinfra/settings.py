"""Runtime settings: everything the Mendix runtime needs, derived once for every target. Pure.

The rules are the buildpacks' (docs/mendix.md §2); targets fill only the slots of their own bindings
(database, file storage) and choose how secrets reach the container.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .environments import OFFLINE_SECRET, Environment, Scalar, Secret
from .errors import ConfigError, ConfigIssue, shown, suggest
from .mda import Constant, Metadata, RuntimeVersion

EventMode = Literal["ALL", "NONE", "SPECIFIED"]


def heap_mb(memory_limit_mb: int) -> int:
    """The Java heap the buildpacks give a container with this memory limit."""
    for floor, reserve in ((32768, 4096), (16384, 3072), (8192, 2048), (4096, 1536), (2048, 1024)):
        if memory_limit_mb >= floor:
            return memory_limit_mb - reserve
    return memory_limit_mb // 2


# Mendix's Integer/Long type is one 64-bit whole number (a java.lang.Long in the generated Java of real
# models, see docs/mendix.md); older metadata may still say Long.
_WHOLE_RANGE = {"Integer": (-(2**63), 2**63 - 1), "Long": (-(2**63), 2**63 - 1)}
# Mendix's Decimal: at most 20 digits before the point and 8 after; from Mendix 11.6 up to 18 after
# (docs/mendix.md, "Data types").
DECIMAL_INTEGER_DIGITS = 20
DECIMAL_FRACTION_DIGITS = 8
DECIMAL_FRACTION_DIGITS_SINCE = (RuntimeVersion(11, 6, 0), 18)
# A float has 15 significant decimal digits for sure; an unquoted YAML number with more was rounded.
_FLOAT_SAFE_DIGITS = 15


def _fraction_digits(runtime: RuntimeVersion | None) -> int:
    since, digits = DECIMAL_FRACTION_DIGITS_SINCE
    return digits if runtime is not None and runtime >= since else DECIMAL_FRACTION_DIGITS


def _decimal(kind: str, value: Scalar, runtime: RuntimeVersion | None = None) -> str:
    """`value` as the exact decimal text the runtime receives; ValueError for what Mendix cannot hold."""
    fraction_digits = _fraction_digits(runtime)
    expected = f"expected a number with at most {DECIMAL_INTEGER_DIGITS} digits before the point and {fraction_digits} after for {kind} constant"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(expected)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(expected)
        text = repr(value)
        digits = decimal.Decimal(text).as_tuple().digits
        if "e" in text or len(digits) > _FLOAT_SAFE_DIGITS:
            raise ValueError(
                f"an unquoted number of more than {_FLOAT_SAFE_DIGITS} digits is rounded by YAML before the {kind} "
                "constant sees it: write it quoted, as text, e.g. '12345678901234567.891'"
            )
    else:
        text = str(value).strip()
    try:
        number = decimal.Decimal(text)
    except (decimal.InvalidOperation, ValueError):
        raise ValueError(expected) from None
    if not number.is_finite():  # NaN, sNaN, Infinity
        raise ValueError(expected)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    fraction = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    if whole > DECIMAL_INTEGER_DIGITS or fraction > fraction_digits:
        raise ValueError(expected)
    return text


def parse_constant(const: Constant, value: Scalar, runtime: RuntimeVersion | None = None) -> Scalar:
    """`value` as the runtime (of `runtime`'s version, if known) takes it for the constant's type;
    ValueError says what was expected."""
    kind = const.type
    if kind in ("Integer", "Long"):
        low, high = _WHOLE_RANGE[kind]
        expected = f"expected a whole number from {low} to {high} for {kind} constant"
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(expected)
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(expected) from None
        if not low <= number <= high:
            raise ValueError(expected)
        return number
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("expected true or false for Boolean constant")
    if kind in ("Decimal", "Float"):
        return _decimal(kind, value, runtime)
    if kind == "DateTime":
        text = str(value)
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("expected an ISO 8601 date-time like 2026-01-01T00:00:00Z for DateTime constant") from None
        return text
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class RuntimeSettings:
    """What one environment's runtime needs, independent of the target."""

    environment: str
    constants: Mapping[str, Scalar]  # every constant of the model, resolved: stack value > model default
    overrides: Mapping[str, Scalar]  # only those the stack sets (what the env-var contract carries)
    secret_constants: Mapping[str, Secret]
    scheduled_event_mode: EventMode
    scheduled_events: tuple[str, ...]
    dtap_mode: str
    memory_limit_mb: int
    heap_mb: int
    instances: int
    custom_runtime_settings: Mapping[str, Scalar]
    admin_user: str
    license_id: str | None = None
    license_key: Secret | None = None
    admin_password: Secret | None = None  # None: the component generates one

    @property
    def memory_limit(self) -> str:
        """MEMORY_LIMIT in the buildpacks' notation."""
        return f"{self.memory_limit_mb}M"


def check_against_metadata(env: Environment, meta: Metadata, file: str = "") -> list[ConfigIssue]:
    """Problems of `env` that only the MDA reveals: unknown constants or events, unparseable values."""
    issues = []
    names = [c.name for c in meta.constants]
    for name, value in env.constants.items():
        path = f"{env.config_path}.constants.{name}"
        const = meta.constant(name)
        if const is None:
            issues.append(ConfigIssue(path, f"constant {name!r} is not defined by the app's model", suggest(name, names) or _nearby(names), file))
            continue
        try:
            parse_constant(const, value, meta.runtime_version)
        except ValueError as e:
            issues.append(ConfigIssue(path, f"{e} (got {shown(value)})", f"model default is {shown(const.default_value)}", file))
    for sc in env.secret_constants:
        const = meta.constant(sc.name)
        if const is None:
            issues.append(ConfigIssue(f"{env.config_path}.secretConstants.{sc.name}", f"constant {sc.name!r} is not defined by the app's model", suggest(sc.name, names) or _nearby(names), file))
        elif sc.value.reveal() != OFFLINE_SECRET:
            try:
                parse_constant(const, sc.value.reveal(), meta.runtime_version)
            except ValueError as e:
                # Under the engine the value arrives decrypted: the message names the constant, never the value.
                issues.append(ConfigIssue(f"{env.config_path}.secretConstants.{sc.name}", f"{e} (the value is secret: not shown)", "set it again with pulumi config set --secret", file))
        if sc.name in env.constants:
            issues.append(ConfigIssue(f"{env.config_path}.secretConstants.{sc.name}", "is also set under constants", "set it in one place only", file))
    if not isinstance(env.scheduled_events, str):
        events = [e.name for e in meta.scheduled_events]
        for i, name in enumerate(env.scheduled_events):
            if name not in events:
                issues.append(ConfigIssue(f"{env.config_path}.scheduledEvents[{i}]", f"scheduled event {name!r} is not in the app's model", suggest(name, events) or _nearby(events, "scheduled events"), file))
    return issues


# Constant names that say the value is a credential (`Encryption.EncryptionKey`, `Stripe.ApiKey`, ...).
_SECRET_NAME = re.compile(r"(pass(word|wd)?|pwd|secret|token|credentials?|(api|private|encryption|access|secret|signing|licen[cs]e)_?key)$", re.IGNORECASE)


def constant_warnings(env: Environment) -> list[str]:
    """Plain constants whose name says they hold a credential: they are stored and shown in plain text."""
    out = []
    for name, value in env.constants.items():
        if isinstance(value, str) and value and _SECRET_NAME.search(name.rsplit(".", 1)[-1]):
            out.append(
                f"{env.config_path}.constants.{name} looks like a secret (its name) but is stored in plain text and shown "
                f"in plans: move it to secretConstants: pulumi config set --secret --path "
                f"'{env.config_path}.secretConstants[\"{name}\"]' VALUE"
            )
    return out


def _nearby(names: list[str], what: str = "constants") -> str:
    if not names:
        return f"the model defines no {what}"
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"the model's {what}: {shown}"


def derive(env: Environment, meta: Metadata, file: str = "") -> RuntimeSettings:
    """The runtime settings of `env` for the app described by `meta`; ConfigError on mismatch."""
    issues = check_against_metadata(env, meta, file)
    if issues:
        raise ConfigError(issues, file)
    resolved: dict[str, Scalar] = {}
    for const in meta.constants:
        if const.name in env.constants:
            resolved[const.name] = parse_constant(const, env.constants[const.name], meta.runtime_version)
        else:
            try:
                resolved[const.name] = parse_constant(const, const.default_value, meta.runtime_version)
            except ValueError:
                resolved[const.name] = const.default_value  # the model's own value; the runtime copes
    overrides = {n: resolved[n] for n in sorted(env.constants)}
    if isinstance(env.scheduled_events, str):
        mode: EventMode = env.scheduled_events  # type: ignore[assignment]
        events: tuple[str, ...] = ()
    elif env.scheduled_events:
        mode, events = "SPECIFIED", tuple(env.scheduled_events)
    else:
        mode, events = "NONE", ()
    return RuntimeSettings(
        environment=env.name,
        constants=resolved,
        overrides=overrides,
        secret_constants={sc.name: sc.value for sc in env.secret_constants},
        scheduled_event_mode=mode,
        scheduled_events=events,
        dtap_mode=env.role.dtap_mode,
        memory_limit_mb=env.memory_mb,
        heap_mb=heap_mb(env.memory_mb),
        instances=env.instances,
        custom_runtime_settings=dict(env.runtime_settings),
        admin_user=meta.admin_user,
        license_id=env.license.id if env.license else None,
        license_key=env.license.key if env.license else None,
        admin_password=env.admin_password,
    )


# --- Bindings: the slots a target fills from its own resources -------------------------------------
# Values are Any: a target passes plain strings, Pulumi Outputs, or its own secret references; the
# renderer only decides which variable carries them and whether that variable is secret.


@dataclass(frozen=True)
class DatabaseUrl:
    """A database given as one URL (`postgres://user:pass@host:5432/db`), always secret."""

    url: Any
    require_tls: bool = True


@dataclass(frozen=True)
class DatabaseParts:
    """A database given as parts, for credentials that live in a secret store and never form a URL."""

    type: str  # PostgreSQL, SQLSERVER, MYSQL, ...
    host: Any  # host:port
    name: Any
    user: Any  # secret source
    password: Any  # secret source
    require_tls: bool = True


@dataclass(frozen=True)
class S3Storage:
    """S3-compatible file storage; without keys the runtime uses the platform's role credentials.

    Without keys, bucket and endpoint must be plain strings: they travel inside a JSON runtime setting.
    """

    bucket: Any
    endpoint: Any = None
    access_key_id: Any = None
    secret_access_key: Any = None
    key_suffix: str | None = None
    use_sse: bool = True


@dataclass(frozen=True)
class AzureBlobStorage:
    """Azure Blob file storage: the account key or a SAS token is secret; or neither, with the runtime's
    managed identity (`use_default_credential`, which needs `endpoint`)."""

    account_name: Any
    container: Any
    account_key: Any = None
    sas_token: Any = None
    endpoint: Any = None
    use_default_credential: bool = False


@dataclass(frozen=True)
class LocalStorage:
    """Files on the container's own volume (single instance only)."""


@dataclass(frozen=True)
class Bindings:
    """What a target provides: the admin password (always), database and file storage."""

    admin_password: Any
    database: DatabaseUrl | DatabaseParts | None = None
    storage: S3Storage | AzureBlobStorage | LocalStorage | None = None


@dataclass
class BuildpackEnv:
    """The buildpacks' environment variables, split by whether the value is secret."""

    plain: dict[str, Any] = field(default_factory=dict)
    secret: dict[str, Any] = field(default_factory=dict)


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


def buildpack_env(settings: RuntimeSettings, bindings: Bindings) -> BuildpackEnv:
    """Render settings and bindings in the buildpacks' env-var contract (docs/mendix.md §2)."""
    env = BuildpackEnv()
    p, s = env.plain, env.secret
    p["MEMORY_LIMIT"] = settings.memory_limit
    # DEVELOPMENT_MODE would force DTAPMode=D; the tier is set explicitly instead.
    p["MXRUNTIME_DTAPMode"] = settings.dtap_mode
    p["SCHEDULED_EVENTS"] = ",".join(settings.scheduled_events) if settings.scheduled_event_mode == "SPECIFIED" else settings.scheduled_event_mode
    if settings.overrides:
        p["CONSTANTS"] = _json(settings.overrides)
    custom = dict(settings.custom_runtime_settings)
    for name, value in settings.secret_constants.items():
        s["MX_" + name.replace(".", "_")] = value
    s["ADMIN_PASSWORD"] = bindings.admin_password
    if settings.license_id:
        p["LICENSE_ID"] = settings.license_id
    if settings.license_key is not None:
        s["LICENSE_KEY"] = settings.license_key
    db = bindings.database
    if isinstance(db, DatabaseUrl):
        s["DATABASE_URL"] = db.url
        if db.require_tls:
            p["DATABASE_CONNECTION_PARAMS"] = _json({"sslmode": "require"})
    elif isinstance(db, DatabaseParts):
        # Any MXRUNTIME_Database* variable switches the buildpack from URL handling to these settings.
        p["MXRUNTIME_DatabaseType"] = db.type
        p["MXRUNTIME_DatabaseHost"] = db.host
        p["MXRUNTIME_DatabaseName"] = db.name
        p["MXRUNTIME_DatabaseUseSsl"] = "true" if db.require_tls else "false"
        s["MXRUNTIME_DatabaseUserName"] = db.user
        s["MXRUNTIME_DatabasePassword"] = db.password
    st = bindings.storage
    if isinstance(st, S3Storage):
        if st.access_key_id is not None:
            p["S3_BUCKET_NAME"] = st.bucket
            if st.endpoint is not None:
                p["S3_ENDPOINT"] = st.endpoint
            if st.key_suffix:
                p["S3_KEY_SUFFIX"] = st.key_suffix
            p["S3_USE_SSE"] = "true" if st.use_sse else "false"
            s["S3_ACCESS_KEY_ID"] = st.access_key_id
            s["S3_SECRET_ACCESS_KEY"] = st.secret_access_key
        else:
            # No static keys: the runtime uses the task's or pod's role credentials. The buildpacks
            # ignore every S3_* variable without keys, so the store is configured as runtime settings.
            custom.update(
                {
                    "com.mendix.core.StorageService": "com.mendix.storage.s3",
                    "com.mendix.storage.s3.BucketName": st.bucket,
                    "com.mendix.storage.s3.UseSSE": st.use_sse,
                    "com.mendix.storage.s3.UseInstanceProfile": True,
                }
            )
            if st.endpoint is not None:
                custom["com.mendix.storage.s3.EndPoint"] = st.endpoint
            if st.key_suffix:
                custom["com.mendix.storage.s3.ResourceNameSuffix"] = st.key_suffix
    elif isinstance(st, AzureBlobStorage):
        p["AZURE_CONTAINER_NAME"] = st.container
        p["MXRUNTIME_com_mendix_core_StorageService"] = "com.mendix.storage.azure"
        p["MXRUNTIME_com_mendix_storage_azure_AccountName"] = st.account_name
        if st.endpoint is not None:
            p["MXRUNTIME_com_mendix_storage_azure_BlobEndpoint"] = st.endpoint
        if st.account_key is not None:
            s["MXRUNTIME_com_mendix_storage_azure_AccountKey"] = st.account_key
        if st.sas_token is not None:
            s["MXRUNTIME_com_mendix_storage_azure_SharedAccessSignature"] = st.sas_token
        if st.use_default_credential:
            p["MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential"] = "true"
    if custom:
        p["CUSTOM_RUNTIME_SETTINGS"] = _json(custom)
    env.plain = dict(sorted(p.items()))
    env.secret = dict(sorted(s.items()))
    return env


def operator_runtime(settings: RuntimeSettings) -> dict[str, Any]:
    """Render settings as the Mendix Operator's `MendixApp.spec.runtime` (without the admin password)."""
    runtime: dict[str, Any] = {
        "dtapMode": settings.dtap_mode,
        "scheduledEventExecution": settings.scheduled_event_mode,
    }
    if settings.scheduled_event_mode == "SPECIFIED":
        runtime["myScheduledEvents"] = list(settings.scheduled_events)
    if settings.overrides:
        runtime["microflowConstants"] = {
            k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in settings.overrides.items()
        }
    if settings.custom_runtime_settings:
        runtime["customConfiguration"] = _json(settings.custom_runtime_settings)
    return runtime


def instance_env(index: int) -> dict[str, str]:
    """The variable that makes an instance the cluster leader (0) or a follower (>0).

    Kubernetes pods need none: the Docker buildpack takes the index from a StatefulSet ordinal when
    KUBERNETES_SERVICE_HOST is set. Elsewhere (ECS, plain Docker) an unset index makes every instance
    a leader, so a platform without ordinals must set it.
    """
    if index < 0:
        raise ValueError("an instance index is 0 (the leader) or more")
    return {"CF_INSTANCE_INDEX": str(index)}
