"""A messy HubSpot portal, made from the source's own rows: what a real CRM holds before accoil-sync runs.

Every fourth user and account falls into each of these cases, in row order:

- contacts: 0 a contact that already exists (its email typed in another case: HubSpot stores emails lower
  case), 1 a contact whose *additional* email is the user's (its primary email is another), 2 a contact
  with the user's email that was deleted (archived) since, so nothing must match it, 3 nothing;
- companies: 0 a company that already exists with a ``www.`` domain in capitals, 1 two companies on the
  same domain (HubSpot does not keep domains unique), 2 nothing, 3 a company with the plain domain.

Merged and deleted records that accoil-sync already wrote to are made after a sync, with HubSpot's own
endpoints (``POST /crm/v3/objects/{type}/merge``, ``DELETE /crm/v3/objects/{type}/{id}``). The manifest
says, per source key, which pre-existing record ids it should end up on (or why none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accoil_sync.connectors.hubspot_identity import normalise_domain

if TYPE_CHECKING:
    from accoil_sync.emulator.hubspot import HubSpot


def _text(row: dict[str, Any], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return ""


def seed(hub: HubSpot, users: list[dict[str, Any]], accounts: list[dict[str, Any]]) -> dict[str, Any]:
    manifest: dict[str, dict[str, Any]] = {
        "existing_contacts": {},  # key -> the contact id its metrics must land on
        "additional_email": {},  # key -> the contact whose additional email is the user's
        "deleted_contacts": {},  # key -> an archived contact id that must stay untouched
        "existing_companies": {},  # key -> the company id its metrics must land on
        "ambiguous_domain": {},  # key -> the two company ids on its domain (neither may be written)
    }
    seen_users: set[str] = set()
    emails: set[str] = set()  # one pre-existing record per email: a second user on it is the source's doing
    for n, row in enumerate(users):
        key, email = _text(row, "user_id", "key", "id"), _text(row, "email")
        if not key or "@" not in email or key in seen_users or email.lower() in emails:
            continue
        seen_users.add(key)
        emails.add(email.lower())
        case = len(seen_users) - 1
        local, domain = email.rsplit("@", 1)
        if case % 4 == 0:
            obj, _ = hub._write(
                "contacts", None, {"email": f"{local.title()}@{domain.upper()}", "firstname": "Pre"}
            )
            manifest["existing_contacts"][key] = obj["id"]
        elif case % 4 == 1:
            props = {"email": f"old-{n}.{local}@previous-employer.example", "hs_additional_emails": email}
            obj, _ = hub._write("contacts", None, props)
            manifest["additional_email"][key] = obj["id"]
        elif case % 4 == 2:
            obj, _ = hub._write("contacts", None, {"email": email, "firstname": "Deleted"})
            hub.archive("contacts", obj["id"])
            manifest["deleted_contacts"][key] = obj["id"]
    seen_accounts: set[str] = set()
    domains: set[str] = set()
    for row in accounts:
        key, domain = _text(row, "account_id", "key", "id"), normalise_domain(_text(row, "domain")) or ""
        if not key or not domain or key in seen_accounts or domain in domains:
            continue
        seen_accounts.add(key)
        domains.add(domain)
        case = len(seen_accounts) - 1
        name = _text(row, "name") or domain
        if case % 4 == 0:
            obj, _ = hub._write("companies", None, {"name": name, "domain": f"www.{domain.upper()}"})
            manifest["existing_companies"][key] = obj["id"]
        elif case % 4 == 1:
            ids = [
                hub._write("companies", None, {"name": f"{name} {s}", "domain": domain})[0]["id"]
                for s in "AB"
            ]
            manifest["ambiguous_domain"][key] = ids
        elif case % 4 == 3:
            obj, _ = hub._write("companies", None, {"name": name, "domain": domain})
            manifest["existing_companies"][key] = obj["id"]
    return manifest
