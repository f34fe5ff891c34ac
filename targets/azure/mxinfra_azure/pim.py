"""Privileged Identity Management: eligibility instead of standing access, and the activation rules of
each role at the environment's scope (MFA, at most 8 hours, admin assignments expiring).

Azure creates a role management policy for every role at every scope by itself: it cannot be created,
only found and updated. Its name (a GUID) is found the way Azure documents it: list the policy
assignments at the scope, filtered by the role definition id (`GET {scope}/providers/Microsoft.Authorization/
roleManagementPolicyAssignments?$filter=roleDefinitionId eq '{id}'`), and take the assignment's
`policyId`. That lookup is a dynamic resource (`PolicyLookup`), so it runs only when Pulumi applies
(never in a plan or a preview) and is re-run only when the role or scope changes; the HTTP call takes
its base URL and token as arguments, so tests drive it against a local server.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

ARM = "https://management.azure.com"
API_VERSION = "2020-10-01"
HOUR = 3600


class PolicyNotFound(RuntimeError):
    """The scope has no role management policy for the role (Azure always has one: a wrong id or scope)."""


def _default_token() -> str:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential().get_token(f"{ARM}/.default").token


def find_policy(scope: str, role_definition_id: str, *, endpoint: str = ARM, token: Callable[[], str] | None = None, timeout: float = 30) -> str:
    """The name of the role management policy that governs `role_definition_id` at `scope` (the token: Azure
    Identity's DefaultAzureCredential unless given)."""
    token = token or _default_token
    query = urllib.parse.urlencode({"api-version": API_VERSION, "$filter": f"roleDefinitionId eq '{role_definition_id}'"}, quote_via=urllib.parse.quote)
    url = f"{endpoint.rstrip('/')}{scope}/providers/Microsoft.Authorization/roleManagementPolicyAssignments?{query}"
    while url:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token()}", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (an https ARM URL, or a test's loopback)
            page = json.load(response)
        for item in page.get("value", []):
            props = item.get("properties") or {}
            if str(props.get("roleDefinitionId", "")).lower() == role_definition_id.lower() and props.get("policyId"):
                return str(props["policyId"]).rstrip("/").rsplit("/", 1)[-1]
        url = page.get("nextLink")
    raise PolicyNotFound(f"no role management policy for {role_definition_id} at {scope}")


class PolicyLookupProvider(ResourceProvider):
    """Finds the policy when the lookup is created (or its role or scope change)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Look the policy up."""
        name = find_policy(props["scope"], props["roleDefinitionId"], endpoint=props.get("endpoint") or ARM)
        return CreateResult(id_=name, outs={**props, "policy_name": name})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Another role or scope is another policy: look again."""
        changed = [k for k in ("scope", "roleDefinitionId", "endpoint") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, stables=[], delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The policy does not go away: keep what was found."""
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the policy belongs to Azure."""


class PolicyLookup(Resource):
    """The name of the role management policy of one role at one scope (type pulumi-python:dynamic:Resource)."""

    policy_name: Any

    def __init__(self, name: str, scope: Any, role_definition_id: Any, opts: Any = None, endpoint: str | None = None) -> None:
        super().__init__(PolicyLookupProvider(), name, {"scope": scope, "roleDefinitionId": role_definition_id, "endpoint": endpoint, "policy_name": None}, opts)


def duration(seconds: int) -> str:
    """ISO 8601 duration of whole hours or minutes: PT8H, PT90M."""
    return f"PT{seconds // HOUR}H" if seconds % HOUR == 0 else f"PT{seconds // 60}M"


def policy_rules(max_session_seconds: int, authentication_context: str | None = None) -> list[dict[str, Any]]:
    """The rules mxinfra sets on a production role's policy (`authentication_context`: the Conditional
    Access context an activation requires instead of PIM's own MFA check)."""

    def target(caller: str, level: str) -> dict[str, Any]:
        return {"caller": caller, "operations": ["All"], "level": level}

    session = duration(max_session_seconds)
    # PIM's own MFA check takes the MFA claim of any earlier sign-in (refreshed tokens keep it), so one MFA
    # could cover activation after activation. An authentication context sends each activation through
    # Conditional Access, whose policy demands MFA at that sign-in. PIM takes one or the other, not both.
    if authentication_context is None:
        activation = [
            {"id": "Enablement_EndUser_Assignment", "rule_type": "RoleManagementPolicyEnablementRule", "enabled_rules": ["MultiFactorAuthentication", "Justification"], "target": target("EndUser", "Assignment")},
            # stated off, not left out: an update keeps the rules it omits, so a context set before and
            # taken out of the config would stay in force beside PIM's MFA, which Azure refuses together
            {"id": "AuthenticationContext_EndUser_Assignment", "rule_type": "RoleManagementPolicyAuthenticationContextRule", "is_enabled": False, "target": target("EndUser", "Assignment")},
        ]
    else:
        activation = [
            {"id": "Enablement_EndUser_Assignment", "rule_type": "RoleManagementPolicyEnablementRule", "enabled_rules": ["Justification"], "target": target("EndUser", "Assignment")},
            {
                "id": "AuthenticationContext_EndUser_Assignment",
                "rule_type": "RoleManagementPolicyAuthenticationContextRule",
                "is_enabled": True,
                "claim_value": authentication_context,
                "target": target("EndUser", "Assignment"),
            },
        ]
    return [
        # Activating an eligible role requires MFA (or the authentication context) and a justification.
        *activation,
        # An activation lasts the session at most (8 hours on production).
        {"id": "Expiration_EndUser_Assignment", "rule_type": "RoleManagementPolicyExpirationRule", "is_expiration_required": True, "maximum_duration": session, "target": target("EndUser", "Assignment")},
        # An administrator's direct active assignment also needs MFA and expires as an activation does.
        {"id": "Enablement_Admin_Assignment", "rule_type": "RoleManagementPolicyEnablementRule", "enabled_rules": ["MultiFactorAuthentication", "Justification"], "target": target("Admin", "Assignment")},
        {"id": "Expiration_Admin_Assignment", "rule_type": "RoleManagementPolicyExpirationRule", "is_expiration_required": True, "maximum_duration": session, "target": target("Admin", "Assignment")},
        # Eligibility itself is Pulumi's to manage: it does not expire.
        {"id": "Expiration_Admin_Eligibility", "rule_type": "RoleManagementPolicyExpirationRule", "is_expiration_required": False, "target": target("Admin", "Eligibility")},
    ]
