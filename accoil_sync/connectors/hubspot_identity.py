"""HubSpot identity: which HubSpot record a source key's metrics belong to (the rules: docs/IDENTITY.md).

Lookups are read-only and batched (100 keys per ``batch/read``, up to 100 domains per search page). They
answer per key with a ``Match``; the connector then claims the record through ``sync.identity.Ownership``
before writing, and creates records only for keys the lookup did not find.

- Contacts: by our unique property first (``contact_match = "property"``), then by email, compared lower
  case; HubSpot's ``batch/read`` by email also finds a contact by one of its additional emails and answers
  with the primary record (its ``hs_additional_emails`` says which input it was).
- Companies: by our unique property first; then (``company_match = "domain"``) by the normalised domain.
  One company on the domain is a match (our property is written on it, so the next lookup is direct); two
  or more are ambiguous and reported with their ids, never guessed.
- A match that already carries our unique property with another key's value belongs to that key: conflict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from accoil_sync.config.models import HubSpotDestination
from accoil_sync.connectors.http import Transport
from accoil_sync.errors import PermanentError
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind

OBJECT_TYPES = {ObjectKind.USER: "contacts", ObjectKind.ACCOUNT: "companies"}
READ_BATCH = 100
DOMAINS_PER_SEARCH = 50  # two values per domain (bare and www.); HubSpot's IN filter takes 100 values
EMAIL = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[A-Za-z]{2,}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
# Two or more dot-separated labels of letters (any script, for internationalised names), digits and inner
# hyphens, up to 63 characters each.
_LABEL = r"[^\W_](?:[^\W_]|-){0,61}(?<!-)"
DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")

MatchVerdict = Literal["found", "not_found", "ambiguous", "conflict", "invalid"]


@dataclass(slots=True)
class Match:
    verdict: MatchVerdict
    dest_id: str | None = None
    detail: str = ""
    # Identity properties to write with the first update of a record found another way (our unique id).
    stamp: dict[str, str] = field(default_factory=dict)


def normalise_domain(value: str | None) -> str | None:
    """``https://WWW.Acme.io/pricing`` -> ``acme.io``: lower case, no scheme, path, port or ``www.``.
    None for no value, and for one that is no domain name (``n/a``, ``-``, ``Acme Inc``): exports fill an
    empty cell with such text, and as a HubSpot domain it would match, or make, one company for all of them."""
    if not value:
        return None
    text = _SCHEME.sub("", value.strip().lower())
    text = text.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].rstrip(".")
    if text.startswith("www."):
        text = text[4:]
    return text if DOMAIN.match(text) else None


def domain_problem(value: str | None) -> str | None:
    """Why a source domain cannot be matched by (None: it can, or there is none)."""
    if not (value or "").strip() or normalise_domain(value):
        return None
    return (
        f"domain {value!r} is not a domain name: HubSpot companies are found and created by domain, so "
        "nothing was sent; correct it in the source, or leave it empty"
    )


def normalise_email(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text or None


class HubSpotIdentity:
    """Read-only lookups of HubSpot records for source keys."""

    def __init__(self, cfg: HubSpotDestination, transport: Transport) -> None:
        self.cfg = cfg
        self.transport = transport

    def id_property(self, kind: ObjectKind) -> str | None:
        """Our unique property on this object type, if accoil-sync keeps one."""
        if kind is ObjectKind.ACCOUNT:
            return self.cfg.company_id_property
        return self.cfg.contact_id_property if self.cfg.contact_match == "property" else None

    def email_problem(self, record: ObjectRecord) -> str | None:
        email = normalise_email(record.email)
        if not email:
            return "no email: HubSpot contacts are found and created by email"
        if not EMAIL.match(email):
            return f"email {email!r} is not one HubSpot accepts (INVALID_EMAIL); nothing was sent"
        return None

    async def lookup(self, kind: ObjectKind, items: Sequence[tuple[str, ObjectRecord]]) -> dict[str, Match]:
        """key -> Match for every item; nothing is written."""
        out: dict[str, Match] = {}
        rest = list(items)
        prop = self.id_property(kind)
        if prop is not None:
            wanted = [prop, "name", "domain"] if kind is ObjectKind.ACCOUNT else [prop]
            found = await self._read(OBJECT_TYPES[kind], prop, [key for key, _ in rest], wanted)
            for key, record in rest:
                if key in found:
                    hit = found[key][0]
                    out[key] = Match("found", hit["id"], stamp=self._details(kind, record, hit))
            rest = [(k, r) for k, r in rest if k not in out]
        if kind is ObjectKind.USER:
            await self._by_email(rest, out)
        elif self.cfg.company_match == "domain":
            await self._by_domain(rest, out)
        for key, _ in rest:
            out.setdefault(
                key,
                Match(
                    "not_found",
                    detail=f"no HubSpot {OBJECT_TYPES[kind]} record has {prop} {key!r}"
                    + (
                        ""
                        if kind is ObjectKind.USER or self.cfg.company_match != "domain"
                        else " or its domain"
                    ),
                ),
            )
        return out

    async def read_keys(self, kind: ObjectKind, keys: list[str]) -> dict[str, str]:
        """key -> the id of the record holding it in our unique property (``id_property``, which must be
        set); keys no record holds are left out."""
        prop = self.id_property(kind)
        assert prop is not None
        found = await self._read(OBJECT_TYPES[kind], prop, keys, [prop])
        return {key: hits[0]["id"] for key, hits in found.items()}

    def _details(self, kind: ObjectKind, record: ObjectRecord, hit: dict[str, Any]) -> dict[str, str]:
        """With ``fill_company_details``: the source's name and domain for a matched company that has none
        (never overwritten, never cleared)."""
        if kind is not ObjectKind.ACCOUNT or not self.cfg.fill_company_details:
            return {}
        fill = {}
        if not hit.get("name") and (record.name or "").strip():
            fill["name"] = (record.name or "").strip()
        if not hit.get("domain") and (domain := normalise_domain(record.domain)):
            fill["domain"] = domain
        return fill

    async def _read(
        self, object_type: str, id_property: str, values: list[str], properties: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """``batch/read`` by a unique property: the property's (lower-cased for email) value -> records."""
        found: dict[str, list[dict[str, Any]]] = {}
        values = list(dict.fromkeys(values))
        for start in range(0, len(values), READ_BATCH):
            chunk = values[start : start + READ_BATCH]
            try:
                response = await self.transport.request(
                    "POST",
                    f"/crm/v3/objects/{object_type}/batch/read",
                    json={
                        "idProperty": id_property,
                        "properties": properties,
                        "propertiesWithHistory": [],
                        "inputs": [{"id": v} for v in chunk],
                    },
                )
            except PermanentError as exc:
                if exc.status == 400 and "does not exist" in str(exc).lower():
                    continue  # our property is not created yet (plan before the first sync): nothing has it
                raise
            for result in response.json().get("results", []):
                props = result.get("properties") or {}
                names = [props.get(id_property)]
                if id_property == "email":
                    names += str(props.get("hs_additional_emails") or "").split(";")
                for name in names:
                    if name:
                        value = str(name).lower() if id_property == "email" else str(name)
                        found.setdefault(value, []).append({"id": str(result["id"]), **props})
        return found

    async def _by_email(self, items: list[tuple[str, ObjectRecord]], out: dict[str, Match]) -> None:
        emails = {}
        for key, record in items:
            problem = self.email_problem(record)
            if problem:
                out[key] = Match("invalid", detail=problem)
            else:
                emails[key] = normalise_email(record.email) or ""
        if not emails:
            return
        prop = self.id_property(ObjectKind.USER)
        wanted = ["email", "hs_additional_emails"] + ([prop] if prop else [])
        found = await self._read("contacts", "email", list(emails.values()), wanted)
        for key, email in emails.items():
            hits = found.get(email)
            if not hits:
                out[key] = Match("not_found", detail=f"no HubSpot contact has email {email!r}")
                continue
            hit = hits[0]
            if prop and hit.get(prop) and hit[prop] != key:
                out[key] = Match(
                    "conflict",
                    hit["id"],
                    f"the HubSpot contact {hit['id']} with email {email!r} carries {prop} {hit[prop]!r}, "
                    f"another key than {key!r}",
                )
            else:
                out[key] = Match("found", hit["id"], stamp={prop: key} if prop else {})

    async def _by_domain(self, items: list[tuple[str, ObjectRecord]], out: dict[str, Match]) -> None:
        prop = self.cfg.company_id_property
        domains: dict[str, str] = {}
        for key, record in items:
            domain = normalise_domain(record.domain)
            if domain:
                domains[key] = domain
            elif problem := domain_problem(record.domain):
                out[key] = Match("invalid", detail=problem)
            else:
                out[key] = Match(
                    "not_found", detail=f"no HubSpot company has {prop} {key!r}, and no domain to match by"
                )
        matches = await self.search_domains(sorted(set(domains.values())))
        records = dict(items)
        for key, domain in domains.items():
            record = records[key]
            hits = matches.get(domain, [])
            if not hits:
                out[key] = Match(
                    "not_found", detail=f"no HubSpot company has {prop} {key!r} or domain {domain!r}"
                )
            elif len(hits) > 1:
                ids = ", ".join(h["id"] for h in hits)
                out[key] = Match(
                    "ambiguous",
                    detail=f"HubSpot companies {ids} all have domain {domain!r}; nothing was written "
                    f"to any of them. Set {prop} = {key!r} on the right one (or merge them) and it is used",
                )
            elif hits[0].get(prop) and hits[0][prop] != key:
                out[key] = Match(
                    "conflict",
                    hits[0]["id"],
                    f"the HubSpot company {hits[0]['id']} on domain {domain!r} carries {prop} "
                    f"{hits[0][prop]!r}, another key than {key!r}",
                )
            else:
                out[key] = Match(
                    "found",
                    hits[0]["id"],
                    stamp={prop: key, **self._details(ObjectKind.ACCOUNT, record, hits[0])},
                )

    async def search_domains(self, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Normalised domain -> the companies on it (each a dict of id and properties)."""
        matches: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(domains), DOMAINS_PER_SEARCH):
            chunk = domains[start : start + DOMAINS_PER_SEARCH]
            values = chunk + [f"www.{d}" for d in chunk]
            after: str | None = None
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [
                        {"filters": [{"propertyName": "domain", "operator": "IN", "values": values}]}
                    ],
                    "properties": ["domain", "name", self.cfg.company_id_property],
                    "limit": 200,
                }
                if after:
                    body["after"] = after
                response = await self.transport.request("POST", "/crm/v3/objects/companies/search", json=body)
                page = response.json()
                for result in page.get("results", []):
                    props = result.get("properties") or {}
                    domain = normalise_domain(props.get("domain"))
                    if domain:
                        matches.setdefault(domain, []).append({"id": str(result["id"]), **props})
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return matches

    async def survivors(self, kind: ObjectKind, ids: list[str]) -> dict[str, str | None]:
        """For stored record ids that HubSpot no longer writes to: id -> the id of the record that survived
        its merge (a read of a merged-away id answers with the survivor, whose ``hs_merged_object_ids``
        lists it), or None when the record is gone (deleted)."""
        return {old: found[0] if found else None for old, found in (await self.read_ids(kind, ids)).items()}

    async def read_ids(
        self, kind: ObjectKind, ids: list[str], properties: Sequence[str] = ()
    ) -> dict[str, tuple[str, dict[str, Any]] | None]:
        """Stored id -> (the id of the record that answers for it, its ``properties``), or None when gone."""
        out: dict[str, tuple[str, dict[str, Any]] | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), READ_BATCH):
            chunk = ids[start : start + READ_BATCH]
            response = await self.transport.request(
                "POST",
                f"/crm/v3/objects/{OBJECT_TYPES[kind]}/batch/read",
                json={
                    "properties": ["hs_merged_object_ids", *properties],
                    "propertiesWithHistory": [],
                    "inputs": [{"id": i} for i in chunk],
                },
            )
            for result in response.json().get("results", []):
                rid = str(result["id"])
                props = result.get("properties") or {}
                merged = str(props.get("hs_merged_object_ids") or "").split(";")
                for old in chunk:
                    if old == rid or old in merged:
                        out[old] = (rid, props)
        return out
