"""HubSpot identity against a messy portal (issue 14): every object's metrics land on its own HubSpot record
or are reported, never on someone else's -- checked record by record after a first sync, a change (with a
changed email), merges and deletes made in HubSpot, and a --full-refresh, for each match setting with
creation on and off."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import WriteConfig, write
from tests.integration.conftest import destination_section
from tests.integration.test_hubspot import Recorder

USERS = """user_id,email,score
u01,a1@acme.io,11
u02,b2@acme.io,12
u03,c3@acme.io,13
u04,d4@acme.io,14
u05,Case@globex.com,15
u06,case@globex.com,16
u07,e7@x.io,17
u08,not-an-email,18
u09,f9@initech.io,19
"""
ACCOUNTS = """account_id,name,domain,score
acc_a,Acme,acme.io,21
acc_b,Globex,globex.com,22
acc_c,Hooli,hooli.xyz,23
acc_d,Initech,initech.io,24
acc_e,,,25
acc_f,Shared,shared.io,26
acc_g,Shared Too,https://www.Shared.io/,27
acc_h,Only Name,,28
"""
SCORE = "accoil_default_score"


def rows(text: str) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(text)))


def bump(text: str, by: int, **emails: str) -> str:
    """Every score + ``by``; ``emails`` changes a user's email."""
    out = []
    for row in rows(text):
        row["score"] = str(int(row["score"]) + by)
        if row.get("user_id") in emails:
            row["email"] = emails[row["user_id"]]
        out.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(out[0]))
    writer.writeheader()
    writer.writerows(out)
    return buf.getvalue()


def state_rows(settings: Settings, kind: str) -> dict[str, tuple[str | None, str, str | None, str | None]]:
    with sqlite3.connect(settings.state.path) as db:
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in db.execute(
                "SELECT key, dest_id, status, reason_class, last_error FROM records "
                "WHERE destination = 'hubspot' AND kind = ?",
                (kind,),
            )
        }


def check_ownership(
    emulator: Emulator, settings: Settings, users: str, accounts: str, rec: Recorder | None = None
) -> None:
    """Record by record: a HubSpot record carrying metrics is owned by exactly one key, and carries that
    key's current metrics; no company is nameless; no batch names an id twice."""
    hub = emulator.hubspot.state()
    for kind, object_type, text, id_col in (
        ("user", "contacts", users, "user_id"),
        ("account", "companies", accounts, "account_id"),
    ):
        scores = {r[id_col]: r["score"] for r in rows(text)}
        owners = {v[0]: k for k, v in state_rows(settings, kind).items() if v[0] is not None}
        for record_id, props in hub[object_type].items():
            if object_type == "companies":
                assert props.get("name"), f"nameless company {record_id}: {props}"
            if SCORE not in props:
                continue
            owner = owners.get(record_id)
            assert owner is not None, f"{object_type} {record_id} carries metrics but no key owns it: {props}"
            assert props[SCORE] == scores[owner], f"{object_type} {record_id} has another key's metrics"
    for _, path, body in rec.writes() if rec else []:
        inputs = (body or {}).get("inputs") or []
        ids = [str(i["id"]).lower() for i in inputs]
        assert len(ids) == len(set(ids)), f"a batch named an id twice: {path} {ids}"


def reported(settings: Settings, kind: str, key: str, reason_class: str, *names: str) -> None:
    _, status, cls, error = state_rows(settings, kind)[key]
    assert (status, cls) == ("rejected", reason_class), (key, status, cls, error)
    for name in names:
        assert name in (error or ""), (key, error)


def run(settings: Settings, rec: Recorder, full_refresh: bool = False) -> RunResult:
    return asyncio.run(
        execute(
            settings,
            deliver=True,
            destinations=["hubspot"],
            full_refresh=full_refresh,
            connector_factory=rec.factory,
            allow_mass_change=True,  # every user of this small portal changes at once; the guards are not under test
        )
    )


@pytest.mark.parametrize("create_missing", [True, False], ids=["create", "nocreate"])
@pytest.mark.parametrize("contact_match", ["email", "property"])
@pytest.mark.parametrize("company_match", ["domain", "property"])
def test_messy_portal_every_record_keeps_its_owner(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    create_missing: bool,
    contact_match: str,
    company_match: str,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    manifest = emulator.seed_messy(rows(USERS), rows(ACCOUNTS))["hubspot"]
    seeded = {t: len(v) for t, v in emulator.hubspot.objects.items()}
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    section = destination_section(
        served,
        "hubspot",
        create_missing=create_missing,
        contact_match=contact_match,
        company_match=company_match,
    )
    settings = make_settings("users.csv", "accounts.csv", section)
    rec = Recorder()
    users, accounts = USERS, ACCOUNTS

    # 1. First sync into the messy portal.
    run(settings, rec)
    check_ownership(emulator, settings, users, accounts, rec)
    contacts = state_rows(settings, "user")
    for key, contact_id in {**manifest["existing_contacts"], **manifest["additional_email"]}.items():
        assert contacts[key][0] == contact_id, key  # found by email (any case) or by an additional email
    for key, deleted in manifest["deleted_contacts"].items():
        assert contacts[key][0] != deleted  # an archived contact is never matched
        assert (contacts[key][0] is not None) == create_missing
    companies = state_rows(settings, "account")
    if company_match == "domain":
        for key, company_id in manifest["existing_companies"].items():
            assert companies[key][0] == company_id, key
        for key, ids in manifest["ambiguous_domain"].items():
            reported(settings, "account", key, "ambiguous", *ids)
    if not create_missing:
        assert {t: len(v) for t, v in emulator.hubspot.objects.items()} == seeded  # nothing created

    def conflicts_reported() -> None:
        reported(settings, "user", "u06", "conflict", "u05")  # same email, another case
        if company_match == "domain":
            reported(settings, "account", "acc_g", "conflict", "acc_f")  # same normalised domain
        reported(settings, "user", "u08", "invalid")

    conflicts_reported()

    # 2. Metrics change and one user's email changes: the object keeps its record.
    before = state_rows(settings, "user")["u07"][0]
    users, accounts = bump(USERS, 10, u07="e7-new@x.io"), bump(ACCOUNTS, 10)
    write(tmp_path / "users.csv", users)
    write(tmp_path / "accounts.csv", accounts)
    run(settings, rec)
    check_ownership(emulator, settings, users, accounts, rec)
    assert state_rows(settings, "user")["u07"][0] == before
    conflicts_reported()

    # 3. Sales merges u01's contact into another and deletes acc_a's company: ids go stale.
    hub = emulator.hubspot
    old_contact = state_rows(settings, "user")["u01"][0]
    assert old_contact is not None
    sales, _ = hub._write("contacts", None, {"email": "owner-kept@acme.io"})
    hub.merge("contacts", sales["id"], old_contact)
    old_company = state_rows(settings, "account")["acc_a"][0]
    if old_company is not None:
        hub.archive("companies", old_company)
    users, accounts = bump(USERS, 20), bump(ACCOUNTS, 20)
    write(tmp_path / "users.csv", users)
    write(tmp_path / "accounts.csv", accounts)
    run(settings, rec)
    check_ownership(emulator, settings, users, accounts, rec)
    assert state_rows(settings, "user")["u01"][0] == sales["id"]  # re-resolved to the merge's survivor
    assert hub.state()["contacts"][sales["id"]][SCORE] == "31"
    if old_company is not None:
        new_company = state_rows(settings, "account")["acc_a"][0]
        if create_missing:
            assert new_company not in (None, old_company)
            assert hub.state()["companies"][new_company]["name"] == "Acme"
        else:
            reported(settings, "account", "acc_a", "not_found")
    conflicts_reported()

    # 4. A --full-refresh re-sends everything: still nobody's metrics on another's record.
    run(settings, rec, full_refresh=True)
    check_ownership(emulator, settings, users, accounts, rec)
    conflicts_reported()


def test_a_merged_record_is_followed_to_its_survivor_and_a_deleted_one_reported(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HubSpot's merge keeps the primary record and lists the merged-away ids in its
    ``hs_merged_object_ids``; reading a merged-away id answers with the survivor (hubspot-api-nodejs#6:
    "request 'hs_merged_object_ids'"; developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/
    post-crm-v3-objects-contacts-merge). By our property alone the survivor is not found (it does not
    inherit a unique value), so only following the merge gets the metrics there."""
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    write(tmp_path / "accounts.csv", "account_id,name,domain,score\nacc_1,One,one.io,1\nacc_2,Two,two.io,2\n")
    section = destination_section(served, "hubspot", create_missing=True, company_match="property")
    settings = make_settings(None, "accounts.csv", section)
    rec = Recorder()
    run(settings, rec)
    ids = {k: v[0] for k, v in state_rows(settings, "account").items()}
    hub = emulator.hubspot
    kept, _ = hub._write("companies", None, {"name": "One (sales)", "domain": "one.io"})
    hub.merge("companies", kept["id"], str(ids["acc_1"]))
    hub.archive("companies", str(ids["acc_2"]))
    write(tmp_path / "accounts.csv", "account_id,name,domain,score\nacc_1,One,one.io,5\nacc_2,Two,two.io,6\n")
    settings = make_settings(
        None,
        "accounts.csv",
        destination_section(served, "hubspot", create_missing=False, company_match="property"),
    )
    rec = Recorder()
    report = run(settings, rec).deliveries["hubspot"]
    assert report.counts == {"ok": 1, "rejected": 1}
    assert state_rows(settings, "account")["acc_1"][0] == kept["id"]
    assert hub.state()["companies"][kept["id"]][SCORE] == "5"
    reported(settings, "account", "acc_2", "not_found", "acc_2")
    # One update, one read of the two stale ids, one lookup of the deleted one, one update to the survivor.
    assert [p.rsplit("/", 2)[-2:] for _, p, _ in rec.requests if "/objects/" in p] == [
        ["batch", "update"],
        ["batch", "read"],
        ["batch", "read"],
        ["batch", "update"],
    ]


def test_plan_resolve_counts_verdicts_before_anything_is_written(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    emulator.seed_messy(rows(USERS), rows(ACCOUNTS))
    before = emulator.hubspot.state()
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    settings = make_settings(
        "users.csv", "accounts.csv", destination_section(served, "hubspot", create_missing=True)
    )
    rec = Recorder()

    def plan() -> dict[str, Any]:
        result = asyncio.run(
            execute(
                settings, deliver=False, destinations=["hubspot"], connector_factory=rec.factory, resolve=True
            )
        )
        return result.to_json()["destinations"]["hubspot"]["resolve"]  # type: ignore[no-any-return]

    resolved = plan()
    assert resolved["counts"] == {
        "account": {"update": 3, "create": 2, "not_found": 1, "ambiguous": 1, "conflict": 1},
        "user": {"update": 4, "create": 3, "not_found": 1, "ambiguous": 0, "conflict": 1},
    }
    details = {r["key"]: r["detail"] for r in resolved["reported"]}
    assert "u05" in details["u06"] and "acc_f" in details["acc_g"]
    # what a person can act on comes first: conflicts, then ambiguities, then the not found
    verdicts = [r["verdict"] for r in resolved["reported"]]
    assert verdicts[:3] == ["conflict", "conflict", "ambiguous"] and verdicts.index("not_found") > 2
    assert all(m == "POST" and p.endswith(("/batch/read", "/search")) for m, p, _ in rec.requests)
    assert emulator.hubspot.state()["contacts"] == before["contacts"]  # read-only
    # After the sync, a changed run resolves from the stored ids: one read per kind, everything "update"
    # except the reported ones.
    run(settings, Recorder())
    write(tmp_path / "users.csv", bump(USERS, 1, u07="e7-new@x.io"))
    write(tmp_path / "accounts.csv", bump(ACCOUNTS, 1))
    rec.requests.clear()
    resolved = plan()
    assert resolved["counts"]["user"] == {
        "update": 7,
        "create": 0,
        "not_found": 1,
        "ambiguous": 0,
        "conflict": 1,
    }
    assert resolved["counts"]["account"]["update"] == 5
    moved = {r["key"]: r for r in resolved["reported"]}["u07"]
    assert moved["verdict"] == "update" and "e7-new@x.io" in moved["detail"]
    assert "keeps this contact" in moved["detail"]


def test_emulate_messy_seeds_from_the_configured_source(make_settings: WriteConfig, tmp_path: Path) -> None:
    from accoil_sync.emulator.messy import source_rows

    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    users, accounts = source_rows(make_settings("users.csv", "accounts.csv"))
    assert users[0] == {"user_id": "u01", "email": "a1@acme.io", "domain": None, "name": None}
    assert {a["account_id"]: a["domain"] for a in accounts}["acc_g"] == "https://www.shared.io/"
    made = Emulator("clean").seed_messy(users, accounts)["hubspot"]
    assert set(made["existing_contacts"]) == {"u01", "u05"} and set(made["ambiguous_domain"]) == {"acc_b"}


def test_plan_resolve_on_the_command_line(served: str, emulator: Emulator, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    emulator.seed_messy(rows(USERS), rows(ACCOUNTS))
    write(tmp_path / "users.csv", USERS)
    write(tmp_path / "accounts.csv", ACCOUNTS)
    section = destination_section(served, "hubspot", create_missing=False)
    write(
        tmp_path / "c.toml",
        '[source]\nusers = "users.csv"\naccounts = "accounts.csv"\n[state]\npath = "state/state.db"\n'
        + section,
    )
    env = {**os.environ, "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-test", "COLUMNS": "200"}

    def plan(*extra: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "accoil_sync", "plan", "-c", "c.toml", "--resolve", *extra]
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)

    table = plan()
    # A sync would be refused the not-found (creation off) and the conflicting: plan says so with exit 1
    assert table.returncode == 1, table.stderr
    assert "Resolve (read-only lookups)" in table.stdout
    assert "'u06': conflict" in table.stdout and "u05" in table.stdout
    data = json.loads(plan("--json").stdout)
    counts = data["destinations"]["hubspot"]["resolve"]["counts"]
    assert counts["user"] == {"update": 4, "create": 0, "not_found": 4, "ambiguous": 0, "conflict": 1}


@pytest.mark.parametrize("fill", [False, True])
def test_names_and_domains_of_matched_companies_are_filled_only_when_asked_and_empty(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fill: bool,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    hub = emulator.hubspot
    nameless, _ = hub._write("companies", None, {"domain": "a.io"})
    named, _ = hub._write("companies", None, {"domain": "b.io", "name": "Sales' name"})
    write(tmp_path / "accounts.csv", "account_id,name,domain,score\nacc_a,Alpha,a.io,1\nacc_b,Beta,b.io,2\n")
    section = destination_section(served, "hubspot", fill_company_details=fill)
    settings = make_settings(None, "accounts.csv", section)
    run(settings, Recorder())
    companies = hub.state()["companies"]
    assert companies[nameless["id"]].get("name") == ("Alpha" if fill else None)
    assert companies[named["id"]]["name"] == "Sales' name"  # never overwritten
    # A later change writes metrics only: names and domains are not sent again (nor cleared).
    hub._write("companies", hub.objects["companies"][named["id"]], {"name": "Renamed by sales"})
    write(
        tmp_path / "accounts.csv", "account_id,name,domain,score\nacc_a,Alpha2,a.io,3\nacc_b,Beta2,b.io,4\n"
    )
    rec = Recorder()
    run(settings, rec)
    assert hub.state()["companies"][named["id"]]["name"] == "Renamed by sales"
    sent = [i["properties"] for _, _, body in rec.writes() for i in (body or {}).get("inputs", [])]
    assert sent and all(set(p) == {SCORE} for p in sent)


def test_placeholder_domains_are_reported_not_matched_or_created(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exports fill an empty domain with text (``n/a``, ``-``, a company name): as a HubSpot domain it would
    match or make one company for every such account. Each is reported with its value; nothing is created."""
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    write(tmp_path / "users.csv", "user_id,email,score\nu1,a@acme.io,1\n")
    accounts = (
        "account_id,name,domain,score\nacc_1,Acme,acme.io,10\nacc_2,Globex,n/a,20\n"
        "acc_3,Hooli,n/a,30\nacc_4,Initech,Initech Inc,40\n"
    )
    write(tmp_path / "accounts.csv", accounts)
    settings = make_settings(
        "users.csv", "accounts.csv", destination_section(served, "hubspot", create_missing=True)
    )
    run(settings, Recorder())
    for key, value in (("acc_2", "n/a"), ("acc_3", "n/a"), ("acc_4", "initech inc")):
        reported(settings, "account", key, "invalid", f"domain {value!r} is not a domain name")
    companies = emulator.hubspot.state()["companies"].values()
    assert [(c.get("name"), c.get("domain")) for c in companies] == [("Acme", "acme.io")]
