"""The stack-config schema (`mxinfra:*` keys) and its validation into the environment model.

Pure: no Pulumi imports. The same raw config arrives from two places, a running Pulumi program
(`mxinfra.program`) or a `Pulumi.<stack>.yaml` read offline (`mxinfra.stackfile`); both produce a
`RawConfig` and everything below treats them alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import Field, ValidationError, field_validator

from .access import check_access
from .backups import Backups, BackupsConfig, check_backups
from .checks import plain_text
from .environments import Environment, EnvironmentName, check_environment_name, check_label, label_fix, License, Role, Secret, SecretConstant
from .errors import ConfigError, ConfigIssue, UserError, suggest
from .schema import NAMESPACE, RawConfig, StrictModel, parse_model

Scalar = Union[bool, int, float, str]


class AppConfig(StrictModel):
    """`mxinfra:app`: what is deployed and where."""

    name: str = Field(description="The app's name: a lowercase DNS label, at most 20 characters")
    package: str = Field(description="Path of the MDA, relative to the project, or a repository package")
    target: str = Field(description="The target platform: an installed mxinfra target")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_label(v, "app name")
        return v


class LicenseConfig(StrictModel):
    """A licence reference: the id in the clear, the key as a secret."""

    id: str
    key: str


class UngatedConfig(StrictModel):
    """`mxinfra:environments.<env>.ungated`: a production environment's explicit opt-out of staged promotion."""

    reason: str = Field(description="why this production environment may deploy a package no other environment ran (shown on every plan and pulumi up)")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty: say why this production environment deploys packages no other environment ran")
        return v.strip()


class EnvironmentConfig(StrictModel):
    """One entry of `mxinfra:environments`."""

    role: Role | None = None
    instances: int = Field(1, ge=0, le=100)
    memory: int = Field(1024, ge=512, le=262144, description="MB per instance")
    constants: dict[str, Scalar] = Field(default_factory=dict)
    secretConstants: dict[str, str] = Field(default_factory=dict)
    scheduledEvents: Literal["ALL", "NONE"] | list[str] = "ALL"
    runtimeSettings: dict[str, Scalar] = Field(default_factory=dict)
    license: LicenseConfig | None = None
    adminPassword: str | None = None
    requirePromotionFrom: str | None = None
    ungated: UngatedConfig | None = None
    backups: BackupsConfig | None = None

    @field_validator("scheduledEvents", mode="before")
    @classmethod
    def _events(cls, v: Any) -> Any:
        # One message at the user's key instead of one per member of the union.
        if v in ("ALL", "NONE") or (isinstance(v, list) and all(isinstance(e, str) for e in v)):
            return v
        if isinstance(v, str) and v.upper() in ("ALL", "NONE"):
            raise ValueError(f"expected ALL, NONE or a list of event names; did you mean {v.upper()!r}?")
        if isinstance(v, list):
            bad = next(i for i, e in enumerate(v) if not isinstance(e, str))
            raise ValueError(f"expected ALL, NONE or a list of event names: entry {bad} is a {type(v[bad]).__name__}, not a name")
        raise ValueError("expected ALL, NONE or a list of event names like [Module.EventName]")


class AccessEntry(StrictModel):
    """One entry of `mxinfra:access`: a principal granted permissions on environments."""

    principal: str = Field(min_length=1)
    environments: list[str] = Field(min_length=1)
    permissions: list[str] = Field(min_length=1)
    allowOnProduction: bool = False
    mfa: bool | None = None
    maxSessionSeconds: int | None = Field(None, ge=900, le=43200)


@dataclass(frozen=True)
class StackConfig:
    """A stack's validated mxinfra config: the app, its environments and the raw access entries."""

    project: str
    stack: str
    app: AppConfig
    environments: tuple[Environment, ...]
    access: tuple[AccessEntry, ...]
    repository: str | None
    raw: RawConfig = field(repr=False)
    # Environments whose name is not a valid label: reported once, their settings still checked against
    # the MDA (one report), never handed to a target.
    misnamed: tuple[Environment, ...] = ()

    def environment_key_issues(self, names: Iterable[str], prefix: str, file: str = "") -> list[ConfigIssue]:
        """Issues for keys of a per-environment map (`<prefix>.<name>`) that name no environment of this
        stack; a declared name that is invalid is reported at its declaration only. One rule, every target."""
        declared = [e.name for e in self.environments]
        known = set(declared) | {e.name for e in self.misnamed}
        return [
            ConfigIssue(f"{prefix}.{name}", f"unknown environment {name!r}", suggest(name, declared) or f"environments of this stack: {', '.join(declared) or 'none'}", file)
            for name in names
            if name not in known
        ]

    def environment(self, name: str) -> Environment:
        """The environment called `name`."""
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)

    def block(self, key: str) -> Any:
        """A raw config value by its full key (e.g. `mxinfra:kubernetes`), or None."""
        return self.raw.values.get(key)


KNOWN_KEYS = {
    "app": "the app (name, package, target)",
    "environments": "the environments of this stack",
    "access": "who may do what on which environment",
    "repository": "URL of the package repository and activity log",
    "signing": "who signs each environment's activity records, and whose records a gated environment trusts",
}


# Field names whose values are never echoed back in an error, secret-marked or not.
def _secret_field(raw: RawConfig, path: str, value: str | None, issues: list[ConfigIssue]) -> Secret | None:
    if value is None:
        return None
    if (issue := plain_text(raw, path, value, raw.source)) is not None:
        issues.append(issue)
    return Secret(value)


def load_stack_config(raw: RawConfig, *, project: str, stack: str) -> StackConfig:
    """Validate the `mxinfra:*` keys of `raw`, collecting every problem into one ConfigError."""
    cfg, issues = collect_stack_config(raw, project=project, stack=stack)
    if issues or cfg is None:
        raise ConfigError(issues, raw.source)
    return cfg


def collect_stack_config(raw: RawConfig, *, project: str, stack: str) -> tuple[StackConfig | None, list[ConfigIssue]]:
    """Validate the `mxinfra:*` keys of `raw`: the config with every environment and access entry that
    parsed (None when the app block did not), and every problem found.

    The caller goes on checking what parsed (against the MDA, the target) so that one report holds
    every problem, not just the first layer's.
    """
    issues: list[ConfigIssue] = []
    file = raw.source
    from .target import installed_targets  # target blocks (mxinfra:aws, ...) belong to installed targets

    valid = list(KNOWN_KEYS) + installed_targets()
    # A misspelt key (mxinfra:enviroments) stands for the one it resembles: what depends on that key
    # is not also reported as wrong (one issue with its hint, not seven knock-on ones).
    misspelt: set[str] = set()
    for key in sorted(raw.values):
        ns, _, name = key.partition(":")
        if ns == NAMESPACE and name not in valid:
            near = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            if near and f"{NAMESPACE}:{near[0]}" not in raw.values:
                misspelt.add(near[0])
            issues.append(ConfigIssue(key, "unknown key", suggest(name, valid) or "valid keys: " + ", ".join(f"mxinfra:{k}" for k in valid), file))

    app_raw = raw.values.get(f"{NAMESPACE}:app")
    app = None
    if app_raw is None and "app" in misspelt:
        pass
    elif app_raw is None:
        issues.append(ConfigIssue(f"{NAMESPACE}:app", "required key is missing", "set name, package and target, e.g. pulumi config set --path mxinfra:app.name orders", file))
    else:
        app, found = parse_model(AppConfig, app_raw, f"{NAMESPACE}:app", file, raw)
        issues += found

    misnamed: list[Environment] = []
    envs = [] if "environments" in misspelt else _environments(raw, stack, issues, misnamed)
    declared = raw.values.get(f"{NAMESPACE}:environments")
    # Entries that failed validation still exist: access entries naming them are not also wrong.
    names = [str(n) for n in declared] if isinstance(declared, Mapping) else [e.name for e in envs]
    check_names = "environments" not in misspelt
    access: list[AccessEntry] = []
    access_raw = raw.values.get(f"{NAMESPACE}:access") or []
    if not isinstance(access_raw, list):
        issues.append(ConfigIssue(f"{NAMESPACE}:access", f"expected a list of entries, got {type(access_raw).__name__}", "each entry: principal, environments, permissions", file))
        access_raw = []
    for i, entry in enumerate(access_raw):
        parsed, found = parse_model(AccessEntry, entry, f"{NAMESPACE}:access[{i}]", file, raw)
        issues += found
        if parsed is not None:
            access.append(parsed)
            for j, env_name in enumerate(parsed.environments if check_names else []):
                if env_name != "*" and env_name not in names:
                    known = f"environments of this stack: {', '.join(names)}" if names else "this stack declares no environment under mxinfra:environments"
                    issues.append(ConfigIssue(f"{NAMESPACE}:access[{i}].environments[{j}]", f"unknown environment {env_name!r}", suggest(env_name, names) or known, file))
    for env in envs:
        src = env.require_promotion_from
        if src is not None and src == env.name:
            issues.append(ConfigIssue(f"{NAMESPACE}:environments.{env.name}.requirePromotionFrom", "an environment cannot require promotion from itself", "name the environment packages must pass first, e.g. acceptance", file))

    repository = raw.values.get(f"{NAMESPACE}:repository")
    if repository is not None:
        from .governance.store import check_url  # pure: parses the URL, no I/O

        try:
            if not isinstance(repository, str):
                raise ValueError(f"expected a URL string, got {type(repository).__name__}")
            check_url(repository)
        except (ValueError, UserError) as e:
            issues.append(ConfigIssue(f"{NAMESPACE}:repository", str(e), "file://PATH, s3://bucket/prefix or azblob://account/container/prefix", file))
            repository = None

    from .governance.signing import check_signing  # pure: the mxinfra:signing schema, no I/O

    issues += check_signing(raw, envs, repository, file)
    issues += check_backups(envs, {e.name: e.backups for e in envs}, file)
    if check_names:
        issues += check_access(access, envs, file)
    if app is None:
        return None, issues
    return StackConfig(project, stack, app, tuple(envs), tuple(access), repository, raw, tuple(misnamed)), issues


_NAMED_MAPS = ("constants", "secretConstants", "runtimeSettings")


def _split_constant_names(body: Any, path: str, raw: RawConfig, issues: list[ConfigIssue]) -> Any:
    """Report (and set aside) constants that `pulumi config set --path` split at the dot of their name:
    `...secretConstants.Encryption.EncryptionKey` writes `Encryption: {EncryptionKey: ...}`."""
    if not isinstance(body, Mapping):
        return body
    out = dict(body)
    for kind in ("constants", "secretConstants"):
        entries = body.get(kind)
        if not isinstance(entries, Mapping):
            continue
        kept = {}
        for module, value in entries.items():
            if not isinstance(value, Mapping) or not value:
                kept[module] = value
                continue
            full = [f"{module}.{k}" for k in value]
            secret = "--secret " if kind == "secretConstants" else ""
            example = full[0]
            issues.append(
                ConfigIssue(
                    f"{path}.{kind}.{module}",
                    f"is a map ({', '.join(repr(n) for n in full)}): `pulumi config set --path` split the constant name at its dot",
                    f"remove it and quote the name: pulumi config set {secret}--path '{path}.{kind}[\"{example}\"]' VALUE",
                    raw.source,
                )
            )
        out[kind] = kept
    return out


def _salvage(body: Any) -> tuple[EnvironmentConfig | None, set[str]]:
    """The environment without the fields (or constant entries) that failed validation, for the checks that
    follow; its problems are reported by the first parse. Returns the fields set aside."""
    if not isinstance(body, Mapping):
        return None, set()
    current = dict(body)
    dropped: set[str] = set()
    for _ in range(64):  # each round removes at least one entry
        try:
            return EnvironmentConfig.model_validate(current), dropped
        except ValidationError as err:
            for e in err.errors():
                loc = e["loc"]
                if not loc:
                    return None, dropped
                key = str(loc[0])
                if key in _NAMED_MAPS and len(loc) > 1 and isinstance(current.get(key), Mapping):
                    current[key] = {k: v for k, v in current[key].items() if str(k) != str(loc[1])}
                else:
                    current.pop(key, None)
                    dropped.add(key)
    return None, dropped


def _secrets_in_clear(raw: RawConfig, path: str, parsed: EnvironmentConfig, issues: list[ConfigIssue]) -> None:
    """A `secure:` value under `constants` or `runtimeSettings` would be written in clear (a ConfigMap, a task
    definition's environment, the state): refused, naming where secrets go instead."""
    marked = [p for p in raw.secret_paths if p.startswith(f"{path}.constants") or p.startswith(f"{path}.runtimeSettings")]
    for kind, names in (("constants", parsed.constants), ("runtimeSettings", parsed.runtimeSettings)):
        for name in sorted(names):
            where = f"{path}.{kind}.{name}"
            if not any(where == m or where.startswith(m + ".") or m == f"{path}.{kind}" for m in marked):
                continue
            if kind == "constants":
                fix = f"move it to secretConstants, which the runtime receives as a secret: pulumi config set --secret --path '{path}.secretConstants[\"{name}\"]' VALUE"
            else:
                fix = "runtime settings are written in clear: keep secrets out of them (a constant that holds a secret belongs under secretConstants)"
            issues.append(ConfigIssue(where, f"is a secret (secure:) under {kind}, which are deployed in plain text", fix, raw.source))


GATE_FIX = (
    "requirePromotionFrom: acceptance, to deploy only packages acceptance ran (mxinfra promote --from acceptance --to {env}); "
    "or, explicitly, ungated: {{reason: \"why {env} may deploy any package\"}}, which every plan and pulumi up warn about"
)


def check_production_gate(path: str, name: str, role: Role, source: str | None, ungated: UngatedConfig | None, file: str = "") -> list[ConfigIssue]:
    """Production is gated by default (issue 19, F6): it takes only packages another environment ran
    (`requirePromotionFrom`) unless it opts out explicitly, with a reason (`ungated: {reason: ...}`)."""
    if ungated is not None and source is not None:
        return [ConfigIssue(f"{path}.ungated", f"contradicts requirePromotionFrom ({source!r}): an environment is gated or not", "keep requirePromotionFrom (gated) or ungated (any package), not both", file)]
    if ungated is not None and role is not Role.PRODUCTION:
        return [
            ConfigIssue(
                f"{path}.ungated",
                f"applies to production environments only: a {role.value} environment takes any package unless it sets requirePromotionFrom",
                "remove it",
                file,
            )
        ]
    if role is Role.PRODUCTION and source is None and ungated is None:
        return [
            ConfigIssue(
                f"{path}.requirePromotionFrom",
                "required: a production environment deploys only packages another environment ran, unless it opts out explicitly",
                GATE_FIX.format(env=name),
                file,
            )
        ]
    return []


def _environments(raw: RawConfig, stack: str, issues: list[ConfigIssue], misnamed: list[Environment]) -> list[Environment]:
    key = f"{NAMESPACE}:environments"
    file = raw.source
    declared = raw.values.get(key)
    if declared is None:
        role = Role.from_name(stack)
        if role is None:
            issues.append(ConfigIssue(key, f"stack {stack!r} is not named after a role, so its environment needs an explicit role", f"add {key}: {{{stack}: {{role: test|acceptance|production}}}}", file))
            return []
        declared = {stack: {}}
    if not isinstance(declared, Mapping):
        issues.append(ConfigIssue(key, f"expected a map of environment name -> settings, got {type(declared).__name__}", "e.g. production: {role: production, instances: 2}", file))
        return []
    envs: list[Environment] = []
    seen: set[str] = set()
    for name, body in declared.items():
        path = f"{key}.{name}"
        name = str(name)
        valid_name = True
        try:
            check_environment_name(name)
        except ValueError as e:
            issues.append(ConfigIssue(path, str(e), label_fix(name, environment=True), file))
            valid_name = False
        if name in seen:
            issues.append(ConfigIssue(path, "duplicate environment name", "each environment needs its own name", file))
            continue
        seen.add(name)
        body = _split_constant_names(body, path, raw, issues)
        parsed, found = parse_model(EnvironmentConfig, body or {}, path, file, raw)
        issues += found
        dropped: set[str] = set()
        if parsed is None:
            # Check everything else of this environment too (its constants against the MDA, its events,
            # its secrets): one report holds every problem, not the first layer's.
            parsed, dropped = _salvage(body)
            if parsed is None:
                continue
        role = parsed.role or Role.from_name(name if valid_name else name.lower())
        if role is None:
            if "role" not in dropped and valid_name:  # a role that failed to parse, or a bad name, is reported already
                issues.append(ConfigIssue(f"{path}.role", "required: the name is not a role, so say which tier it is", "role: test, acceptance or production", file))
            continue
        license = None
        if parsed.license is not None:
            key_secret = _secret_field(raw, f"{path}.license.key", parsed.license.key, issues)
            assert key_secret is not None
            license = License(parsed.license.id, key_secret)
        secret_constants = tuple(
            SecretConstant(n, s)
            for n, v in sorted(parsed.secretConstants.items())
            if (s := _secret_field(raw, f"{path}.secretConstants.{n}", v, issues)) is not None
        )
        _secrets_in_clear(raw, path, parsed, issues)
        if not dropped & {"requirePromotionFrom", "ungated"}:  # a field that failed to parse is reported already
            issues += check_production_gate(path, name, role, parsed.requirePromotionFrom, parsed.ungated, file)
        events = parsed.scheduledEvents if isinstance(parsed.scheduledEvents, str) else tuple(parsed.scheduledEvents)
        (envs if valid_name else misnamed).append(
            Environment(
                name=EnvironmentName(name),
                role=role,
                instances=parsed.instances,
                memory_mb=parsed.memory,
                constants=dict(sorted(parsed.constants.items())),
                secret_constants=secret_constants,
                scheduled_events=events,
                runtime_settings=dict(sorted(parsed.runtimeSettings.items())),
                license=license,
                admin_password=_secret_field(raw, f"{path}.adminPassword", parsed.adminPassword, issues),
                require_promotion_from=parsed.requirePromotionFrom,
                ungated_reason=parsed.ungated.reason if parsed.ungated is not None else None,
                config_path=path,
                backups=Backups.of(parsed.backups),
            )
        )
    for env in envs:
        src = env.require_promotion_from
        if src is not None:
            # The source may live in another stack (one stack per environment), so only its form is checked here.
            try:
                check_environment_name(src)
            except ValueError as e:
                issues.append(ConfigIssue(f"{env.config_path}.requirePromotionFrom", str(e), "name the environment packages must pass first, e.g. acceptance", file))
    return envs
