"""HubSpot schema reads (issue 17): read when it can have changed, never on an unchanged re-run; a property
archived after it was cached is re-created and the affected records sent again in the same run."""

from __future__ import annotations

from pathlib import Path

import pytest

from accoil_sync.emulator import Emulator
from tests.conftest import WriteConfig
from tests.integration.conftest import call
from tests.integration.test_hubspot import H, Recorder, hubspot_settings, sync, users_csv

__all__ = ["hubspot_settings"]  # the fixture, shared with test_hubspot


def schema_requests(rec: Recorder) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in rec.requests if "/properties/" in p]


def test_an_unchanged_rerun_sends_hubspot_nothing(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users_csv(tmp_path, ["u1,a@x.io,10,Champions,2026-11-01,3", "u2,b@x.io,20,,,"])
    first = Recorder()
    assert sync(hubspot_settings(), first).deliveries["hubspot"].counts == {"ok": 2}
    assert schema_requests(first)  # the first run reads (and creates) the schema
    again = Recorder()
    assert sync(hubspot_settings(), again).deliveries["hubspot"].counts == {}
    assert again.requests == []
    # A changed record: its write only; the schema (and the segment's option) come from the cache.
    users_csv(tmp_path, ["u1,a@x.io,11,Champions,2026-11-01,3", "u2,b@x.io,20,,,"])
    changed = Recorder()
    assert sync(hubspot_settings(), changed).deliveries["hubspot"].counts == {"ok": 1}
    assert [(m, p) for m, p, _ in changed.requests] == [("POST", "/crm/v3/objects/contacts/batch/update")]


def test_the_schema_is_read_again_after_the_ttl(
    hubspot_settings: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_csv(tmp_path, ["u1,a@x.io,10,,,"])
    sync(hubspot_settings())
    rec = Recorder()
    sync(hubspot_settings(), rec)
    assert rec.requests == []
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__SCHEMA_TTL_HOURS", "0")
    rec = Recorder()
    sync(hubspot_settings(), rec)
    assert schema_requests(rec)  # TTL 0: every run checks


def test_a_property_archived_after_caching_is_recreated_and_the_records_resent(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    """HubSpot answers a write naming an archived property with PROPERTY_DOESNT_EXIST ("Property \\"x\\" does
    not exist", /work/shared/reference/hubspot.md section 1, observed body)."""
    users_csv(tmp_path, ["u1,a@x.io,10,,,", "u2,b@x.io,20,,,"])
    sync(hubspot_settings())
    r = call(emulator, "DELETE", "/hubspot/crm/v3/properties/contacts/accoil_default_score", headers=H)
    assert r.status_code == 204
    users_csv(tmp_path, ["u1,a@x.io,11,,,", "u2,b@x.io,21,,,"])
    rec = Recorder()
    report = sync(hubspot_settings(), rec).deliveries["hubspot"]
    assert report.counts == {"ok": 2}
    contacts = emulator.hubspot.state()["contacts"].values()
    assert sorted(c["accoil_default_score"] for c in contacts) == ["11", "21"]
    assert ("POST", "/crm/v3/properties/contacts/batch/create") in schema_requests(rec)
    # The next unchanged run is quiet again.
    quiet = Recorder()
    sync(hubspot_settings(), quiet)
    assert quiet.requests == []


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
