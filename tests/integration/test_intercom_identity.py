"""Intercom against a messy workspace (Emulator.seed_messy): after sync, change, --full-refresh and re-run,
every contact carrying Accoil metrics carries its owner's (checked record by record), conflicts and
ambiguities are reported with both keys, deleted and merged ids are resolved again, hand-made data (names,
websites, tags) is kept, and every synced user is attached to its company (docs/IDENTITY.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import WriteConfig, failure_reasons, write
from tests.integration.conftest import destination_section

USERS_HEADER = "user_id,email,account_id,score,segments\n"
ACCOUNTS_HEADER = "account_id,name,domain,score,segments\n"
N_USERS, N_ACCOUNTS = 24, 4
SCORE = "Accoil_Default_Score"


def users(bump: int, count: int = N_USERS) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        segment = ("New", "Engaged", "Champions")[(n + bump) % 3]
        rows.append(
            {
                "user_id": f"u{n}",
                "email": f"person{n}@example.com",
                "account_id": f"a{(n + bump // 2) % N_ACCOUNTS}",
                "score": (10 + n + bump) % 90,
                "segments": segment,
            }
        )
    # Two source users behind one mailbox (the address in two cases): at most one of them can own it.
    rows.append(dict(rows[-1], user_id="twin", score=90 + bump, email=rows[-1]["email"].upper()))
    return rows


def accounts(bump: int) -> list[dict[str, Any]]:
    return [
        {
            "account_id": f"a{n}",
            "name": f"Company {n}",
            "domain": f"co{n}.io" if n % 2 == 0 else "",  # no domain: never a null website
            "score": 50 + n + bump,
            "segments": "Engaged",
        }
        for n in range(N_ACCOUNTS)
    ]


def write_source(tmp_path: Path, bump: int, count: int = N_USERS) -> None:
    write(
        tmp_path / "users.csv",
        USERS_HEADER
        + "".join(
            f"{u['user_id']},{u['email']},{u['account_id']},{u['score']},{u['segments']}\n"
            for u in users(bump, count)
        ),
    )
    write(
        tmp_path / "accounts.csv",
        ACCOUNTS_HEADER
        + "".join(
            f"{a['account_id']},{a['name']},{a['domain']},{a['score']},{a['segments']}\n"
            for a in accounts(bump)
        ),
    )


def check_every_record(
    emulator: Emulator,
    bump: int,
    manifest: dict[str, Any],
    create: bool,
    lost: frozenset[str] = frozenset(),
    count: int = N_USERS,
) -> None:
    """Record by record: a contact with Accoil metrics carries exactly its owner's; hand data stays."""
    source = {u["user_id"]: u for u in users(bump, count)}
    pair = {"twin", f"u{count - 1}"}  # two source users behind one mailbox
    intercom = emulator.intercom
    synced: set[str] = set()
    for contact in intercom.contacts.values():
        attrs = contact["custom_attributes"]
        if SCORE not in attrs:
            continue
        owner = contact["external_id"]
        assert owner in source, f"contact {contact['id']} carries metrics but belongs to {owner!r}"
        assert attrs[SCORE] == source[owner]["score"], (owner, attrs)
        assert owner not in synced, f"two contacts carry {owner}'s metrics"
        synced.add(owner)
        tags = {intercom.tags[t]["name"] for t in intercom.contact_tags.get(contact["id"], set())}
        assert f"Accoil: {source[owner]['segments']}" in tags
        assert {t for t in tags if t.startswith("Accoil: ")} == {f"Accoil: {source[owner]['segments']}"}
        companies = {
            intercom.companies[i]["company_id"] for i in intercom.contact_companies.get(contact["id"], set())
        }
        assert companies == {source[owner]["account_id"]}, (owner, companies)
    cases = manifest["contacts"]
    never = {k for k, v in cases.items() if v["case"] in ("conflict", "ambiguous")}
    expected = set(source) - never - pair
    if not create:
        expected -= {k for k, v in cases.items() if v["case"] == "fresh"}
    # The shared mailbox: exactly one of the two owns its contact (the other is a reported conflict).
    assert len(synced & pair) == 1
    assert synced - pair == expected - lost
    for case in cases.values():
        for made in case["ids"]:
            contact = intercom.contacts.get(made)
            if case["case"] in ("conflict", "ambiguous") and contact is not None:
                assert SCORE not in contact["custom_attributes"]
                assert contact["external_id"] in (None, case["owner"])
            if case["case"] == "adopt" and contact is not None:
                tags = {intercom.tags[t]["name"] for t in intercom.contact_tags.get(made, set())}
                assert "New" in tags and contact["name"] == "Hand Made"  # hand-made data kept
    companies = {c["company_id"]: c for c in intercom.companies.values()}
    for n, account in enumerate(accounts(bump)):
        company = companies[account["account_id"]]
        assert company["custom_attributes"]["Accoil_Default_Account_Score"] == account["score"]
        if manifest["companies"][account["account_id"]]["case"] == "hand_edited":
            assert (company["name"], company["website"]) == ("Named By Hand", "https://by-hand.example")
        else:
            assert company["name"] == f"Company {n}"
            assert company.get("website") == (account["domain"] or None)


def reported(settings: Settings) -> str:
    """What is failing now, with its reasons (run reports carry reason classes only)."""
    return "\n".join(failure_reasons(settings, "intercom"))


@pytest.mark.parametrize("create", [True, False])
def test_messy_workspace_every_record_is_its_owners(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    create: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN", "tok-test")
    manifest = emulator.seed_messy(users(0), accounts(0))["intercom"]
    settings: Settings = make_settings(
        "users.csv", "accounts.csv", destination_section(served, "intercom", create_missing_contacts=create)
    )

    def sync(bump: int, full_refresh: bool = False, lost: frozenset[str] = frozenset()) -> RunResult:
        write_source(tmp_path, bump)
        result = asyncio.run(
            execute(
                settings,
                deliver=True,
                destinations=["intercom"],
                full_refresh=full_refresh,
                allow_mass_change=True,  # each step changes every contact of this small workspace
            )
        )
        assert result.deliveries["intercom"].stopped is None
        check_every_record(emulator, bump, manifest, create, lost)
        return result

    conflicts = {k: v for k, v in manifest["contacts"].items() if v["case"] == "conflict"}
    ambiguous = {k: v for k, v in manifest["contacts"].items() if v["case"] == "ambiguous"}
    for bump, full in ((0, False), (1, False), (1, True), (2, False)):
        result = sync(bump, full)
        text = reported(settings)
        for key, case in conflicts.items():
            assert f"belongs to key {case['owner']!r}" in text and case["ids"][0] in text, key
        for key, case in ambiguous.items():
            assert all(i in text for i in case["ids"]), key
        # The shared mailbox: both keys in one batch, the first by key ("twin") owns it, every run.
        assert "belongs to key 'twin'" in text
        if bump == 0:
            first = result
    counts = first.deliveries["intercom"].counts
    # Not found with creating off: the fresh users, but for u23, whose mailbox twin's contact exists.
    fresh = [k for k, v in manifest["contacts"].items() if v["case"] == "fresh" and k != "u23"]
    assert counts["rejected"] == len(conflicts) + len(ambiguous) + 1 + (0 if create else len(fresh))

    # Someone deletes one synced contact and merges another into a contact of their own: the stored ids
    # stop existing. The next run resolves both again (found by external_id or email, or created).
    adopted = [k for k, v in manifest["contacts"].items() if v["case"] == "adopt"]
    by_key = {c["external_id"]: c["id"] for c in emulator.intercom.contacts.values() if c["external_id"]}
    merged_key, deleted_key = adopted[0], adopted[1]
    survivor = emulator.intercom._seed_contact(None, "someone-else@example.com")["id"]
    emulator.intercom.merge_contact(by_key[merged_key], survivor)
    emulator.intercom.delete_contact(by_key[deleted_key])
    result = sync(3, lost=frozenset() if create else frozenset({deleted_key}))
    ids = {c["external_id"]: c["id"] for c in emulator.intercom.contacts.values() if c["external_id"]}
    assert ids[merged_key] == survivor
    if create:
        assert deleted_key in ids  # created again
    else:
        assert "create_missing_contacts is off" in reported(settings)


async def test_resolve_says_what_delivery_would_do_without_writing(
    served: str, emulator: Emulator, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from accoil_sync.config.models import IntercomDestination, ProfileConfig
    from accoil_sync.connectors import Change
    from accoil_sync.connectors.intercom import IntercomConnector
    from accoil_sync.traits import ObjectKind
    from accoil_sync.traits.model import ObjectRecord

    rows = users(0)[:4]
    manifest = emulator.seed_messy(rows, [])["intercom"]["contacts"]
    cfg = IntercomDestination(
        enabled=True, base_url=f"{served}/intercom", access_token=SecretStr("t"), create_missing_contacts=True
    )
    connector = IntercomConnector(cfg, [ProfileConfig(name="Default")], tmp_path)
    changes = [
        Change(
            "intercom",
            ObjectKind.USER,
            row["user_id"],
            "upsert",
            {},
            {},
            ObjectRecord(ObjectKind.USER, row["user_id"], {}, email=row["email"]),
            "fp",
        )
        for row in rows
    ]
    resolved = {r.key: r for r in await connector.resolve(ObjectKind.USER, changes)}
    await connector.aclose()
    endpoints = {k.rsplit(" ", 1)[0] for k in emulator.intercom.counters()["by_endpoint"]}
    assert endpoints <= {"contacts/search", "contacts/find_by_external_id", "contacts/get"}  # reads only
    assert resolved["u0"].verdict == "update" and resolved["u0"].dest_id == manifest["u0"]["ids"][0]
    assert resolved["u1"].verdict == "conflict" and "crm-1" in (resolved["u1"].detail or "")
    assert resolved["u2"].verdict == "ambiguous"
    assert all(i in (resolved["u2"].detail or "") for i in manifest["u2"]["ids"])
    assert resolved["u3"].verdict == "create"
    assert all(c["external_id"] in (None, "crm-1") for c in emulator.intercom.contacts.values())
