"""Registry credentials for Azure Container Registry (the `mxinfra.registry_credentials` plug-in of mxinfra-azure).

For `<name>.azurecr.io` (and `.azurecr.cn`, `.azurecr.us` of Azure China and Azure US Government), what
`az acr login` does: an Entra ID access token from azure-identity's DefaultAzureCredential (environment,
workload or managed identity, Azure CLI, ...) for the cloud's Resource Manager, exchanged at
`https://<registry>/oauth2/exchange` for an ACR refresh token. The registry takes that token as the
password of user 00000000-0000-0000-0000-000000000000 at its token service. Any other host: None.
A sovereign cloud's sign-in authority comes from the credential's own settings (AZURE_AUTHORITY_HOST).
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mxinfra.registry import Credentials, RegistryAuthError, RegistryUnavailable

ACR_USER = "00000000-0000-0000-0000-000000000000"
# The Resource Manager audience of each cloud's registry suffix (what `az acr login` asks a token for).
ARM_SCOPES = {
    "io": "https://management.azure.com/.default",
    "cn": "https://management.chinacloudapi.cn/.default",
    "us": "https://management.usgovcloudapi.net/.default",
}
_ACR_HOST = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\.azurecr\.(?P<cloud>io|cn|us)")
_MAX_RESPONSE = 1 << 20


def acr_scope(registry_host: str) -> str | None:
    """The token scope for an ACR login server, or None when the host is not one."""
    m = _ACR_HOST.fullmatch(registry_host.lower())
    return ARM_SCOPES[m["cloud"]] if m else None


def acr_credentials(registry_host: str, *, credential: Any = None, base_url: str | None = None, timeout: float = 30.0) -> Credentials | None:
    """Credentials for an ACR login server (user 00000000-..., an ACR refresh token), or None for another host.

    `credential` is an azure-core TokenCredential (default: DefaultAzureCredential); `base_url` is where
    the registry is asked (default `https://<registry_host>`)."""
    scope = acr_scope(registry_host)
    if scope is None:
        return None
    host = registry_host.lower()
    from azure.core.exceptions import ClientAuthenticationError

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    try:
        access = credential.get_token(scope).token
    except ClientAuthenticationError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RegistryAuthError(
            f"ACR registry {host}: no Azure credential could get a token for {scope} ({first}): "
            "sign in with `az login`, or set a service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET) "
            "or a managed identity; or `docker login` to it"
        ) from None
    refresh = exchange_refresh_token(host, access, base_url=base_url or f"https://{host}", timeout=timeout)
    return Credentials(ACR_USER, refresh, source="an ACR refresh token for the Azure identity")


def exchange_refresh_token(registry_host: str, access_token: str, *, base_url: str, timeout: float = 30.0) -> str:
    """ACR's refresh token for an Entra ID access token (POST <base_url>/oauth2/exchange)."""
    url = base_url.rstrip("/") + "/oauth2/exchange"
    form = urllib.parse.urlencode({"grant_type": "access_token", "service": registry_host, "access_token": access_token}).encode()
    req = urllib.request.Request(url, data=form, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"})
    # No proxy from the environment decides where the token goes (as mxinfra.registry), no redirect follows it.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context()), _NoRedirect()
    )
    what = f"ACR registry {registry_host}"
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read(_MAX_RESPONSE)
    except urllib.error.HTTPError as exc:
        detail = _errors(exc.read(64 << 10)).replace(access_token, "***") or exc.reason
        raise RegistryAuthError(
            f"{what} refused to exchange the Azure identity's token for a refresh token ({exc.code} {detail}): "
            "is it the right tenant, and does the identity have a role on the registry (AcrPull)?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailable(f"{what} cannot be reached for its token exchange ({url}): {reason}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    token = doc.get("refresh_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError(f"{what}: its token exchange answered {len(body)} bytes without a refresh_token (not shown)")
    return token


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is reported as an HTTPError


def _errors(body: bytes) -> str:
    """The registry's error codes and messages (distribution's JSON), briefly."""
    try:
        doc = json.loads(body)
        errs = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in doc.get("errors", []) if isinstance(e, dict)]
        return "; ".join(errs)[:300]
    except Exception:  # noqa: BLE001 (a body that is not the spec's JSON only loses the detail)
        return ""
