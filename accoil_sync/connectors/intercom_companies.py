"""Intercom companies for our accounts, and contacts' attachments to them.

Companies are upserted by ``company_id`` (our account id) with their attributes; a name and website go only
where Intercom has none, unless ``company_details = "always"``. Intercom's own id is what an attach takes:
this run's delivery of the company gives it, else a read by ``company_id``. Each account of a batch is
registered "in flight" before the first request, so a user batch that needs it awaits it (see
connectors/intercom.py). A clear never creates a company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from intercom import AsyncIntercom
from intercom.types import CreateOrUpdateCompanyRequest

from accoil_sync.config.models import IntercomDestination
from accoil_sync.connectors.base import Change, Outcome, Resolution
from accoil_sync.connectors.http import Transport
from accoil_sync.connectors.intercom_fields import COMPANY, custom_attributes, outcome_of, tag_changes
from accoil_sync.connectors.intercom_tags import Tagger
from accoil_sync.errors import PermanentError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.names import ObjectKind

Write = Callable[[], Awaitable["str | Outcome"]]


class Companies:
    def __init__(
        self,
        cfg: IntercomDestination,
        transport: Transport,
        sdk: AsyncIntercom,
        ownership: Ownership,
        tagger: Tagger,
        *,
        healing: Callable[[str, Write], Awaitable[str | Outcome]],
        each: Callable[[Sequence[Any], Any], Awaitable[list[Any]]],
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.sdk = sdk
        self.ownership = ownership
        self.tagger = tagger
        self._healing = healing  # the connector's: a write once more after a schema re-check
        self._each = each  # the connector's bounded concurrency inside a batch
        self._ids: dict[str, str] = {}  # our account id -> Intercom company id, this run
        self._in_flight: dict[str, asyncio.Future[str | None]] = {}  # account deliveries of this run

    async def attach(self, change: Change, contact_id: str) -> Outcome | None:
        """Attach to the account's company, detach from the one left. None when done."""
        if COMPANY not in change.fields:
            return None
        new, old = change.fields.get(COMPANY), change.previous.get(COMPANY)
        if new:
            pending = str(new) in self._in_flight
            company_id = await self.company_id(str(new))
            if company_id is None:
                reason = (
                    f"company {new} is not in Intercom yet: attributes and tags were written, the attach "
                    "waits for the company"
                )
                return (
                    Outcome.retry(change.key, reason)
                    if pending
                    else Outcome.reject(change.key, reason, "not_found")
                )
            sdk = self.sdk.companies
            await self.transport.call(lambda: sdk.attach_contact(contact_id, company_id=company_id))
        if old and old != new:
            await self._detach_others(contact_id, company_id if new else None, str(old))
        return None

    async def _detach_others(self, contact_id: str, keep: str | None, old: str) -> None:
        """A move: detach the contact from every company of ours but ``keep``. The last acknowledged
        company is not enough: a run killed between its attach and its commit left an attach that state
        never heard of. Companies no key of ours owns (made by hand) are left alone."""
        response = await self.transport.request(
            "GET", f"/contacts/{quote(contact_id, safe='')}/companies", params={"per_page": 50}
        )
        attached = {str(c["id"]) for c in response.json().get("data") or []} - {keep}
        ours = set(self.ownership.owners(ObjectKind.ACCOUNT, sorted(attached)))
        # The company left per state is detached whatever the ownership table says, as before.
        if (old_id := await self.company_id(old)) is not None and old_id != keep:
            ours.add(old_id)
        companies = self.sdk.companies
        for company_id in sorted(ours):
            try:
                await self.transport.call(partial(companies.detach_contact, contact_id, company_id))
            except PermanentError as exc:
                if exc.status != 404:  # no longer attached (or gone): what a move wants
                    raise

    async def company_id(self, account_id: str) -> str | None:
        """Intercom's id for our account id (the attach takes Intercom's): this run's delivery, else a read."""
        if account_id in self._ids:
            return self._ids[account_id]
        if account_id in self._in_flight:
            found = await self._in_flight[account_id]
            if found is not None:
                return found
        try:
            company = await self.transport.call(lambda: self.sdk.companies.retrieve(company_id=account_id))
        except PermanentError as exc:
            if exc.status != 404:
                raise
            return None
        self._ids[account_id] = str(company.id)
        return self._ids[account_id]

    async def deliver(self, batch: Sequence[Change]) -> list[Outcome]:
        # Registered before the first await: a user batch the engine starts after this one finds them.
        loop = asyncio.get_running_loop()
        for change in batch:
            if change.record is not None:
                self._in_flight[change.key] = loop.create_future()
        try:
            written = await self._each(batch, self._write)
            retags = {
                c.key: r
                for c, cid in zip(batch, written, strict=True)
                if isinstance(cid, str) and (r := tag_changes(c, cid)) is not None
            }
            tag_errors = await self.tagger.companies(retags) if retags else {}
        finally:
            for change in batch:
                future = self._in_flight.get(change.key)
                if future is not None and not future.done():
                    future.set_result(self._ids.get(change.key))
        outcomes = []
        for change, cid in zip(batch, written, strict=True):
            if isinstance(cid, Outcome):
                outcomes.append(cid)
            elif change.key in tag_errors:
                outcomes.append(outcome_of(change.key, tag_errors[change.key]))
            else:
                outcomes.append(Outcome.ok(change.key, cid))
        return outcomes

    async def _write(self, change: Change) -> str | Outcome:
        return await self._healing(change.key, lambda: self._upsert(change))

    async def _upsert(self, change: Change) -> str | Outcome:
        """Attributes by company_id; name and website only where Intercom has none (or ``always``)."""
        record = change.record
        if record is None and not change.dest_id and await self.company_id(change.key) is None:
            # A clear for a lost first write (sync/pending.py) that never landed: nothing to clear, and the
            # upsert must not create the company (nameless) just to empty it.
            return Outcome.ok(change.key)
        always = self.cfg.company_details == "always"
        details = self._details(change) if always else {}
        request = CreateOrUpdateCompanyRequest(
            company_id=change.key, custom_attributes=custom_attributes(change.fields), **details
        )
        company = await self.transport.call(lambda: self.sdk.companies.create_or_update(request=request))
        company_id = str(company.id)
        owner = self.ownership.claim(ObjectKind.ACCOUNT, change.key, company_id)
        if owner is not None:
            return Outcome.conflict(change.key, owner, company_id, "Intercom")
        self._ids[change.key] = company_id
        if record is not None and not always:
            # Fill what the company lacks (a company we just created has neither); never overwrite.
            missing = {k: v for k, v in self._details(change).items() if not getattr(company, k, None)}
            if missing:
                fill = CreateOrUpdateCompanyRequest(company_id=change.key, **missing)
                await self.transport.call(lambda: self.sdk.companies.create_or_update(request=fill))
        return company_id

    @staticmethod
    def _details(change: Change) -> dict[str, str]:
        record = change.record
        if record is None:
            return {}
        details = {"name": record.name, "website": record.domain}
        return {k: v[:255] for k, v in details.items() if v}  # never null: Intercom reads it as "clear"

    async def resolve(self, change: Change) -> Resolution:
        company_id = await self.company_id(change.key)
        if company_id is None:
            if change.record is None:
                return Resolution(change.key, "not_found", None, "no such company: nothing to clear")
            return Resolution(change.key, "create")
        owner = self.ownership.owners(ObjectKind.ACCOUNT, [company_id]).get(company_id)
        if owner not in (None, change.key):
            return Resolution(change.key, "conflict", company_id, f"owned by key {owner!r}")
        return Resolution(change.key, "update", company_id)
