"""Intercom: user traits to contact attributes, account traits to company attributes, segments as tags.

Intercom has no batch write, so the connector writes record by record, with bounded concurrency inside
the engine's batch, under one rate limiter for the app (10,000 calls a minute, counted in 10-second
windows, corrected by ``X-RateLimit-*`` -- ``X-RateLimit-Reset`` is a Unix timestamp).

Calls go through python-intercom's ``AsyncIntercom`` on the shared httpx client: its own retries stay off,
the client's hooks apply our limiter and error classes, and ``Transport.call`` our retry policy. It is given
``Intercom-Version``, which the SDK does not send on its own.

Steady state costs one request per changed contact: the Intercom id is kept in state. A contact not yet
known is found by a batched search on external_id (one request for up to 50), then by
``find_by_external_id`` (Intercom's search lags its writes), then by email; it is created only with
``create_missing_contacts``, and a 409 on create means "exists": its id is taken from the message. Tags
are diffed: added when a segment is joined, removed when it is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from intercom import AsyncIntercom
from intercom.types import (
    CreateContactRequestWithExternalId,
    CreateOrUpdateCompanyRequest,
    CreateOrUpdateTagRequest,
    SingleFilterSearchRequest,
    StartingAfterPaging,
    TagCompanyRequest,
    TagCompanyRequestCompaniesItem,
    UntagCompanyRequest,
    UntagCompanyRequestCompaniesItem,
)

from accoil_sync.config.models import IntercomDestination, ProfileConfig
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.intercom_schema import IntercomSchema
from accoil_sync.errors import PermanentError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.encoders import Encoder, IntercomEncoder
from accoil_sync.traits.names import ObjectKind

BATCH = 50
PER_BATCH_CONCURRENCY = 8
_EXISTING_ID = re.compile(r"id=(\w+)")


def _observer(limiter: RateLimiter) -> Any:
    def observe(response: httpx.Response) -> float | None:
        h = response.headers
        reset = h.get("x-ratelimit-reset")
        reset_in = max(0.0, float(reset) - time.time()) if reset else None
        remaining, limit = h.get("x-ratelimit-remaining"), h.get("x-ratelimit-limit")
        if remaining is not None:
            limiter.observe(int(remaining), reset_in, int(limit) if limit else None)
        return reset_in if response.status_code == 429 else None

    return observe


class IntercomConnector:
    name = "intercom"

    def __init__(
        self,
        cfg: IntercomDestination,
        profiles: Sequence[ProfileConfig],
        cache_dir: Path,
        *,
        policy: RetryPolicy | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        assert cfg.access_token is not None
        token = cfg.access_token.get_secret_value()
        self.cfg = cfg
        self.ownership = ownership or Ownership("intercom")  # who owns which record (docs/IDENTITY.md)
        self.capabilities = Capabilities(max_batch=BATCH, max_concurrency=cfg.max_concurrency)
        self.encoder: Encoder = IntercomEncoder(cfg.tag_prefix, cfg.attach_users_to_companies)
        limiter = RateLimiter(cfg.requests_per_10s, 10.0)
        self.transport = Transport(
            "intercom",
            cfg.url,
            timeout=cfg.timeout_seconds,
            limiter=limiter,
            policy=policy or RetryPolicy(max_attempts=cfg.max_attempts),
            max_connections=cfg.max_concurrency * PER_BATCH_CONCURRENCY,
            observe=_observer(limiter),
        )
        self.sdk = AsyncIntercom(
            token=token,
            base_url=cfg.url,
            headers={"Intercom-Version": cfg.api_version},
            httpx_client=self.transport.client,
            timeout=cfg.timeout_seconds,
        )
        workspace = hashlib.sha256(f"{cfg.url}|{token}".encode()).hexdigest()[:12]
        cache = cache_dir / f"intercom-attributes-{workspace}.json"
        self.schema = IntercomSchema(self.transport, self.sdk, profiles, cache)
        self._tags: dict[str, str] = {}
        self._tag_lock = asyncio.Lock()
        self._companies: dict[str, str] = {}  # our account id -> Intercom company id

    async def ensure_schema(self) -> None:
        await self.schema.ensure()

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        ids: dict[str, str] = {}
        if kind is ObjectKind.USER:
            ids = await self._find_contacts([c for c in batch if not c.dest_id and c.record is not None])
        slots = asyncio.Semaphore(PER_BATCH_CONCURRENCY)

        async def one(change: Change) -> Outcome:
            async with slots:
                try:
                    if kind is ObjectKind.USER:
                        return await self._contact(change, change.dest_id or ids.get(change.key))
                    return await self._company(change)
                except PermanentError as exc:
                    if "does not exist" in (exc.vendor_reason or ""):
                        self.schema.forget()  # someone archived an attribute: list again next run
                    return Outcome.reject(change.key, (exc.vendor_reason or str(exc))[:600])

        return list(await asyncio.gather(*(one(c) for c in batch)))

    # ------------------------------------------------------------------------------------------- contacts

    async def _find_contacts(self, changes: list[Change]) -> dict[str, str]:
        """Intercom ids for contacts not yet in state: one search for the whole batch."""
        if not changes:
            return {}
        query = SingleFilterSearchRequest(field="external_id", operator="IN", value=[c.key for c in changes])
        pager = await self.transport.call(
            lambda: self.sdk.contacts.search(query=query, pagination=StartingAfterPaging(per_page=150))
        )
        return {str(c.external_id): str(c.id) for c in pager.items or [] if c.external_id}

    async def _lookup(self, change: Change) -> str | None:
        """Not found by search (it may be too new to be indexed): by external_id, then by email."""
        try:
            found = await self.transport.call(
                lambda: self.sdk.contacts.show_contact_by_external_id(change.key)
            )
            return str(found.id)
        except PermanentError as exc:
            if exc.status not in (404, 410):
                raise
        email = change.record.email if change.record else None
        if email:
            query = SingleFilterSearchRequest(field="email", operator="=", value=email)
            pager = await self.transport.call(lambda: self.sdk.contacts.search(query=query))
            hits = list(pager.items or [])
            if len(hits) == 1:
                return str(hits[0].id)
        return None

    async def _create_contact(self, change: Change) -> str:
        assert change.record is not None
        request = CreateContactRequestWithExternalId(
            external_id=change.key, role="user", email=change.record.email or None
        )
        try:
            created = await self.transport.call(lambda: self.sdk.contacts.create(request=request))
            return str(created.id)
        except PermanentError as exc:
            match = _EXISTING_ID.search(exc.vendor_reason or "") if exc.status == 409 else None
            if match:
                return match.group(1)  # "already exists with id=...": it is the one we want
            raise

    async def _contact(self, change: Change, contact_id: str | None) -> Outcome:
        if contact_id is None:
            if change.record is None:
                return Outcome.reject(change.key, "cannot clear: the Intercom contact id is not known")
            contact_id = await self._lookup(change)
            if contact_id is None:
                if not self.cfg.create_missing_contacts:
                    return Outcome.reject(
                        change.key,
                        "no Intercom contact with this external_id or email; not created because "
                        "destinations.intercom.create_missing_contacts is off",
                    )
                contact_id = await self._create_contact(change)
        cid = contact_id
        attributes = {
            k: v
            for k, v in change.fields.items()
            if k not in (IntercomEncoder.TAGS_FIELD, IntercomEncoder.COMPANY_FIELD)
        }
        if attributes:
            await self.transport.call(lambda: self.sdk.contacts.update(cid, custom_attributes=attributes))
        await self._retag(change, cid, contact=True)
        company = change.fields.get(IntercomEncoder.COMPANY_FIELD)
        if company:
            company_id = await self._company_id(str(company))
            if company_id:
                await self.transport.call(
                    lambda: self.sdk.companies.attach_contact(cid, company_id=company_id)
                )
        return Outcome.ok(change.key, cid)

    # ------------------------------------------------------------------------------------------ companies

    async def _company(self, change: Change) -> Outcome:
        attributes = {k: v for k, v in change.fields.items() if k != IntercomEncoder.TAGS_FIELD}
        record = change.record
        request = CreateOrUpdateCompanyRequest(
            company_id=change.key,
            custom_attributes=attributes,
            name=record.name if record else None,
            website=record.domain if record else None,
        )
        company = await self.transport.call(lambda: self.sdk.companies.create_or_update(request=request))
        company_id = str(company.id)
        self._companies[change.key] = company_id
        await self._retag(change, company_id, contact=False)
        return Outcome.ok(change.key, company_id)

    async def _company_id(self, account_id: str) -> str | None:
        """Intercom's id for our account id: the attach call takes Intercom's, not ours."""
        if account_id not in self._companies:
            try:
                company = await self.transport.call(
                    lambda: self.sdk.companies.retrieve(company_id=account_id)
                )
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                return None
            self._companies[account_id] = str(company.id)
        return self._companies[account_id]

    # ----------------------------------------------------------------------------------------------- tags

    async def _tag_id(self, name: str) -> str:
        async with self._tag_lock:
            if name not in self._tags:
                request = CreateOrUpdateTagRequest(name=name)
                tag = await self.transport.call(lambda: self.sdk.tags.create(request=request))
                self._tags[name] = str(tag.id)
            return self._tags[name]

    async def _retag(self, change: Change, object_id: str, *, contact: bool) -> None:
        if IntercomEncoder.TAGS_FIELD not in change.fields:
            return
        new = set(change.fields[IntercomEncoder.TAGS_FIELD] or [])
        old = set(change.previous.get(IntercomEncoder.TAGS_FIELD) or [])
        tags = self.sdk.tags
        for name in sorted(new - old):
            tag_id = await self._tag_id(name)
            if contact:
                await self.transport.call(partial(tags.tag_contact, object_id, tag_id=tag_id))
            else:
                tag = TagCompanyRequest(name=name, companies=[TagCompanyRequestCompaniesItem(id=object_id)])
                await self.transport.call(partial(tags.create, request=tag))
        for name in sorted(old - new):
            tag_id = await self._tag_id(name)
            if contact:
                await self.transport.call(partial(tags.untag_contact, object_id, tag_id))
            else:
                untag = UntagCompanyRequest(
                    name=name, companies=[UntagCompanyRequestCompaniesItem(id=object_id, untag=True)]
                )
                await self.transport.call(partial(tags.create, request=untag))

    async def aclose(self) -> None:
        self.ownership.close()
        await self.transport.aclose()
