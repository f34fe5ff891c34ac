"""UAA tokens for the Cloud Controller: client credentials or password grant, from environment variables.

Credentials are read from the process environment when a provider operation runs (never from stack
config): they never enter a resource's inputs, so never the Pulumi state or a plan.

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
from typing import Any

import requests

from mxinfra.errors import UserError

REFRESH_MARGIN_SECONDS = 30


class CredentialsError(UserError):
    """No usable credentials in the environment, or UAA refused them."""


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
        env = os.environ if environ is None else environ
        session = session or requests.Session()
        if env.get("CF_USERNAME") and env.get("CF_PASSWORD"):
            grant = {"grant_type": "password", "username": env["CF_USERNAME"], "password": env["CF_PASSWORD"]}
            if env.get("CF_ORIGIN"):
                grant["login_hint"] = json.dumps({"origin": env["CF_ORIGIN"]})
            client = (env.get("CF_CLIENT_ID") or "cf", env.get("CF_CLIENT_SECRET") or "")
        elif env.get("CF_CLIENT_ID") and env.get("CF_CLIENT_SECRET"):
            grant = {"grant_type": "client_credentials"}
            client = (env["CF_CLIENT_ID"], env["CF_CLIENT_SECRET"])
        else:
            raise CredentialsError(
                "no Cloud Foundry credentials in the environment: set CF_CLIENT_ID and CF_CLIENT_SECRET (a UAA client), "
                "or CF_USERNAME and CF_PASSWORD (with CF_ORIGIN for an identity provider)"
            )
        uaa = env.get("CF_UAA_URL")
        token_url: str | Callable[[], str] = f"{uaa.rstrip('/')}/oauth/token" if uaa else (lambda: discover_token_url(api, session))
        return cls(token_url, grant, client, session)

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
