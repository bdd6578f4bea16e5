"""HubSpot connector against the emulator: schema once, HubSpot-valid values, zero re-sends, per-record
failures, missing records, 429s, and request bodies that match HubSpot's published request schemas."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector
from accoil_sync.connectors.http import RetryPolicy
from accoil_sync.connectors.hubspot import HubSpotConnector
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.sync.identity import Ownership
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import WriteConfig, write
from tests.integration.conftest import call, destination_section

HEADER = "user_id,email,score,segments,last_active,frequency\n"
H = {"Authorization": "Bearer pat-test"}


@pytest.fixture
def hubspot_settings(served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> WriteConfig:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")

    def make(
        users: str | None = "users.csv",
        accounts: str | None = None,
        extra: str = "",
        create_missing: bool = True,
    ) -> Settings:
        section = destination_section(served, "hubspot", create_missing=create_missing)
        return make_settings(users, accounts, extra + section)

    return make


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    def factory(self, name: str, settings: Settings, run_id: str) -> Connector:
        connector = HubSpotConnector(
            settings.destinations.hubspot,
            settings.profiles,
            policy=RetryPolicy(initial_wait=0.05, max_wait=0.2, max_attempts=8),
            ownership=Ownership("hubspot", settings.state.path),
            schema_cache=settings.state.directory / "hubspot-schema.json",
        )

        async def record(request: httpx.Request) -> None:
            try:
                body = json.loads(request.content) if request.content else None
            except ValueError:
                body = request.content.decode()  # the OAuth token request is form-encoded
            self.requests.append((request.method, request.url.path.split("/hubspot", 1)[1], body))

        connector.transport.client.event_hooks["request"].append(record)
        return connector

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if "/objects/" in r[1] and not r[1].endswith("/batch/read")]


def sync(settings: Settings, recorder: Recorder | None = None) -> RunResult:
    recorder = recorder or Recorder()
    return asyncio.run(
        execute(
            settings,
            deliver=True,
            destinations=["hubspot"],
            connector_factory=recorder.factory,
            allow_mass_change=True,  # small fixtures change every contact at once; the guards are not under test
        )
    )


def hubspot_contact(emulator: Emulator, email: str) -> None:
    """A contact made in HubSpot by someone else: no accoil property."""
    r = call(
        emulator, "POST", "/hubspot/crm/v3/objects/contacts", headers=H, json={"properties": {"email": email}}
    )
    assert r.status_code == 201, r.text


def users_csv(tmp_path: Path, rows: list[str]) -> Path:
    return write(tmp_path / "users.csv", HEADER + "".join(r + "\n" for r in rows))


def test_example_first_sync_lands_valid_values_then_nothing(
    examples: Path, hubspot_settings: WriteConfig, emulator: Emulator
) -> None:
    settings = hubspot_settings(users="examples/users.csv", accounts="examples/accounts.csv")
    first = Recorder()
    result = sync(settings, first)
    report = result.deliveries["hubspot"]
    # u_008 is an invalid row (score 140) and never planned; every planned record lands
    assert report.counts == {"ok": 11}
    state = emulator.hubspot.state()
    props = state["properties"]
    assert "accoil_default_score" in props["contacts"] and "accoil_default_activeusers" in props["companies"]
    assert "accoil_account_id" in props["companies"]
    contacts = {c["email"]: c for c in state["contacts"].values()}
    ada = contacts["ada@acme.io"]
    assert ada["accoil_default_score"] == "92"
    assert ada["accoil_default_segments"] == "Champions;Most Engaged"
    assert ada["accoil_default_lastactive"] == "1795132800000"
    companies = {c["accoil_account_id"]: c for c in state["companies"].values()}
    assert companies["acc_acme"]["accoil_default_totalusers"] == "3"
    second = Recorder()
    again = sync(settings, second)
    assert again.deliveries["hubspot"].counts == {}
    assert second.writes() == []
    assert not [r for r in second.requests if r[0] == "POST" and "/properties/" in r[1]]  # created once


def test_new_segment_adds_the_option_then_the_value(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = users_csv(tmp_path, ["u1,a@x.io,10,Engaged,,"])
    settings = hubspot_settings()
    sync(settings)
    users_csv(tmp_path, ["u1,a@x.io,10,Engaged;Power; Users,,"])
    recorder = Recorder()
    assert sync(settings, recorder).deliveries["hubspot"].counts == {"ok": 1}
    patch_at = next(i for i, r in enumerate(recorder.requests) if r[0] == "PATCH")
    write_at = next(i for i, r in enumerate(recorder.requests) if "/objects/" in r[1])
    assert patch_at < write_at
    options = {o["value"] for o in recorder.requests[patch_at][2]["options"]}
    assert {"Engaged", "Power", "Users"} <= options
    (contact,) = emulator.hubspot.state()["contacts"].values()
    assert contact["accoil_default_segments"] == "Engaged;Power;Users"
    assert users.exists()


def test_one_bad_email_in_100_fails_alone(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    rows = [f"u{n},user{n}@x.io,{n % 100},,," for n in range(100)]
    rows[42] = "u42,user42@x..io,1,,,"  # passes a naive check, HubSpot rejects it
    rows[7] = "u7,not-an-email,1,,,"  # caught locally, never sent
    users_csv(tmp_path, rows)
    settings = hubspot_settings()
    result = sync(settings)
    report = result.deliveries["hubspot"]
    assert report.counts == {"ok": 98, "rejected": 2}
    assert any("INVALID_EMAIL" in r for r in report.reason_texts())
    assert len(emulator.hubspot.state()["contacts"]) == 98


def test_duplicate_email_is_a_reported_conflict(hubspot_settings: WriteConfig, tmp_path: Path) -> None:
    users_csv(tmp_path, ["u1,same@x.io,1,,,", "u2,SAME@x.io,2,,,", "u3,other@x.io,3,,,"])
    settings = hubspot_settings()
    report = sync(settings).deliveries["hubspot"]
    assert report.counts == {"ok": 2, "rejected": 1}
    assert any("also belongs to key 'u1'" in r for r in report.reason_texts())


def test_missing_records_are_skipped_and_reported_unless_created(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users_csv(tmp_path, ["u1,known@x.io,10,,,", "u2,unknown@x.io,20,,,"])
    hubspot_contact(emulator, "known@x.io")
    settings = hubspot_settings(create_missing=False)
    result = sync(settings)
    report = result.deliveries["hubspot"]
    assert report.counts == {"ok": 1, "rejected": 1}
    assert any("no HubSpot contact has email 'unknown@x.io'" in r for r in report.reason_texts())
    assert len(emulator.hubspot.state()["contacts"]) == 1
    # Switched on later, a --full-refresh creates what was missing (rejections wait for new values otherwise).
    again = asyncio.run(
        execute(
            hubspot_settings(create_missing=True),
            deliver=True,
            destinations=["hubspot"],
            full_refresh=True,
            connector_factory=Recorder().factory,
        )
    )
    assert again.deliveries["hubspot"].counts == {"ok": 2}
    assert len(emulator.hubspot.state()["contacts"]) == 2


def test_429s_with_hubspot_headers_delay_but_lose_nothing(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users_csv(tmp_path, [f"u{n},user{n}@x.io,{n % 100},,," for n in range(300)])
    emulator.set_faults(
        "hubspot", Faults(fail_next=[429])
    )  # HubSpot gives no Retry-After: we wait its 10 s window
    result = sync(hubspot_settings())
    assert result.deliveries["hubspot"].counts == {"ok": 300}
    assert emulator.hubspot.state()["requests"]["by_status"]["429"] == 1
    assert len(emulator.hubspot.state()["contacts"]) == 300


def test_request_bodies_match_hubspots_request_schemas(
    examples: Path, hubspot_settings: WriteConfig, tmp_path: Path
) -> None:
    from tests.conformance.specs import validate

    recorder = Recorder()
    sync(hubspot_settings(users="examples/users.csv", accounts="examples/accounts.csv"), recorder)
    users_csv(tmp_path, ["u_001,ada@acme.io,10,New Segment,,"])
    sync(hubspot_settings(), recorder)
    schemas = {
        "/batch/upsert": ("crm-contacts-v3.json", "BatchInputSimplePublicObjectBatchInputUpsert"),
        "/batch/update": ("crm-contacts-v3.json", "BatchInputSimplePublicObjectBatchInput"),
        "/batch/read": ("crm-contacts-v3.json", "BatchReadInputSimplePublicObjectId"),
        "/properties/contacts/batch/create": ("crm-properties-v3.json", "BatchInputPropertyCreate"),
        "/properties/companies/batch/create": ("crm-properties-v3.json", "BatchInputPropertyCreate"),
        "/properties/contacts/groups": ("crm-properties-v3.json", "PropertyGroupCreate"),
        "/properties/companies/groups": ("crm-properties-v3.json", "PropertyGroupCreate"),
    }
    checked = 0
    for method, path, body in recorder.requests:
        if body is None:
            continue
        if method == "PATCH":
            validate("hubspot/crm-properties-v3.json", "PropertyUpdate", body)
            checked += 1
            continue
        for suffix, (spec, schema) in schemas.items():
            if path.endswith(suffix):
                validate(f"hubspot/{spec}", schema, body)
                checked += 1
    assert checked >= 5


def test_oauth_refresh_token_flow(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from accoil_sync.emulator.hubspot import ALL_SCOPES

    emulator.hubspot.tokens = {"unused": ALL_SCOPES}  # only tokens the OAuth endpoint hands out will work
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__OAUTH_CLIENT_SECRET", "cs")
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__OAUTH_REFRESH_TOKEN", "rt")
    users_csv(tmp_path, ["u1,a@x.io,10,,,"])
    settings = make_settings(
        extra=f"""
[destinations.hubspot]
enabled = true
base_url = "{served}/hubspot"
create_missing = true
oauth_client_id = "client-1"
"""
    )
    assert sync(settings).deliveries["hubspot"].counts == {"ok": 1}
    assert emulator.hubspot.requests["oauth/token 200"] == 1  # one token for the whole run


def test_companies_found_by_domain_get_our_id(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")

    call(
        emulator,
        "POST",
        "/hubspot/crm/v3/objects/companies",
        headers=H,
        json={"properties": {"name": "Acme", "domain": "acme.io"}},
    )
    write(tmp_path / "accounts.csv", "account_id,domain,score\nacc_acme,acme.io,50\nacc_none,none.io,10\n")
    settings = make_settings(
        users=None,
        accounts="accounts.csv",
        extra=f"""
[destinations.hubspot]
enabled = true
base_url = "{served}/hubspot"
company_match = "domain"
""",
    )
    report = sync(settings).deliveries["hubspot"]
    assert report.counts == {"ok": 1, "rejected": 1}
    (company,) = emulator.hubspot.state()["companies"].values()
    assert company["name"] == "Acme" and company["accoil_account_id"] == "acc_acme"
    assert company["accoil_default_score"] == "50"


def test_a_type_clash_is_a_clear_error(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    call(
        emulator,
        "POST",
        "/hubspot/crm/v3/properties/contacts/groups",
        headers=H,
        json={"name": "mine", "label": "M"},
    )
    call(
        emulator,
        "POST",
        "/hubspot/crm/v3/properties/contacts",
        headers=H,
        json={
            "name": "accoil_default_score",
            "label": "x",
            "type": "string",
            "fieldType": "text",
            "groupName": "mine",
        },
    )
    users_csv(tmp_path, ["u1,a@x.io,10,,,"])
    result = sync(hubspot_settings())
    assert result.exit_code == 3
    stopped = result.deliveries.get("hubspot")
    message = stopped.stopped if stopped else ""
    assert "'accoil_default_score' exists as string/text" in (message or "")


def test_daily_limit_nearly_used_stops_cleanly(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users_csv(tmp_path, [f"u{n},user{n}@x.io,{n % 100},,," for n in range(1000)])
    emulator.hubspot.daily_limit = (
        60  # 8 schema requests and a few batches fit; then the reserve of 50 is reached
    )
    result = sync(hubspot_settings())
    assert result.exit_code == 3
    report = result.deliveries["hubspot"]
    assert "daily API limit is nearly used" in (report.stopped or "")
    assert "resumes after midnight" in (report.stopped or "")
    delivered = report.counts["ok"]
    assert 0 < delivered < 1000
    assert len(emulator.hubspot.state()["contacts"]) == delivered  # what was sent was acknowledged and kept
