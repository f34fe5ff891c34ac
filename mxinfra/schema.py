"""Config validation every block shares, the core's and each target's: the one strict base model, the
raw stack values with their secret marks, and pydantic's errors turned into located config issues.
Pure (pydantic only)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigIssue, shown, suggest

NAMESPACE = "mxinfra"
_SECRET_MARK = "[secret]"


class StrictModel(BaseModel):
    """A config block: unknown keys refused, aliases accepted, immutable once validated."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


@dataclass(frozen=True)
class RawConfig:
    """Every config key of a stack (`ns:key` -> value) and which of them, or which paths inside them, are secrets."""

    values: Mapping[str, Any]
    secret_paths: frozenset[str] = frozenset()
    source: str = ""
    warnings: tuple[str, ...] = ()  # about the stack file itself, shown with every environment

    def is_secret(self, path: str) -> bool:
        """True when `path` (e.g. `mxinfra:environments.production.adminPassword`) or a parent is secret."""
        parts = path.split(".")
        return any(".".join(parts[:i]) in self.secret_paths for i in range(1, len(parts) + 1))


_SECRETISH = re.compile(r"password|secret|token|credential|key$|url$|license|database|storage|kubeconfig", re.IGNORECASE)


def _real_loc(value: Any, loc: tuple[Any, ...]) -> list[str]:
    """The parts of a pydantic error location that are keys of the user's input.

    pydantic inserts the member of a union it tried (`list[str]`, `literal['ALL','NONE']`, `int`, a
    model's class name) into the location; those are internals, not keys a user can find in the file.
    """
    out: list[str] = []
    current: Any = value
    for part in loc:
        if isinstance(current, Mapping):
            match = next((k for k in current if k == part or str(k) == str(part)), _ABSENT)
            if match is not _ABSENT:
                current = current[match]
                out.append(str(part))
            elif not _is_tag(part):
                out.append(str(part))  # a key the input lacks (required and missing)
                current = _ABSENT
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            out.append(f"[{part}]")
        # anything else sits below a scalar or a list: a union member's tag
    return out


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in _TYPE_TAGS or part[:1].isupper())


_ABSENT = object()
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "function-after", "function-before", "function-wrap"})
# pydantic's type errors, as the noun a user expects ("expected a string, a whole number or a boolean")
_NOUNS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a map",
    "model_type": "a map",
    "model_attributes_type": "a map",
}


def _join(prefix: str, loc: list[str]) -> str:
    path = prefix
    for part in loc:
        path += part if part.startswith("[") else f".{part}"
    return path


def _message(e: Any) -> str:
    ctx = e.get("ctx") or {}
    if e["type"] in ("less_than_equal", "less_than") and ("le" in ctx or "lt" in ctx):
        return f"expected at most {ctx.get('le', ctx.get('lt'))}"
    if e["type"] in ("greater_than_equal", "greater_than") and ("ge" in ctx or "gt" in ctx):
        return f"expected at least {ctx.get('ge', ctx.get('gt'))}"
    if e["type"] == "int_parsing_size":
        return "expected a whole number (this one has too many digits)"
    msg = str(e["msg"])
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _issues_from(err: ValidationError, prefix: str, model: type[BaseModel], file: str, raw: RawConfig | None, value: Any = None) -> list[ConfigIssue]:
    grouped: dict[str, list[Any]] = {}
    locs: dict[str, list[str]] = {}
    for e in err.errors():
        loc = _real_loc(value, tuple(e["loc"]))
        path = _join(prefix, loc)
        grouped.setdefault(path, []).append(e)
        locs[path] = loc
    issues = []
    for path, errors in grouped.items():
        loc = [p for p in locs[path] if not p.startswith("[")]
        e = errors[0]
        fix = ""
        if e["type"] == "extra_forbidden":
            fix = suggest(loc[-1], _fields_at(model, loc[:-1])) or f"valid keys: {', '.join(_fields_at(model, loc[:-1]))}"
            message = "unknown key"
        elif e["type"] == "missing":
            message = "required key is missing"
            fix = _description(model, loc)
        else:
            hidden = any(_SECRETISH.search(part) for part in [prefix, *loc]) or (raw is not None and raw.is_secret(path))
            got = e.get("input")
            # Containers are described, not echoed: a secret may sit anywhere inside them.
            display = _SECRET_MARK if hidden else (type(got).__name__ if isinstance(got, (dict, list)) else shown(got))
            if all(x["type"] in _NOUNS for x in errors):
                # one or several members of a union refused the type: say what would have done
                nouns = list(dict.fromkeys(_NOUNS[x["type"]] for x in errors))
                expected = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]
                message = f"expected {expected} (got {display})"
            else:
                message = "; or ".join(dict.fromkeys(_message(x) for x in errors))
                message, _, hint = message.partition("; did you mean ")
                fix = f"did you mean {hint}" if hint else fix
                message = f"{message} (got {display})"
        issues.append(ConfigIssue(path, message, fix, file))
    return issues


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names valid at `loc` inside `model`, following nested models where it can."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(part)
            if f is None:
                continue
            current = _inner_model(f.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _description(model: type[BaseModel], loc: list[str]) -> str:
    if len(loc) == 1 and loc[0] in model.model_fields:
        return model.model_fields[loc[0]].description or ""
    return ""


def parse_model(model: type[BaseModel], value: Any, path: str, file: str = "", raw: RawConfig | None = None) -> tuple[Any, list[ConfigIssue]]:
    """Validate `value` against `model`; returns (instance or None, issues located under `path`)."""
    try:
        return model.model_validate(value), []
    except ValidationError as err:
        return None, _issues_from(err, path, model, file, raw, value)
