"""HubSpot OAuth and the vendor answers the retry policy learned late.

- The refresh goes to HubSpot's current token endpoint, ``POST /oauth/2026-03/token``, parameters in the
  form body (developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/
  refresh-oauth-token; v1 is deprecated from 16 Feb 2027: /work/shared/reference/hubspot.md section 4).
- Concurrent batches share one refresh.
- A refused refresh token (HubSpot's ``BAD_REFRESH_TOKEN``) stops the destination, exit 3, at setup or
  mid-run, without a traceback and without asking the token endpoint once per batch.
- ``423 Locked``: wait at least 2 s, then retry (hubspot.md, "Partial failures").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector, build_connector
from accoil_sync.connectors.base import Change, Outcome
from accoil_sync.connectors.http import LOCKED_WAIT, classify
from accoil_sync.connectors.hubspot_auth import TOKEN_PATH, OAuthRefresh
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.errors import DestinationUnavailable, RetryableError
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.traits.names import ObjectKind
from tests.conftest import WriteConfig, write

HEADER = "user_id,email,score,segments,last_active,frequency\n"


@pytest.fixture
def oauth_settings(
    served: str, make_settings: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__OAUTH_CLIENT_SECRET", "client-secret-xyz")
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__OAUTH_REFRESH_TOKEN", "refresh-token-abc")
    write(tmp_path / "users.csv", HEADER + "".join(f"u{n},user{n}@x.io,{n % 100},,,\n" for n in range(250)))
    return make_settings(
        extra=f"""
[destinations.hubspot]
enabled = true
base_url = "{served}/hubspot"
create_missing = true
oauth_client_id = "client-1"
max_concurrency = 1
"""
    )


def run(settings: Settings, factory: object = build_connector) -> RunResult:
    return asyncio.run(
        execute(settings, deliver=True, destinations=["hubspot", "jsonl"], connector_factory=factory)  # type: ignore[arg-type]
    )


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    crashed = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not crashed, crashed[0].getMessage()


def test_the_refresh_uses_the_current_endpoint_with_the_secret_in_the_body() -> None:
    seen: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == TOKEN_PATH:
            return httpx.Response(
                200, json={"access_token": "at-1", "refresh_token": "rt-2", "expires_in": 1800}
            )
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    async def go() -> list[str]:
        auth = OAuthRefresh("https://api.hubapi.com", "client-1", "client-secret-xyz", "refresh-token-abc")
        async with httpx.AsyncClient(transport=httpx.MockTransport(vendor), auth=auth) as client:
            answers = await asyncio.gather(*(client.get("https://api.hubapi.com/x") for _ in range(20)))
        return [r.json()["auth"] for r in answers]

    assert asyncio.run(go()) == ["Bearer at-1"] * 20
    token_calls = [r for r in seen if r.url.path == TOKEN_PATH]
    assert len(token_calls) == 1  # twenty concurrent requests, one refresh
    (call,) = token_calls
    assert str(call.url) == "https://api.hubapi.com/oauth/2026-03/token" and not call.url.query
    form = {k: v[0] for k, v in parse_qs(call.content.decode()).items()}
    assert form == {
        "grant_type": "refresh_token",
        "client_id": "client-1",
        "client_secret": "client-secret-xyz",
        "refresh_token": "refresh-token-abc",
    }


def test_an_oauth_run_refreshes_once_against_the_emulator(
    oauth_settings: Settings, emulator: Emulator
) -> None:
    from accoil_sync.emulator.hubspot import ALL_SCOPES

    emulator.hubspot.tokens = {"unused": ALL_SCOPES}  # only tokens the token endpoint handed out work
    result = run(oauth_settings)
    assert result.deliveries["hubspot"].counts == {"ok": 250}
    assert emulator.hubspot.requests["oauth/token 200"] == 1


def test_a_refused_refresh_token_at_setup_stops_hubspot_only(
    oauth_settings: Settings, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.hubspot.refresh_tokens = {"some-other-token"}
    result = run(oauth_settings)
    stopped = result.deliveries["hubspot"].stopped
    assert result.exit_code == 3
    assert stopped and "BAD_REFRESH_TOKEN" in stopped and "oauth_refresh_token" in stopped
    assert "refresh-token-abc" not in stopped and "client-secret-xyz" not in stopped
    assert emulator.hubspot.requests["oauth/token 400"] == 1  # not retried: it cannot heal
    assert result.deliveries["jsonl"].counts == {"ok": 250}
    no_traceback(caplog)


class ExpireAfterFirstBatch:
    """The access token expires after the first batch, and meanwhile the app was uninstalled."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.auth: OAuthRefresh | None = None
        self.batches = 0

    def factory(self, name: str, settings: Settings, run_id: str) -> Connector:
        connector = build_connector(name, settings, run_id)
        if name != "hubspot":
            return connector
        self.auth = connector.transport.client.auth  # type: ignore[attr-defined]
        inner = connector.deliver

        async def deliver(kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            self.batches += 1
            if self.batches == 2:
                assert self.auth is not None
                self.auth.expires = 0.0
                self.emulator.hubspot.refresh_tokens = set()
            return await inner(kind, batch)

        connector.deliver = deliver  # type: ignore[method-assign]
        return connector


def test_a_refresh_token_refused_mid_run_stops_without_rejecting_records(
    oauth_settings: Settings, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    scene = ExpireAfterFirstBatch(emulator)
    result = run(oauth_settings, scene.factory)
    report = result.deliveries["hubspot"]
    assert result.exit_code == 3 and report.stopped and "BAD_REFRESH_TOKEN" in report.stopped
    assert report.counts == {"ok": 100}  # the first batch; the rest is left planned, none rejected
    assert emulator.hubspot.requests["oauth/token 400"] == 1  # one refusal, not one per batch
    no_traceback(caplog)
    emulator.hubspot.refresh_tokens = None  # reconnected: the next run sends the rest
    again = run(oauth_settings)
    assert again.deliveries["hubspot"].counts == {"ok": 150}


def test_423_locked_waits_at_least_two_seconds_then_retries(
    oauth_settings: Settings, emulator: Emulator
) -> None:
    locked = httpx.Response(423, json={"status": "error", "message": "locked"})
    error = classify("hubspot", locked)
    assert isinstance(error, RetryableError) and error.retry_after == LOCKED_WAIT == 2.0
    assert classify("hubspot", httpx.Response(423, headers={"Retry-After": "5"})).retry_after == 5.0  # type: ignore[union-attr]
    emulator.hubspot.faults = Faults(fail_next=[-1] * 8 + [423])  # after the schema requests: a batch write
    result = run(oauth_settings)
    assert result.deliveries["hubspot"].counts == {"ok": 250}
    assert (
        emulator.hubspot.requests.total()
        - sum(n for k, n in emulator.hubspot.requests.items() if not k.endswith(" 423"))
        == 1
    )


def test_a_refused_token_is_never_retried_by_the_policy() -> None:
    calls = 0

    def vendor(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown"})

    async def go() -> None:
        auth = OAuthRefresh("https://api.hubapi.com", "c", "s", "r")
        async with httpx.AsyncClient(transport=httpx.MockTransport(vendor), auth=auth) as client:
            for _ in range(3):
                with pytest.raises(DestinationUnavailable, match="BAD_REFRESH_TOKEN"):
                    await client.get("https://api.hubapi.com/x")

    asyncio.run(go())
    assert calls == 1
