"""A key whose first write reached the destination but was never recorded (the run was killed between the two),
and which then left the source: with ``removal = "clear"``, what that write left must be cleared too, though
state holds no record id for it (sync/pending.py). The destination's record is found by our own key -- never
by a guess -- and where our key is not on the record (HubSpot contacts matched by email), it is reported.
A noted key whose write never landed clears nothing and creates nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator
from accoil_sync.errors import StateStoreError
from accoil_sync.sync.runner import execute
from accoil_sync.sync.state import StateStore
from tests.conftest import WriteConfig, failure_reasons, write
from tests.integration.conftest import destination_section
from tests.integration.test_unacknowledged_writes import lose_commits, notes, sync

USERS = "user_id,email,account_id,score,segments\nu0,zero@example.com,a0,10,Engaged\n"
NEWCOMER = "u9,nine@example.com,a0,77,Champions\n"
ACCOUNTS = "account_id,name,domain,score,segments\na0,Acme,acme.io,50,Engaged\n"


def lose_first_write(
    settings: Settings, destination: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """u9 joins the source, its delivery lands and its commit is lost; then u9 leaves the source."""
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    sync(settings, destination)
    write(tmp_path / "users.csv", USERS + NEWCOMER)
    with monkeypatch.context() as patched:
        lose_commits(patched)
        with pytest.raises(StateStoreError):
            sync(settings, destination)
    assert notes(settings) == 1
    write(tmp_path / "users.csv", USERS)


def vendor_settings(
    served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch, vendor: str, **hubspot: str
) -> Settings:
    """``vendor`` at the emulator, creating what is missing and clearing what leaves the source."""
    token = {"intercom": "tok-test", "hubspot": "pat-test"}[vendor]
    monkeypatch.setenv(f"ACCOIL_SYNC_DESTINATIONS__{vendor.upper()}__ACCESS_TOKEN", token)
    options: dict[str, dict[str, object]] = {
        "intercom": {"create_missing_contacts": True},
        "hubspot": {"create_missing": True, **hubspot},
    }
    return make_settings(
        "users.csv", "accounts.csv", destination_section(served, vendor, removal="clear", **options[vendor])
    )


def resolve(settings: Settings, destination: str) -> dict[str, Any]:
    result = asyncio.run(execute(settings, deliver=False, destinations=[destination], resolve=True))
    return result.to_json()["destinations"][destination]["resolve"]  # type: ignore[no-any-return]


def record(settings: Settings, destination: str, key: str) -> tuple[str | None, str | None, str]:
    with sqlite3.connect(settings.state.path) as db:
        row = db.execute(
            "SELECT dest_id, fingerprint, status FROM records WHERE destination = ? AND key = ?",
            (destination, key),
        ).fetchone()
    return (row[0], row[1], row[2]) if row else (None, None, "none")


def test_intercom_clears_what_a_lost_first_write_left_once_the_key_is_gone(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = vendor_settings(served, make_settings, monkeypatch, "intercom")
    lose_first_write(settings, "intercom", tmp_path, monkeypatch)
    intercom = emulator.intercom
    contact = next(c for c in intercom.contacts.values() if c["external_id"] == "u9")

    def tags() -> set[str]:
        return {intercom.tags[t]["name"] for t in intercom.contact_tags.get(contact["id"], set())}

    assert contact["custom_attributes"]["Accoil_Default_Score"] == 77  # the lost write did land
    assert "Accoil: Champions" in tags()
    assert intercom.contact_companies.get(contact["id"])
    # A tag someone added by hand to the same contact is not ours to remove.
    intercom.contact_tags[contact["id"]].add(intercom._tag_by_name("VIP")["id"])

    resolved = resolve(settings, "intercom")
    (reported,) = resolved["reported"]  # an update with a detail is listed with it
    assert (reported["key"], reported["verdict"], reported["dest_id"]) == ("u9", "update", contact["id"])
    result = sync(settings, "intercom")
    assert result.deliveries["intercom"].counts == {"ok": 1}, result.to_json()
    # Intercom reads null as "unknown": our attribute is emptied, our tag removed, the company left.
    assert contact["custom_attributes"].get("Accoil_Default_Score") is None
    assert not {t for t in tags() if t.startswith("Accoil: ")}
    assert "VIP" in tags()
    assert not intercom.contact_companies.get(contact["id"])
    assert notes(settings) == 0
    assert record(settings, "intercom", "u9")[0] == contact["id"]
    assert sync(settings, "intercom").deliveries["intercom"].counts == {}  # nothing left to do


@pytest.mark.parametrize("contact_match", ["property", "email"])
def test_hubspot_clears_a_lost_first_write_found_by_our_key_and_reports_one_it_cannot_find(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    contact_match: str,
) -> None:
    settings = vendor_settings(served, make_settings, monkeypatch, "hubspot", contact_match=contact_match)
    lose_first_write(settings, "hubspot", tmp_path, monkeypatch)
    contacts = emulator.hubspot.state()["contacts"]
    landed = next(i for i, p in contacts.items() if p.get("email") == "nine@example.com")
    assert contacts[landed]["accoil_default_score"] == "77"
    # plan --resolve says beforehand what the clear will do, read-only.
    resolved = resolve(settings, "hubspot")
    if contact_match == "property":
        assert resolved["counts"]["user"]["update"] == 1
    else:
        (reported,) = resolved["reported"]
        assert (reported["key"], reported["verdict"]) == ("u9", "not_found")
        assert "found by email" in reported["detail"]

    result = sync(settings, "hubspot")
    after = emulator.hubspot.state()["contacts"][landed]
    if contact_match == "property":
        assert result.deliveries["hubspot"].counts == {"ok": 1}, result.to_json()
        assert not after.get("accoil_default_score")  # cleared on the record our key is on
        assert record(settings, "hubspot", "u9")[0] == landed
        assert notes(settings) == 0
    else:
        # The contact was found by its email, which the source no longer gives: reported, not guessed.
        assert result.deliveries["hubspot"].counts == {"rejected": 1}, result.to_json()
        assert after["accoil_default_score"] == "77"
        assert record(settings, "hubspot", "u9")[2] == "rejected"
        assert any("found by email" in r for r in failure_reasons(settings, "hubspot"))
    # Either way the next run does not ask again (a re-check waits for its schedule).
    assert sync(settings, "hubspot").deliveries["hubspot"].counts == {}
    assert len(emulator.hubspot.state()["contacts"]) == 2


@pytest.mark.parametrize("vendor", ["intercom", "hubspot"])
def test_a_noted_key_whose_write_never_landed_clears_and_creates_nothing(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
) -> None:
    """A note is written before the batch is sent: killed before the send, the vendor has nothing of the
    key. A company clear must not upsert a nameless company into existence; a contact clear finds none."""
    settings = vendor_settings(served, make_settings, monkeypatch, vendor, contact_match="property")
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    sync(settings, vendor)
    before = (
        (len(emulator.intercom.contacts), len(emulator.intercom.companies))
        if vendor == "intercom"
        else tuple(len(emulator.hubspot.state()[t]) for t in ("contacts", "companies"))
    )
    score = "Accoil_Default_Score" if vendor == "intercom" else "accoil_default_score"
    account_score = "Accoil_Default_Account_Score" if vendor == "intercom" else "accoil_default_score"
    store = StateStore(settings.state.path)
    try:
        store.note(vendor, "user", [("u9", {score: 77})])
        store.note(vendor, "account", [("a9", {account_score: 60})])
    finally:
        store.close()

    result = sync(settings, vendor)
    assert result.deliveries[vendor].counts == {"ok": 2}, result.to_json()
    after = (
        (len(emulator.intercom.contacts), len(emulator.intercom.companies))
        if vendor == "intercom"
        else tuple(len(emulator.hubspot.state()[t]) for t in ("contacts", "companies"))
    )
    assert after == before
    assert notes(settings) == 0
    assert record(settings, vendor, "u9")[0] is None and record(settings, vendor, "a9")[0] is None
    assert sync(settings, vendor).deliveries[vendor].counts == {}


@pytest.mark.parametrize("vendor", ["intercom", "hubspot"])
def test_a_company_a_lost_first_write_reached_is_cleared_once_its_account_is_gone(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
) -> None:
    settings = vendor_settings(served, make_settings, monkeypatch, vendor)
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    sync(settings, vendor)
    write(tmp_path / "accounts.csv", ACCOUNTS + "a9,Globex,globex.io,60,Engaged\n")
    with monkeypatch.context() as patched:
        lose_commits(patched, "account")
        with pytest.raises(StateStoreError):
            sync(settings, vendor)
    # Intercom refuses one attribute name on contacts and companies; HubSpot's objects each have their own.
    score = "Accoil_Default_Account_Score" if vendor == "intercom" else "accoil_default_score"

    def globex() -> dict[str, Any]:
        if vendor == "intercom":
            company = next(c for c in emulator.intercom.companies.values() if c["company_id"] == "a9")
            return dict(company["custom_attributes"])
        companies = emulator.hubspot.state()["companies"]
        return dict(next(p for p in companies.values() if p.get("accoil_account_id") == "a9"))

    assert str(globex()[score]) == "60"  # the lost write landed
    write(tmp_path / "accounts.csv", ACCOUNTS)
    result = sync(settings, vendor)
    assert result.deliveries[vendor].counts == {"ok": 1}, result.to_json()
    assert not globex().get(score)  # emptied, not deleted: the company is not ours to delete
    assert notes(settings) == 0
    assert sync(settings, vendor).deliveries[vendor].counts == {}
