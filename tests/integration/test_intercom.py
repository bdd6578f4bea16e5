"""Intercom connector against the emulator: attributes and tags land, nothing is re-sent, tags follow
segment membership, missing contacts are reported (or created), 429s only delay, one bad contact fails alone."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import WriteConfig, failure_reasons, write
from tests.integration.conftest import call, destination_section

HEADER = "user_id,email,account_id,score,segments,last_active,frequency\n"


@pytest.fixture
def intercom_settings(
    served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> WriteConfig:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN", "tok-test")

    def make(
        users: str | None = "users.csv",
        accounts: str | None = None,
        create: bool = True,
        extra: str = "",
        prefix: str = "Accoil: ",
    ) -> Settings:
        section = destination_section(served, "intercom", create_missing_contacts=create, tag_prefix=prefix)
        return make_settings(users, accounts, extra + section)

    return make


def sync(settings: Settings) -> RunResult:
    # These small workspaces change every contact at once on purpose; the mass-change guard is tested elsewhere.
    return asyncio.run(execute(settings, deliver=True, destinations=["intercom"], allow_mass_change=True))


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
    settings = intercom_settings(create=False)
    result = sync(settings)
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
    settings = intercom_settings()
    result = sync(settings)
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


def _endpoints(emulator: Emulator) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in emulator.intercom.counters()["by_endpoint"].items():
        endpoint = key.rsplit(" ", 1)[0]
        out[endpoint] = out.get(endpoint, 0) + n
    return out


def test_tags_in_bulk_reach_exactly_the_right_contacts_and_companies(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    # One run adds tag B to u1 and u2 and removes it from u3 and u4 (and the same for companies).
    accounts_header = "account_id,name,domain,score,segments\n"
    users = write(
        tmp_path / "users.csv",
        HEADER + "".join(f"u{n},u{n}@x.io,,{n},{'A' if n < 3 else 'A;B'},,\n" for n in range(1, 6)),
    )
    accounts = write(
        tmp_path / "accounts.csv",
        accounts_header + "".join(f"a{n},Co {n},,{n},{'A' if n < 3 else 'A;B'}\n" for n in range(1, 6)),
    )
    settings = intercom_settings(accounts="accounts.csv")
    assert sync(settings).deliveries["intercom"].counts == {"ok": 10}
    write(
        users,
        HEADER
        + "".join(f"u{n},u{n}@x.io,,{n},{'A;B' if n < 3 else 'A'},,\n" for n in range(1, 5))
        + "u5,u5@x.io,,5,A;B,,\n",
    )
    write(
        accounts,
        accounts_header
        + "".join(f"a{n},Co {n},,{n},{'A;B' if n < 3 else 'A'}\n" for n in range(1, 5))
        + "a5,Co 5,,5,A;B\n",
    )
    before = _endpoints(emulator)
    assert sync(settings).deliveries["intercom"].counts == {"ok": 8}
    state = emulator.intercom.state()
    for n in range(1, 6):
        want = ["Accoil: A", "Accoil: B"] if n != 3 and n != 4 else ["Accoil: A"]
        assert state["contacts"][f"u{n}"]["tags"] == want, n
        assert state["companies"][f"a{n}"]["tags"] == want, n
    sent = {k: v - before.get(k, 0) for k, v in _endpoints(emulator).items() if v != before.get(k, 0)}
    # Contacts: one bulk add for u1+u2 (its answer names the tag's id), two DELETEs (no bulk untag for
    # users), four attribute updates (the Segments string); companies: one bulk tag, one bulk untag.
    assert sent == {
        "tags/create": 1 + 1 + 1,
        "contacts/untag": 2,
        "contacts/update": 4,
        "companies/create_or_update": 4,
    }
    before = emulator.intercom.counters()["total"]
    assert sync(settings).deliveries["intercom"].counts == {}
    assert emulator.intercom.counters()["total"] == before  # unchanged re-run: no request at all


def test_a_user_who_moves_is_detached_from_the_old_company(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "accounts.csv", "account_id,name,score\nacc_a,A,1\nacc_b,B,2\n")
    users = write(tmp_path / "users.csv", HEADER + "u1,u1@x.io,acc_a,10,,,\n")
    settings = intercom_settings(accounts="accounts.csv")
    sync(settings)
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == ["acc_a"]
    write(users, HEADER + "u1,u1@x.io,acc_b,10,,,\n")
    assert sync(settings).deliveries["intercom"].counts == {"ok": 1}
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == ["acc_b"]


def test_a_move_detaches_an_attach_that_state_never_heard_of_and_leaves_hand_made_companies(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    """A run killed between its attach and its commit leaves the contact on a company state does not
    know (found by a kill -9 test whose source moved users every run): the next move detaches every
    company of ours but the new one. A company no key of ours owns, attached by hand, stays."""
    write(tmp_path / "accounts.csv", "account_id,name,score\nacc_a,A,1\nacc_b,B,2\nacc_c,C,3\n")
    users = write(tmp_path / "users.csv", HEADER + "u1,u1@x.io,acc_a,10,,,\n")
    settings = intercom_settings(accounts="accounts.csv")
    sync(settings)
    intercom = emulator.intercom
    by_key = {c["company_id"]: cid for cid, c in intercom.companies.items()}
    contact = next(cid for cid, c in intercom.contacts.items() if c.get("external_id") == "u1")
    hand = call(
        emulator,
        "POST",
        "/intercom/companies",
        headers={"Authorization": "Bearer tok-test", "Intercom-Version": "2.14"},
        json={"company_id": "crm-77", "name": "Hand"},
    )
    assert hand.status_code == 200, hand.text
    intercom.contact_companies[contact].update({by_key["acc_b"], hand.json()["id"]})  # the lost run's attach
    write(users, HEADER + "u1,u1@x.io,acc_c,10,,,\n")
    assert sync(settings).deliveries["intercom"].counts == {"ok": 1}
    assert sorted(emulator.intercom.state()["contacts"]["u1"]["companies"]) == ["acc_c", "crm-77"]


def test_a_user_whose_company_is_missing_is_not_acknowledged_until_it_is_attached(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    # The account is not in the source (yet): the contact is written, the attach cannot be, and the
    # user is not recorded as delivered -- it is attached once the company exists.
    write(tmp_path / "users.csv", HEADER + "u1,u1@x.io,acc_late,10,,,\n")
    accounts = write(tmp_path / "accounts.csv", "account_id,name,score\nacc_other,O,1\n")
    settings = intercom_settings(accounts="accounts.csv")
    report = sync(settings).deliveries["intercom"]
    assert report.counts == {"ok": 1, "rejected": 1}
    assert any("company acc_late is not in Intercom yet" in r for r in failure_reasons(settings, "intercom"))
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == []
    write(accounts, "account_id,name,score\nacc_other,O,1\nacc_late,L,2\n")
    asyncio.run(execute(settings, deliver=True, destinations=["intercom"], full_refresh=True))
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == ["acc_late"]


def test_an_attribute_archived_after_it_was_cached_heals_in_the_same_run(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = write(tmp_path / "users.csv", HEADER + "".join(f"u{n},u{n}@x.io,,{n},,,\n" for n in range(20)))
    settings = intercom_settings()
    sync(settings)
    emulator.intercom.attributes["contact"].pop("Accoil_Default_Score")  # someone deleted it
    write(users, HEADER + "".join(f"u{n},u{n}@x.io,,{n + 1},,,\n" for n in range(20)))
    assert sync(settings).deliveries["intercom"].counts == {"ok": 20}
    scores = {
        k: c["custom_attributes"].get("Accoil_Default_Score")
        for k, c in emulator.intercom.state()["contacts"].items()
    }
    assert scores == {f"u{n}": n + 1 for n in range(20)}


def test_attribute_list_is_read_again_only_when_older_than_its_ttl(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = write(tmp_path / "users.csv", HEADER + "u1,u1@x.io,,1,,,\n")
    settings = intercom_settings()
    sync(settings)
    listed = _endpoints(emulator)["data_attributes/list"]
    write(users, HEADER + "u1,u1@x.io,,2,,,\n")
    sync(settings)
    assert _endpoints(emulator)["data_attributes/list"] == listed  # cached: not read again
    for cache in Path(settings.state.directory).glob("intercom-attributes-*.json"):
        os.utime(cache, (time.time() - 25 * 3600, time.time() - 25 * 3600))  # older than the 24 h TTL
    write(users, HEADER + "u1,u1@x.io,,3,,,\n")
    sync(settings)
    assert _endpoints(emulator)["data_attributes/list"] == listed + 2  # contacts and companies


def test_a_deleted_contact_whose_tags_alone_changed_is_created_again(
    intercom_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,u1@x.io,,10,A,,\nu2,u2@x.io,,20,A,,\n")

    def settings(prefix: str) -> Settings:
        return intercom_settings(prefix=prefix)

    sync(settings("Accoil: "))
    emulator.intercom.delete_contact(emulator.intercom.state()["contacts"]["u1"]["id"])
    # A new prefix re-plans every object, and only the tags differ: no attribute update finds the gone id,
    # the tag call does.
    report = sync(settings("Acc: ")).deliveries["intercom"]
    assert report.counts == {"ok": 2}, report.reasons
    state = emulator.intercom.state()["contacts"]
    assert state["u1"]["tags"] == ["Acc: A"] and state["u2"]["tags"] == ["Acc: A"]
    assert state["u1"]["custom_attributes"]["Accoil_Default_Score"] == 10  # the whole record, again
