"""The PIM policy lookup against a local HTTP server that answers as ARM's roleManagementPolicyAssignments list does."""

from __future__ import annotations

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mxinfra_azure import pim

SCOPE = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/orders-production-rg"
ROLE = "/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.Authorization/roleDefinitions/0b1c2d3e-1111-4222-8333-444455556666"
OTHER = "/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
POLICY = "7a1e0c2f-5b3d-4e6f-8a9b-0c1d2e3f4a5b"


def assignment(role: str, policy: str) -> dict:
    return {
        "id": f"{SCOPE}/providers/Microsoft.Authorization/roleManagementPolicyAssignments/{policy}_{role.rsplit('/', 1)[1]}",
        "type": "Microsoft.Authorization/RoleManagementPolicyAssignment",
        "properties": {"scope": SCOPE, "roleDefinitionId": role, "policyId": f"{SCOPE}/providers/Microsoft.Authorization/roleManagementPolicies/{policy}"},
    }


@pytest.fixture
def arm():
    """A loopback server with two pages of assignments; records every request."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            seen.append({"path": url.path, "query": query, "auth": self.headers.get("Authorization")})
            if "page" in query:
                body = {"value": [assignment(ROLE, POLICY)]}
            else:
                # the first page holds another role's assignment and links to the next page
                body = {"value": [assignment(OTHER, "00000000-0000-0000-0000-00000000dead")], "nextLink": f"http://127.0.0.1:{self.server.server_port}{url.path}?{url.query}&page=2"}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_finds_the_policy_of_the_role_at_the_scope(arm):
    endpoint, seen = arm
    assert pim.find_policy(SCOPE, ROLE, endpoint=endpoint, token=lambda: "tok-123") == POLICY
    first = seen[0]
    assert first["path"] == f"{SCOPE}/providers/Microsoft.Authorization/roleManagementPolicyAssignments"
    assert first["query"]["$filter"] == [f"roleDefinitionId eq '{ROLE}'"]
    assert first["query"]["api-version"] == [pim.API_VERSION]
    assert first["auth"] == "Bearer tok-123"
    assert len(seen) == 2  # followed nextLink past the other role's assignment


def test_no_policy_is_an_error(arm):
    endpoint, _ = arm
    missing = ROLE[:-4] + "ffff"
    with pytest.raises(pim.PolicyNotFound):
        pim.find_policy(SCOPE, missing, endpoint=endpoint, token=lambda: "t")


def test_provider_create_returns_the_name(arm, monkeypatch):
    endpoint, _ = arm
    monkeypatch.setattr(pim, "_default_token", lambda: "from-credential")
    result = pim.PolicyLookupProvider().create({"scope": SCOPE, "roleDefinitionId": ROLE, "endpoint": endpoint})
    assert result.id == POLICY and result.outs["policy_name"] == POLICY
    assert arm[1][0]["auth"] == "Bearer from-credential"


def test_diff_looks_again_only_for_another_role_or_scope():
    p = pim.PolicyLookupProvider()
    same = {"scope": SCOPE, "roleDefinitionId": ROLE, "endpoint": None}
    assert p.diff(POLICY, {**same, "policy_name": POLICY}, same).changes is False
    d = p.diff(POLICY, same, {**same, "roleDefinitionId": OTHER})
    assert d.changes is True and d.replaces == ["roleDefinitionId"]


def test_policy_rules():
    rules = {r["id"]: r for r in pim.policy_rules(8 * 3600)}
    assert rules["Enablement_EndUser_Assignment"]["enabled_rules"] == ["MultiFactorAuthentication", "Justification"]
    assert rules["Expiration_EndUser_Assignment"]["maximum_duration"] == "PT8H"
    assert rules["Expiration_Admin_Assignment"]["is_expiration_required"] is True
    # stated off (an update keeps the rules it omits: a context set before would stay in force)
    assert rules["AuthenticationContext_EndUser_Assignment"]["is_enabled"] is False and "claim_value" not in rules["AuthenticationContext_EndUser_Assignment"]
    # with a Conditional Access context: it, not PIM's MFA, guards activation; an admin's assignment keeps MFA
    rules = {r["id"]: r for r in pim.policy_rules(8 * 3600, "c3")}
    assert rules["AuthenticationContext_EndUser_Assignment"]["claim_value"] == "c3" and rules["AuthenticationContext_EndUser_Assignment"]["is_enabled"] is True
    assert rules["Enablement_EndUser_Assignment"]["enabled_rules"] == ["Justification"]
    assert rules["Enablement_Admin_Assignment"]["enabled_rules"] == ["MultiFactorAuthentication", "Justification"]


def test_the_contract_takes_an_authentication_context_for_activation_only():
    """The conformance check of a production role's policy (contract_checks.azure_policy_problems): an
    enabled context with a claim stands for PIM's MFA on activation; a disabled one, one without a claim,
    or one on the admin side does not."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from contract_checks import azure_policy_problems

    def rule(id_: str, **kw: Any) -> dict[str, Any]:
        return {"id": id_, **kw}

    expiring = [rule(f"Expiration_{c}_Assignment", isExpirationRequired=True, maximumDuration="PT8H") for c in ("EndUser", "Admin")]
    admin_mfa = rule("Enablement_Admin_Assignment", enabledRules=["MultiFactorAuthentication", "Justification"])
    by_context = [rule("Enablement_EndUser_Assignment", enabledRules=["Justification"]), admin_mfa, *expiring]
    assert azure_policy_problems("p", [*by_context, rule("AuthenticationContext_EndUser_Assignment", isEnabled=True, claimValue="c3")], 8 * 3600) == []
    for context in (rule("AuthenticationContext_EndUser_Assignment", isEnabled=False, claimValue="c3"), rule("AuthenticationContext_EndUser_Assignment", isEnabled=True, claimValue="")):
        (problem,) = azure_policy_problems("p", [*by_context, context], 8 * 3600)
        assert "EndUser activation does not require MFA" in problem
    # the admin side keeps PIM's MFA: a context there does not stand for it
    no_admin_mfa = [rule("Enablement_EndUser_Assignment", enabledRules=["MultiFactorAuthentication"]), rule("Enablement_Admin_Assignment", enabledRules=["Justification"]), *expiring]
    (problem,) = azure_policy_problems("p", [*no_admin_mfa, rule("AuthenticationContext_Admin_Assignment", isEnabled=True, claimValue="c3")], 8 * 3600)
    assert "Admin activation does not require MFA" in problem
