"""A messy Intercom workspace for the emulator: what people and other tools leave behind before
accoil-sync's first sync (docs/IDENTITY.md), made from the source's own rows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accoil_sync.emulator.intercom import Intercom


def seed_contact(
    vendor: Intercom, external_id: str | None, email: str | None, **extra: Any
) -> dict[str, Any]:
    then = time.time() - 3600  # long since indexed by search
    contact = {
        "id": vendor._next(),
        "external_id": external_id,
        "email": email,
        "role": "user",
        "name": extra.pop("name", None),
        "created": then,
        "updated": then,
        "custom_attributes": {},
    }
    vendor.contacts[contact["id"]] = contact
    for tag_name in extra.pop("tags", []):
        vendor.contact_tags.setdefault(contact["id"], set()).add(vendor._tag_by_name(tag_name)["id"])
    return contact


def seed_messy(
    vendor: Intercom, users: list[dict[str, Any]], accounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """A workspace people have used before accoil-sync, made from the source rows (``user_id``,
    ``email``, ``account_id``; ``account_id``, ``name``, ``domain``). Users by position, in turn:

    - ``adopt``: a contact with the user's email in another case and no external_id (imported by
      hand), carrying a hand-made tag ``New`` and a name: the user's record, to be adopted;
    - ``conflict``: a contact with the user's email and someone else's external_id (``crm-<n>``):
      not the user's, never written;
    - ``ambiguous``: two contacts without external_id whose emails differ only in case: not guessed;
    - ``fresh``: nothing (found nowhere: created when creating is on).

    Accounts in turn: a company with our company_id whose name and website were edited by hand
    (``hand_edited``: kept), a company with the same name under another company_id (``lookalike``:
    not ours), or nothing. Returns a manifest: per user and account, the case and the ids made."""
    manifest: dict[str, Any] = {"contacts": {}, "companies": {}}
    cases = ("adopt", "conflict", "ambiguous", "fresh")
    for n, row in enumerate(u for u in users if u.get("email")):
        key, email = str(row["user_id"]), str(row["email"])
        case = cases[n % len(cases)]
        made: list[str] = []
        if case == "adopt":
            made.append(seed_contact(vendor, None, email.upper(), name="Hand Made", tags=["New"])["id"])
        elif case == "conflict":
            made.append(seed_contact(vendor, f"crm-{n}", email)["id"])
        elif case == "ambiguous":
            made.append(seed_contact(vendor, None, email)["id"])
            made.append(seed_contact(vendor, None, email.title())["id"])
        manifest["contacts"][key] = {"case": case, "ids": made, "owner": f"crm-{n}"}
    for n, row in enumerate(accounts):
        key = str(row["account_id"])
        case = ("hand_edited", "lookalike", "fresh")[n % 3]
        then = time.time() - 3600
        made = []
        if case != "fresh":
            company: dict[str, Any] = {
                "id": vendor._next(),
                "company_id": key if case == "hand_edited" else f"crm-{key}",
                "name": "Named By Hand" if case == "hand_edited" else row.get("name"),
                "website": "https://by-hand.example" if case == "hand_edited" else None,
                "created": then,
                "updated": then,
                "custom_attributes": {},
            }
            vendor.companies[company["id"]] = company
            made.append(company["id"])
        manifest["companies"][key] = {"case": case, "ids": made}
    return manifest
