"""Which Intercom contact is a user's: read-only lookups under the ownership rule (docs/IDENTITY.md).

A contact is the user's when its ``external_id`` is the user's key. A contact found by email is the user's
only when it has no ``external_id`` (someone imported it by hand; the connector then sets ours) or the same
one; a contact with another ``external_id`` belongs to someone else (a conflict, reported with both keys),
and two contacts that could be the user's are an ambiguity (reported, never guessed). The same rule applies
to the id a 409 "already exists with id=" names.

Lookups for a batch cost two searches (``external_id IN`` and ``email IN``, up to 50 keys each). Search lags
Intercom's writes by a few minutes, so a contact created moments ago is not in them: with creating on, the
create's 409 names it (one extra read); with creating off, ``find_by_external_id`` (not indexed, exact) is
asked before a key is called not found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from intercom.types import SingleFilterSearchRequest, StartingAfterPaging

from accoil_sync.connectors.base import Change
from accoil_sync.connectors.http import Transport
from accoil_sync.errors import DestinationError, PermanentError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.names import ObjectKind

EXISTING_ID = re.compile(r"id=(\w+)")
PER_PAGE = 150  # search's largest page: a batch of 50 keys rarely has more hits than that

MatchVerdict = Literal["update", "adopt", "missing", "ambiguous", "conflict"]


@dataclass(slots=True)
class Match:
    """What the lookups say about one key: ``update`` (the contact carries our key), ``adopt`` (found by
    email, no external_id: ours once we set it), ``missing``, ``ambiguous`` (``candidates``) or ``conflict``
    (the contact is ``owner``'s)."""

    verdict: MatchVerdict
    contact_id: str | None = None
    owner: str | None = None
    candidates: list[str] = field(default_factory=list)


def judge(key: str, hits: Sequence[Any]) -> Match:
    """The ownership rule over the contacts an email matched (users only: a lead is not a user's record)."""
    users = [h for h in hits if str(getattr(h, "role", "user") or "user") == "user"]
    mine = [h for h in users if getattr(h, "external_id", None) == key]
    if mine:
        return Match("update", str(mine[0].id))
    free = [h for h in users if not getattr(h, "external_id", None)]
    if len(free) == 1:
        return Match("adopt", str(free[0].id))
    if len(free) > 1:
        return Match("ambiguous", candidates=sorted(str(h.id) for h in free))
    if users:
        other = users[0]
        return Match("conflict", str(other.id), owner=str(other.external_id))
    return Match("missing")


class ContactFinder:
    def __init__(self, transport: Transport, sdk: Any, ownership: Ownership) -> None:
        self.transport = transport
        self.sdk = sdk
        self.ownership = ownership

    async def _search(self, query: Any) -> list[Any]:
        paging = StartingAfterPaging(per_page=PER_PAGE)
        pager = await self.transport.call(lambda: self.sdk.contacts.search(query=query, pagination=paging))
        return list(pager.items or [])

    async def by_external_id(self, keys: Sequence[str]) -> dict[str, str] | None:
        """One search for the batch; None when it failed (the caller then asks per key)."""
        if not keys:
            return {}
        query = SingleFilterSearchRequest(field="external_id", operator="IN", value=list(keys))
        try:
            hits = await self._search(query)
        except DestinationError:
            return None
        return {str(c.external_id): str(c.id) for c in hits if c.external_id}

    async def by_email(self, emails: Sequence[str]) -> dict[str, list[Any]] | None:
        """Lower-cased email -> the contacts with it (Intercom's email search ignores case)."""
        wanted = sorted({e.lower() for e in emails})
        if not wanted:
            return {}
        query = SingleFilterSearchRequest(field="email", operator="IN", value=wanted)
        try:
            hits = await self._search(query)
        except DestinationError:
            return None
        out: dict[str, list[Any]] = {}
        for hit in hits:
            if hit.email:
                out.setdefault(str(hit.email).lower(), []).append(hit)
        return out

    async def exact(self, key: str) -> str | None:
        """``find_by_external_id``: not indexed, so it sees contacts created a moment ago."""
        try:
            found = await self.transport.call(lambda: self.sdk.contacts.show_contact_by_external_id(key))
        except PermanentError as exc:
            if exc.status in (404, 410):  # 410: merged into another contact; search finds the survivor
                return None
            raise
        return str(found.id)

    async def contact(self, contact_id: str) -> Any | None:
        try:
            return await self.transport.call(lambda: self.sdk.contacts.find(contact_id))
        except PermanentError as exc:
            if exc.status in (404, 410):
                return None
            raise

    async def find(self, changes: Sequence[Change], *, exact_when_missing: bool) -> dict[str, Match]:
        """A match for every change (read-only). ``exact_when_missing``: ask ``find_by_external_id`` for
        keys the searches did not find (needed when nothing will be created: search lags)."""
        keys = [c.key for c in changes]
        by_key = await self.by_external_id(keys)
        out: dict[str, Match] = {}
        rest: list[Change] = []
        for change in changes:
            if by_key is not None and change.key in by_key:
                out[change.key] = Match("update", by_key[change.key])
            else:
                rest.append(change)
        emails = [c.record.email for c in rest if c.record is not None and c.record.email]
        by_email = await self.by_email(emails) if emails else {}
        for change in rest:
            email = change.record.email if change.record is not None else None
            match = judge(change.key, (by_email or {}).get(email.lower(), [])) if email else Match("missing")
            if match.verdict == "missing" and (exact_when_missing or by_key is None or by_email is None):
                found = await self.exact(change.key)
                if found is not None:
                    match = Match("update", found)
            out[change.key] = match
        return out

    async def adopt_existing(self, key: str, message: str) -> Match:
        """A create answered 409 "already exists with id=...": that contact, under the same rule."""
        named = EXISTING_ID.search(message)
        if named is None:
            return Match("missing")
        contact = await self.contact(named.group(1))
        if contact is None:  # archived or gone since: nothing we may write to
            return Match("missing")
        return judge(key, [contact])

    def claim(self, key: str, match: Match) -> Match:
        """Claim the matched contact for ``key``; a refused claim turns the match into a conflict."""
        if match.verdict not in ("update", "adopt") or match.contact_id is None:
            return match
        owner = self.ownership.claim(ObjectKind.USER, key, match.contact_id)
        if owner is not None:
            return Match("conflict", match.contact_id, owner=owner)
        return match
