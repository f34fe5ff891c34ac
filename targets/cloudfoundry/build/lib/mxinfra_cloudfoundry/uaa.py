"""UAA tokens for the Cloud Controller: client credentials or password grant, from the stack's config or
the environment, read when a provider operation runs.

Where the credentials come from (the first that gives one wins):

1. `mxinfra:cloudfoundry.credentials` in the stack config: `{clientId, clientSecret}` (client
   credentials) or `{passwordGrant: {username, password, origin, clientId}}`, the secret fields stored
   as Pulumi secrets (a plain-text one is refused by `check`). The dynamic providers receive the stack's
   config from the engine in `configure` (never as a resource input) and keep it in this process only
   (`configure_from_stack`), so it never reaches the Pulumi state, a plan or a rendered manifest. The
   stack's own, reviewed credentials win over whatever a shell happens to export.
2. The environment of `pulumi up` (and of `mxinfra access`, which reads the stack file offline and so
   cannot decrypt its secrets):

| variable | meaning |
|---|---|
| `CF_CLIENT_ID`, `CF_CLIENT_SECRET` | a UAA client with the client-credentials grant (a technical user) |
| `CF_USERNAME`, `CF_PASSWORD` | the password grant (with `CF_CLIENT_ID`, default `cf`, and an empty secret, as the cf CLI) |
| `CF_ORIGIN` | the user's identity provider for the password grant (`login_hint`), e.g. `sap.ids` |
| `CF_UAA_URL` | the UAA's URL; by default taken from the API's root document (`links.uaa`, then `links.login`) |

A token is refreshed shortly before it expires (with the refresh token when UAA issued one, otherwise by
a new grant) and whenever the Cloud Controller answers 401 (`invalidate`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from mxinfra.errors import UserError

REFRESH_MARGIN_SECONDS = 30
BLOCK = "mxinfra:cloudfoundry"


class CredentialsError(UserError):
    """No usable credentials in the environment, or UAA refused them."""


@dataclass(frozen=True)
class Credentials:
    """A UAA grant and the client it is made with; `source` says where they came from. Never printed."""

    grant: Mapping[str, str] = field(repr=False)
    client: tuple[str, str] = field(repr=False)
    uaa_url: str | None = None
    source: str = "environment"

    def __str__(self) -> str:  # a log line or an error never shows the secret
        return f"{self.grant.get('grant_type')} credentials from the {self.source}"


def credentials_from_environment(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The CF_* variables' credentials, or None when they give none."""
    env = os.environ if environ is None else environ
    uaa = env.get("CF_UAA_URL") or None
    if env.get("CF_USERNAME") and env.get("CF_PASSWORD"):
        grant = {"grant_type": "password", "username": env["CF_USERNAME"], "password": env["CF_PASSWORD"]}
        if env.get("CF_ORIGIN"):
            grant["login_hint"] = json.dumps({"origin": env["CF_ORIGIN"]})
        return Credentials(grant, (env.get("CF_CLIENT_ID") or "cf", env.get("CF_CLIENT_SECRET") or ""), uaa, "environment")
    if env.get("CF_CLIENT_ID") and env.get("CF_CLIENT_SECRET"):
        return Credentials({"grant_type": "client_credentials"}, (env["CF_CLIENT_ID"], env["CF_CLIENT_SECRET"]), uaa, "environment")
    return None


def credentials_from_block(block: Any) -> Credentials | None:
    """The `credentials` of a `mxinfra:cloudfoundry` block (a mapping, or its JSON text as the engine sends
    structured config), or None when it has none."""
    if isinstance(block, str):
        try:
            block = json.loads(block)
        except ValueError:
            return None
    if not isinstance(block, Mapping):
        return None
    c = block.get("credentials")
    if not isinstance(c, Mapping):
        return None
    uaa = c.get("uaaUrl") or None
    pg = c.get("passwordGrant")
    if isinstance(pg, Mapping) and pg.get("username") and pg.get("password"):
        grant = {"grant_type": "password", "username": str(pg["username"]), "password": str(pg["password"])}
        if pg.get("origin"):
            grant["login_hint"] = json.dumps({"origin": pg["origin"]})
        return Credentials(grant, (str(pg.get("clientId") or "cf"), ""), uaa, "stack config")
    if c.get("clientId") and c.get("clientSecret"):
        return Credentials({"grant_type": "client_credentials"}, (str(c["clientId"]), str(c["clientSecret"])), uaa, "stack config")
    return None


# Set by the dynamic providers' `configure` (the engine hands them the stack's config, secrets decrypted):
# process memory only, never a resource input.
_stack_credentials: Credentials | None = None


def configure_from_stack(config: Any) -> None:
    """Keep the credentials of the stack config `config` (anything with `.get(key)`) for this process."""
    global _stack_credentials
    _stack_credentials = credentials_from_block(config.get(BLOCK))


def clear_stack_credentials() -> None:
    """Forget the stack's credentials (tests)."""
    global _stack_credentials
    _stack_credentials = None


def resolve_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials an operation uses: the stack config's, else the environment's."""
    found = _stack_credentials or credentials_from_environment(environ)
    if found is None:
        raise CredentialsError(
            "no Cloud Foundry credentials: set mxinfra:cloudfoundry.credentials in the stack config (clientId and clientSecret "
            "with pulumi config set --secret, or passwordGrant), or CF_CLIENT_ID and CF_CLIENT_SECRET (a UAA client), "
            "or CF_USERNAME and CF_PASSWORD (with CF_ORIGIN for an identity provider) in the environment"
        )
    return found


class TokenSource:
    """Bearer tokens for one Cloud Controller, refreshed on expiry and on demand."""

    def __init__(self, token_url: str | Callable[[], str], grant: Mapping[str, str], client: tuple[str, str], session: requests.Session | None = None, clock: Callable[[], float] = time.time) -> None:
        self._token_url = token_url
        self._grant = dict(grant)
        self._client = client
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self.grants = 0  # how many tokens were obtained (tests)

    @classmethod
    def from_environment(cls, api: str, environ: Mapping[str, str] | None = None, session: requests.Session | None = None) -> TokenSource:
        """The credentials in the environment for the Cloud Controller at `api`."""
        found = credentials_from_environment(environ)
        if found is None:
            raise CredentialsError(
                "no Cloud Foundry credentials in the environment: set CF_CLIENT_ID and CF_CLIENT_SECRET (a UAA client), "
                "or CF_USERNAME and CF_PASSWORD (with CF_ORIGIN for an identity provider)"
            )
        return cls.from_credentials(api, found, session)

    @classmethod
    def from_credentials(cls, api: str, credentials: Credentials, session: requests.Session | None = None) -> TokenSource:
        """Tokens of `credentials` for the Cloud Controller at `api` (UAA from them, else CF_UAA_URL, else the API root)."""
        session = session or requests.Session()
        uaa = credentials.uaa_url or os.environ.get("CF_UAA_URL")
        token_url: str | Callable[[], str] = f"{uaa.rstrip('/')}/oauth/token" if uaa else (lambda: discover_token_url(api, session))
        return cls(token_url, credentials.grant, credentials.client, session)

    def uaa_url(self) -> str:
        """The UAA's base URL (where SCIM /Users and /Groups are)."""
        return self._url().removesuffix("/oauth/token")

    @property
    def session(self) -> requests.Session:
        """The HTTP session tokens are obtained with."""
        return self._session

    def token(self) -> str:
        """A valid access token (a new one when the current one expires within the margin)."""
        with self._lock:
            if self._access is None or self._clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                self._obtain()
            assert self._access is not None
            return self._access

    def invalidate(self) -> None:
        """Forget the access token (the Cloud Controller said 401): the next call obtains a new one."""
        with self._lock:
            self._access = None

    def _url(self) -> str:
        if callable(self._token_url):
            self._token_url = self._token_url()
        return self._token_url

    def _obtain(self) -> None:
        data: dict[str, str]
        if self._refresh:
            data = {"grant_type": "refresh_token", "refresh_token": self._refresh}
            body = self._post(data, allow_failure=True)
            if body is None:  # the refresh token expired or was revoked: a new grant
                self._refresh = None
                body = self._post(dict(self._grant))
        else:
            body = self._post(dict(self._grant))
        assert body is not None
        self._access = str(body["access_token"])
        self._refresh = body.get("refresh_token") or self._refresh
        self._expires_at = self._clock() + float(body.get("expires_in", 0))
        self.grants += 1

    def _post(self, data: dict[str, str], allow_failure: bool = False) -> dict[str, Any] | None:
        try:
            r = self._session.post(self._url(), data=data, auth=self._client, headers={"Accept": "application/json"}, timeout=60)
        except requests.RequestException as e:
            raise CredentialsError(f"UAA at {self._url()} is unreachable: {e}") from None
        if r.status_code == 200:
            return r.json()
        if allow_failure:
            return None
        try:
            detail = r.json().get("error_description") or r.json().get("error") or r.text
        except ValueError:
            detail = r.text[:200]
        # Never the request: it carries the password or client secret.
        raise CredentialsError(f"UAA refused the {data.get('grant_type')} grant ({r.status_code}): {detail}")


def discover_token_url(api: str, session: requests.Session) -> str:
    """The UAA token endpoint named by the Cloud Controller's root document."""
    try:
        r = session.get(f"{api}/", headers={"Accept": "application/json"}, timeout=60)
        r.raise_for_status()
        links = r.json()["links"]
    except (requests.RequestException, ValueError, KeyError) as e:
        raise CredentialsError(f"cannot read the API root of {api} to find UAA: {e}") from None
    for key in ("uaa", "login"):
        href = (links.get(key) or {}).get("href")
        if href:
            return f"{href.rstrip('/')}/oauth/token"
    raise CredentialsError(f"the API root of {api} names no UAA: set CF_UAA_URL")


# --- SCIM: who is in a group -------------------------------------------------------------------------


class UaaError(UserError):
    """UAA refused a SCIM request, or the group or user is not there."""


def scim_quote(value: str) -> str:
    """A SCIM filter string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Scim:
    """UAA's SCIM `/Groups` and `/Users`, with the Cloud Controller's tokens (the client needs `scim.read`)."""

    PAGE = 500

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def _list(self, path: str, filter_: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = 1
        while True:
            body = self._get(path, {"filter": filter_, "startIndex": start, "count": self.PAGE})
            page = body.get("resources") or []
            out += page
            start += len(page)
            if not page or start > int(body.get("totalResults", 0)):
                return out

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        url = f"{self.tokens.uaa_url()}{path}"
        for attempt in (1, 2):
            try:
                r = self.tokens.session.get(url, params=params, headers={"Authorization": f"bearer {self.tokens.token()}", "Accept": "application/json"}, timeout=60)
            except requests.RequestException as e:
                raise UaaError(f"UAA at {url} is unreachable: {e}") from None
            if r.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            break
        if r.status_code != 200:
            try:
                detail = r.json().get("error_description") or r.text[:200]
            except ValueError:
                detail = r.text[:200]
            hint = " (the client needs the scim.read authority to expand group principals)" if r.status_code == 403 else ""
            raise UaaError(f"UAA refused GET {path} ({r.status_code}): {detail}{hint}")
        return r.json()

    def group(self, display_name: str) -> dict[str, Any]:
        """The group called `display_name`; UaaError when UAA has none."""
        found = self._list("/Groups", f"displayName eq {scim_quote(display_name)}")
        if not found:
            raise UaaError(f"UAA has no group {display_name!r}")
        return found[0]

    def members(self, display_name: str, origin: str) -> dict[str, str]:
        """user id -> origin of the group's user members of identity provider `origin`, nested groups
        included (members of other origins are never expanded: the group principal names its origin)."""
        out: dict[str, str] = {}
        seen: set[str] = set()
        todo = [self.group(display_name)]
        while todo:
            g = todo.pop()
            if g["id"] in seen:
                continue
            seen.add(g["id"])
            for m in g.get("members") or []:
                if m.get("type") == "GROUP":
                    todo += self._list("/Groups", f"id eq {scim_quote(str(m['value']))}")
                elif m.get("origin") == origin:
                    out[str(m["value"])] = origin
        return dict(sorted(out.items()))

    def user_id(self, username: str, origin: str) -> str | None:
        """The id of the user `username` of identity provider `origin`, or None."""
        found = self._list("/Users", f"userName eq {scim_quote(username)} and origin eq {scim_quote(origin)}")
        return str(found[0]["id"]) if found else None
