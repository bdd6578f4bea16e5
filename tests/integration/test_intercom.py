"""Intercom connector against the emulator: attributes and tags land, nothing is re-sent, tags follow
segment membership, missing contacts are reported (or created), 429s only delay, one bad contact fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import WriteConfig, write
from tests.integration.conftest import call, destination_section

HEADER = "user_id,email,account_id,score,segments,last_active,frequency\n"


@pytest.fixture
def intercom_settings(
    served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> WriteConfig:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN", "tok-test")

    def make(
        users: str | None = "users.csv", accounts: str | None = None, create: bool = True, extra: str = ""
    ) -> Settings:
        section = destination_section(
            served, "intercom", create_missing_contacts=create, tag_prefix="Accoil: "
        )
        return make_settings(users, accounts, extra + section)

    return make


def sync(settings: Settings) -> RunResult:
    return asyncio.run(execute(settings, deliver=True, destinations=["intercom"]))


def test_first_sync_lands_attributes_tags_and_companies_then_nothing(
    examples: Path, intercom_settings: WriteConfig, emulator: Emulator
) -> None:
    settings = intercom_settings(users="examples/users.csv", accounts="examples/accounts.csv")
    result = sync(settings)
    assert result.deliveries["intercom"].counts == {"ok": 11}
    state = emulator.intercom.state()
    ada = state["contacts"]["u_001"]
    assert ada["custom_attributes"]["Accoil_Default_Score"] == 92
    assert ada["custom_attributes"]["Accoil_Default_LastActive"] == 1795166100
    assert ada["custom_attributes"]["Accoil_Default_Segments"] == "Champions, Most Engaged"
    assert ada["tags"] == ["Accoil: Champions", "Accoil: Most Engaged"]
    assert ada["companies"] == ["acc_acme"]
    acme = state["companies"]["acc_acme"]
    assert acme["custom_attributes"]["Accoil_Default_Account_TotalUsers"] == 3
    assert acme["tags"] == ["Accoil: Most Engaged"]
    assert "Accoil_Default_Account_Score" in state["data_attributes"]["company"]
    before = state["requests"]["total"]
    assert sync(settings).deliveries["intercom"].counts == {}
    assert emulator.intercom.state()["requests"]["total"] == before  # no writes, and no attribute listing


def test_leaving_a_segment_removes_only_that_tag(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = write(tmp_path / "users.csv", HEADER + "u1,a@x.io,,50,A;B;C,,\n")
    settings = intercom_settings()
    sync(settings)
    assert emulator.intercom.state()["contacts"]["u1"]["tags"] == ["Accoil: A", "Accoil: B", "Accoil: C"]
    write(users, HEADER + "u1,a@x.io,,50,A;C;D,,\n")
    assert sync(settings).deliveries["intercom"].counts == {"ok": 1}
    contact = emulator.intercom.state()["contacts"]["u1"]
    assert contact["tags"] == ["Accoil: A", "Accoil: C", "Accoil: D"]
    assert contact["custom_attributes"]["Accoil_Default_Segments"] == "A, C, D"


def test_missing_contact_is_skipped_and_reported_by_default(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,known@x.io,,10,,,\nu2,unknown@x.io,,20,,,\n")
    call(
        emulator,
        "POST",
        "/intercom/contacts",
        headers={"Authorization": "Bearer t"},
        json={"role": "user", "external_id": "u1"},
    )
    result = sync(intercom_settings(create=False))
    report = result.deliveries["intercom"]
    assert report.counts == {"ok": 1, "rejected": 1}
    assert any("create_missing_contacts is off" in r for r in report.reason_texts())
    assert set(emulator.intercom.state()["contacts"]) == {"u1"}


def test_409_on_create_is_treated_as_exists(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    # A contact with this email exists under another external_id: not found by external_id, found by
    # email only once indexed -- here it is too new, so the create answers 409 with its id.
    write(tmp_path / "users.csv", HEADER + "u1,dup@x.io,,10,,,\n")

    call(
        emulator,
        "POST",
        "/intercom/contacts",
        headers={"Authorization": "Bearer t"},
        json={"role": "user", "email": "dup@x.io"},
    )
    result = sync(intercom_settings())
    assert result.deliveries["intercom"].counts == {"ok": 1}
    (contact,) = emulator.intercom.state()["contacts"].values()
    assert contact["custom_attributes"]["Accoil_Default_Score"] == 10


def test_429_with_reset_delays_but_loses_nothing(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "".join(f"u{n},u{n}@x.io,,{n},,," + "\n" for n in range(30)))
    emulator.set_faults("intercom", Faults(fail_next=[200] * 0 + [429, 429]))
    result = sync(intercom_settings())
    assert result.deliveries["intercom"].counts == {"ok": 30}
    assert emulator.intercom.state()["requests"]["by_status"]["429"] == 2
    assert len(emulator.intercom.state()["contacts"]) == 30


def test_a_validation_error_fails_only_that_contact(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,good@x.io,,10,,,\nu2,bad@@x,,20,,,\nu3,fine@x.io,,30,,,\n")
    result = sync(intercom_settings())
    report = result.deliveries["intercom"]
    assert report.counts == {"ok": 2, "rejected": 1}
    assert any("Email address is invalid" in r for r in report.reason_texts())
    assert set(emulator.intercom.state()["contacts"]) == {"u1", "u3"}


def test_attribute_type_clash_and_cap_fail_early(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path, make_settings: WriteConfig
) -> None:
    call(
        emulator,
        "POST",
        "/intercom/data_attributes",
        headers={"Authorization": "Bearer t"},
        json={"name": "Accoil_Default_Score", "model": "contact", "data_type": "string"},
    )
    write(tmp_path / "users.csv", HEADER + "u1,a@x.io,,10,,,\n")
    result = sync(intercom_settings())
    assert result.exit_code == 3
    assert "'Accoil_Default_Score' exists as string" in (result.deliveries["intercom"].stopped or "")
    profiles = "".join(f'[[profiles]]\nname = "P{n}"\n' for n in range(16))
    many = intercom_settings(extra=profiles)
    result = sync(many)
    assert result.exit_code == 3
    assert "need 256 Intercom data attributes" in (result.deliveries["intercom"].stopped or "")


def test_an_attribute_created_but_whose_answer_was_lost_is_not_an_error(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    # Found by the chaos suite: list contact and company attributes, then the first create is written and
    # its connection dropped; the retry hears "you already have it".
    emulator.intercom.faults = Faults(fail_next=[-1, -1, 0])
    write(tmp_path / "users.csv", HEADER + "u1,a@x.io,,10,,,\n")
    result = sync(intercom_settings())
    assert result.exit_code == 0, result.deliveries["intercom"].stopped
    contact = next(iter(emulator.intercom.contacts.values()))
    assert contact["custom_attributes"]["Accoil_Default_Score"] == 10
