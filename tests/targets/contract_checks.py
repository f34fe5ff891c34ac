"""Pure checks of the conformance suite (tests/targets/test_target_contract.py) on rendered resources:
sessions of production grants (MFA, at most 8 hours), secret values and machine paths in inputs.

Each function reads what a plan rendered (mxinfra.mockrun registrations, or PlanResult.resources()) and
returns its problems as readable lines (empty: the invariant holds), so a test can assert on them and a
negative test can show that a regression makes them non-empty."""

from __future__ import annotations

import base64
import hashlib
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mxinfra.testing import Computed, Sealed

# --- MFA and at most 8 hours ---------------------------------------------------------------------------

_ASSUME = ("sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity")
# IAM's default MaxSessionDuration when a role does not set it
AWS_DEFAULT_SESSION = 3600


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _aws_principal_is_people(stmt: Mapping[str, Any]) -> bool:
    """Whether the statement lets an identity that a person can hold assume the role (not only a service)."""
    if "NotPrincipal" in stmt:
        return True
    principal = stmt.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and any(k != "Service" for k in principal)


def _one_condition(cond: Mapping[str, Any], operator: str, key: str) -> list[str] | None:
    block = cond.get(operator)
    if not isinstance(block, Mapping):
        return None
    for k, v in block.items():
        if k.lower() == key.lower():
            return [str(x).lower() for x in _listed(v)]
    return None


def aws_session_problems(roles: Iterable[Mapping[str, Any]], limit: int) -> tuple[list[str], int]:
    """Every AWS IAM role (rendered `aws:iam/role:Role`) whose trust lets a person's identity assume it must
    require MFA (`Bool aws:MultiFactorAuthPresent true`, no IfExists: long-term keys carry no such key) and
    bound the MFA's age so that age at assume time plus `MaxSessionDuration` is at most `limit` seconds (IAM
    checks the age only when the role is assumed). Returns (problems, number of statements a person can assume)."""
    problems, people = [], 0
    for role in roles:
        name = role["name"]
        inputs = role["inputs"]
        session = inputs.get("maxSessionDuration", AWS_DEFAULT_SESSION)
        trust = inputs["assumeRolePolicy"]
        if not isinstance(trust, str):
            problems.append(f"{name}: the trust policy is not rendered ({trust!r})")
            continue
        doc = json.loads(trust)
        for stmt in _listed(doc.get("Statement", [])):
            if stmt.get("Effect") != "Allow" or not _aws_principal_is_people(stmt):
                continue
            actions = _listed(stmt.get("Action", []))
            if not any(fnmatch.fnmatchcase(a.lower(), x.lower()) for x in actions for a in _ASSUME):
                continue
            people += 1
            cond = stmt.get("Condition") or {}
            present = _one_condition(cond, "Bool", "aws:MultiFactorAuthPresent")
            if present != ["true"]:
                problems.append(f"{name}: a person assumes it without MFA (trust needs Bool aws:MultiFactorAuthPresent true; has {cond or 'no condition'})")
            ages = [a for op in ("NumericLessThanEquals", "NumericLessThan") if (a := _one_condition(cond, op, "aws:MultiFactorAuthAge")) is not None]
            if not ages:
                problems.append(f"{name}: the MFA's age is not bounded (aws:MultiFactorAuthAge), so one MFA prompt lasts for ever")
                continue
            age = min(int(x) for a in ages for x in a)
            if not isinstance(session, int):
                problems.append(f"{name}: MaxSessionDuration is not rendered ({session!r})")
            elif age + session > limit:
                problems.append(f"{name}: MFA age {age}s + MaxSessionDuration {session}s = {age + session}s, beyond {limit}s")
    return problems, people


_ISO = re.compile(r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?")


def iso_seconds(text: Any) -> int | None:
    """Seconds of an ISO 8601 duration (PT8H, PT90M, P1D); None when it is not one."""
    m = _ISO.fullmatch(str(text)) if isinstance(text, str) else None
    if m is None or not any(m.groupdict().values()):
        return None
    return int(m["d"] or 0) * 86400 + int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)


def azure_policy_problems(name: str, rules: list[Mapping[str, Any]], limit: int) -> list[str]:
    """A PIM role management policy of a production role: activation (EndUser) and an administrator's
    active assignment (Admin) need MFA (activation: PIM's, or an enabled Conditional Access authentication
    context, whose policy demands it), expire, and last at most `limit` seconds."""
    problems = []
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for r in rules:
        by_id.setdefault(str(r.get("id")), []).append(r)
    for caller in ("EndUser", "Admin"):
        enable = by_id.get(f"Enablement_{caller}_Assignment", [])
        expire = by_id.get(f"Expiration_{caller}_Assignment", [])
        context = by_id.get(f"AuthenticationContext_{caller}_Assignment", [])
        by_context = caller == "EndUser" and len(context) == 1 and context[0].get("isEnabled") is True and bool(context[0].get("claimValue"))
        if not by_context and (len(enable) != 1 or "MultiFactorAuthentication" not in (enable[0].get("enabledRules") or [])):
            problems.append(f"{name}: {caller} activation does not require MFA (Enablement_{caller}_Assignment: {enable})")
        if len(expire) != 1 or expire[0].get("isExpirationRequired") is not True:
            problems.append(f"{name}: {caller} assignments need not expire (Expiration_{caller}_Assignment: {expire})")
            continue
        seconds = iso_seconds(expire[0].get("maximumDuration"))
        if seconds is None or seconds > limit:
            problems.append(f"{name}: {caller} assignments last {expire[0].get('maximumDuration')!r}, beyond {limit}s")
    return problems


# --- secrets and machine paths in inputs -----------------------------------------------------------------


def leaves(value: Any, path: str = "", *, secrets: bool) -> Iterator[tuple[str, Any]]:
    """(path, leaf) of every key and leaf of `value`: with `secrets`, Pulumi secrets unwrapped (what the
    state holds); without, a Sealed subtree skipped (what is outside secrets)."""
    if isinstance(value, Sealed):
        if secrets:
            yield from leaves(value.value, path, secrets=True)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield f"{path}.{k}" if path else str(k), k
            yield from leaves(v, f"{path}.{k}" if path else str(k), secrets=secrets)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]", secrets=secrets)
    elif not isinstance(value, Computed):
        yield path, value


def _forms(secret: str) -> set[str]:
    """The plaintext and the encodings a manifest or a JSON document may carry it in."""
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex()}


def secret_leaks(registrations: Iterable[Any], secrets: Mapping[str, str]) -> list[str]:
    """Every input (outside a Pulumi secret) of every registration that holds one of `secrets` (name ->
    plaintext), as plaintext, base64 or hex."""
    forms = {name: _forms(value) for name, value in secrets.items()}
    out = []
    for reg in registrations:
        for path, leaf in leaves(reg.inputs, secrets=False):
            text = leaf if isinstance(leaf, str) else json.dumps(leaf) if isinstance(leaf, (Mapping, list)) else None
            if text is None:
                continue
            for name, fs in forms.items():
                if any(f in text for f in fs):
                    out.append(f"{reg.type} {reg.name}: input {path} holds the {name} in plain text")
    return out


def machine_path_leaks(registrations: Iterable[Any], paths: Iterable[Path]) -> list[str]:
    """Every input (secret or not: both reach the state) that names one of `paths` (absolute directories of
    this machine) as a path: the directory itself or anything below it."""
    patterns = []
    for p in {str(x) for x in paths if str(x) not in ("", "/")}:
        # the directory as a whole path component: /root, /root/x, not /rootfs or /tmp/pytest-of-root
        patterns.append((p, re.compile(r"(?<![\w.~-])" + re.escape(p) + r"(?![\w.-])")))
    out = []
    for reg in registrations:
        for path, leaf in leaves(reg.inputs, secrets=True):
            if not isinstance(leaf, str):
                continue
            for p, rx in patterns:
                if rx.search(leaf):
                    out.append(f"{reg.type} {reg.name}: input {path} names {p}: {leaf[:160]!r}")
    return out


# Known plaintexts for the secrets of a stack: distinctive, and free of what JSON, URLs or YAML would escape.
KNOWN_SECRETS = {
    "adminPassword": "CtrAdminPw7f3a9c1d2e4b",
    "license key": "CtrLicenceKey5b7d9f1a3c5e7a9b",
    "secret constant": "CtrSecretConst8e0a2c4e6a8c0e2f4a6b8c0d",
    "database password": "CtrDbPw3c5e7a9b1d3f",
    "storage secret": "CtrStorageSecret9a1c3e5a7c9e1a3c5e7a9c1e",
    "storage key id": "AKIACTR7F3A9C1D2E4B6",
    "API credential": "CtrApiClientSecret2d4f6b8d0f2b4d6f",
}


def _known(key: str, path: str) -> tuple[str, str, str | None]:
    """(name, value, secret inside the value) for a secure node at `path` ending in `key`."""
    if key == "adminPassword":
        return "adminPassword", KNOWN_SECRETS["adminPassword"], None
    if path.endswith(".license.key"):
        return "license key", KNOWN_SECRETS["license key"], None
    if ".secretConstants." in path:
        return "secret constant", KNOWN_SECRETS["secret constant"], None
    if key == "url" and ".database" in path:
        pw = KNOWN_SECRETS["database password"]
        return "database URL", f"postgres://orders:{pw}@db.example.com:5432/orders", pw
    if key in ("password",):
        return "database password", KNOWN_SECRETS["database password"], None
    if key == "accessKeyId":
        return "storage key id", KNOWN_SECRETS["storage key id"], None
    if key in ("clientSecret",):
        return "API credential", KNOWN_SECRETS["API credential"], None
    if "storage" in path:
        return "storage secret", KNOWN_SECRETS["storage secret"], None
    return f"secret at {path}", "CtrSecret" + hashlib.sha256(path.encode()).hexdigest()[:24], None


def seal_known_secrets(config: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Replace every `{secure: ...}` of a stack's config by a known plaintext, in place. Returns the config
    paths to mark secret (as the engine would for `pulumi config set --secret --path`) and name -> plaintext
    of every secret value to look for."""
    paths: list[str] = []
    found: dict[str, str] = {}

    def walk(value: Any, path: str, key: str) -> Any:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                name, plain, inner = _known(key, path)
                paths.append(path)
                found[name] = plain
                if inner is not None:
                    found[f"{name} password"] = inner
                return plain
            return {k: walk(v, f"{path}.{k}", str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]", key) for i, v in enumerate(value)]
        return value

    for k in list(config):
        config[k] = walk(config[k], k, k)
    return paths, found
