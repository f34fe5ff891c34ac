"""A small evaluator of identity policies, for asking "does this role allow this exact API call?".

It follows IAM's documented logic for one identity policy: an explicit Deny wins, otherwise some Allow
must match the action, the resource and every condition. Actions and resources match with IAM's `*` and
`?` wildcards; condition operators are the ones the target's documents use (an unknown one fails loudly
instead of being skipped). No policy in the target relies on NotAction or NotResource, so they are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


OPERATORS = frozenset({"StringEquals", "ArnEquals", "StringLike", "ArnLike", "StringNotEquals", "Bool", "NumericLessThanEquals"})
NEGATED = frozenset({"StringNotEquals"})


def _match_values(op: str, expected: Sequence[str], actual: str) -> bool:
    if op in ("StringEquals", "ArnEquals"):
        return actual in expected
    if op in ("StringLike", "ArnLike"):
        return any(_glob(e, actual) for e in expected)
    if op == "StringNotEquals":
        return actual not in expected
    if op == "Bool":
        return str(actual).lower() in [str(e).lower() for e in expected]
    if op == "NumericLessThanEquals":
        return any(float(actual) <= float(e) for e in expected)
    raise AssertionError(f"condition operator {op} not supported by this evaluator")


def _condition(cond: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]) -> bool:
    for op, keys in cond.items():
        if_exists = op.endswith("IfExists")
        base = op[: -len("IfExists")] if if_exists else op
        qualifier, _, base = base.rpartition(":")
        for key, expected in keys.items():
            expected = [str(e) for e in _list(expected)]
            present = key in context
            if base == "Null":
                want_absent = expected == ["true"]
                if present == want_absent:
                    return False
                continue
            if base not in OPERATORS:
                raise AssertionError(f"condition operator {base} not supported by this evaluator")
            if not present:
                # IAM: a missing key satisfies ...IfExists, ForAllValues and (outside ForAnyValue) the negated
                # operators (StringNotEquals of a tag the resource lacks is true: a Deny on it applies)
                if if_exists or qualifier == "ForAllValues" or (base in NEGATED and qualifier != "ForAnyValue"):
                    continue
                return False
            actual = context[key]
            if qualifier == "ForAllValues":
                if not all(_match_values(base, expected, str(a)) for a in _list(actual)):
                    return False
            elif qualifier == "ForAnyValue":
                if not any(_match_values(base, expected, str(a)) for a in _list(actual)):
                    return False
            elif isinstance(actual, list):
                raise AssertionError(f"{key} is multivalued: use ForAllValues/ForAnyValue")
            elif not _match_values(base, expected, str(actual)):
                return False
    return True


def _matches(stmt: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]) -> bool:
    assert "NotAction" not in stmt and "NotResource" not in stmt
    if not any(_glob(a, action, case=False) for a in _list(stmt["Action"])):
        return False
    if not any(_glob(r, resource) for r in _list(stmt["Resource"])):
        return False
    return _condition(stmt.get("Condition", {}), context)


def allows(doc: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any] | None = None) -> bool:
    """Whether the identity policy `doc` allows `action` on `resource` with the request `context`."""
    context = dict(context or {})
    stmts = doc["Statement"]
    if any(s["Effect"] == "Deny" and _matches(s, action, resource, context) for s in stmts):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, action, resource, context) for s in stmts)




def denies(doc: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any] | None = None) -> bool:
    """Whether a Deny of the resource policy `doc` (Principal "*") refuses `action` on `resource` with the
    request `context`: what a bucket policy adds to the caller's own policy."""
    stmts = doc["Statement"]
    assert all(s.get("Principal", "*") == "*" for s in stmts if s["Effect"] == "Deny"), "only Principal \"*\" Denies are modelled"
    return any(s["Effect"] == "Deny" and _matches(s, action, resource, dict(context or {})) for s in stmts)
