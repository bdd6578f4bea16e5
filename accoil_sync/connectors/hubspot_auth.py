"""HubSpot OAuth: a bearer token from a refresh token, renewed shortly before it expires.

- The token endpoint is the date-versioned one, ``POST /oauth/2026-03/token`` with a form body
  (developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/refresh-oauth-token);
  v1 (``/oauth/v1/token``) is deprecated from 16 Feb 2027. The parameters go in the body, never the URL,
  so the client secret cannot end up in a proxy's access log.
- One refresh at a time: concurrent batches that find the token stale wait for the one refresh in flight
  and use its token, instead of each asking for another.
- A refused refresh token (``BAD_REFRESH_TOKEN``, or any 4xx from the token endpoint) cannot heal by
  retrying: the destination stops with a message saying what to do, and every later request fails at once
  without calling the endpoint again. A 429 or 5xx there is retried like any other request.
- HubSpot says a 401 "is not a valid indicator" that a token needs refreshing, so expiry is tracked from
  ``expires_in`` (30 minutes) rather than by reacting to 401s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import httpx

from accoil_sync.connectors.http import AUTH_REQUEST
from accoil_sync.errors import DestinationUnavailable, RetryableError

TOKEN_PATH = "/oauth/2026-03/token"
REFRESH_MARGIN = 60.0  # seconds before expiry: a request signed now must not arrive with a dead token


class OAuthRefresh(httpx.Auth):
    """Bearer auth from a refresh token, for the async client every connector uses."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.url = f"{base_url.rstrip('/')}{TOKEN_PATH}"
        self.form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        self.token: str | None = None
        self.expires = 0.0
        self.refused: DestinationUnavailable | None = None
        self.refreshes = 0
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return self.token is None or time.time() > self.expires - REFRESH_MARGIN

    def sync_auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        raise RuntimeError("OAuthRefresh works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.refused is not None:
            raise self.refused
        if self._stale():
            async with self._lock:  # the first stale request refreshes; the others find a fresh token
                if self.refused is not None:
                    raise self.refused
                if self._stale():
                    response = yield httpx.Request(
                        "POST", self.url, data=self.form, extensions={AUTH_REQUEST: True}
                    )
                    await response.aread()
                    self._take(response)
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request

    def _take(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError(f"HubSpot's OAuth token endpoint answered {status}", status=status)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status != 200:
            category = str(body.get("status") or body.get("category") or status)
            self.refused = DestinationUnavailable(
                f"HubSpot refused the OAuth refresh token ({category}): reinstall or reconnect the app and "
                "set destinations.hubspot.oauth_refresh_token (env "
                "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__OAUTH_REFRESH_TOKEN) to the new refresh token",
                status=status,
                vendor_reason=category,
            )
            raise self.refused
        token = body.get("access_token") or body.get("accessToken")
        if not token:
            raise RetryableError("HubSpot's OAuth token endpoint answered 200 without an access token")
        self.token = str(token)
        self.expires = time.time() + float(body.get("expires_in") or body.get("expiresIn") or 1800)
        if fresh := body.get("refresh_token") or body.get("refreshToken"):
            self.form["refresh_token"] = str(fresh)
        self.refreshes += 1
