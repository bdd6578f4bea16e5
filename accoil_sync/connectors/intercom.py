"""Intercom: user traits to contact attributes, account traits to company attributes, segments as tags.

Intercom has no batch write for attributes, so the connector writes contact by contact, with bounded
concurrency inside the engine's batch, under one rate limiter for the app (10,000 calls a minute, counted in
10-second windows, corrected by ``X-RateLimit-*`` -- ``X-RateLimit-Reset`` is a Unix timestamp). Tags go in
bulk (connectors/intercom_tags.py).

Calls go through python-intercom's ``AsyncIntercom`` on the shared httpx client: its own retries stay off,
the client's hooks apply our limiter and error classes, and ``Transport.call`` our retry policy. It is given
``Intercom-Version``, which the SDK does not send on its own. The two calls a steady-state run is made of --
update a contact, untag a contact -- go as plain requests on the same client (same hooks, same policy):
the SDK builds a typed model of every answer, which we never read, and that parsing was a quarter of the
client's CPU per request (cProfile, 3,000 updates). At Intercom's 166 requests a second the client is what
runs out first on a busy machine, so the spared CPU is throughput (BENCHMARKS.md).

Identity (docs/IDENTITY.md): a contact not yet in state is resolved under the ownership rule
(connectors/intercom_identity.py) and claimed before anything is written to it; a new contact is created
with its attributes in one call. Steady state costs one request per changed contact: the Intercom id is
kept in state. A stored id Intercom no longer knows (deleted, merged) is dropped and resolved again in the
same run.

Companies before users: the planner yields accounts first and the engine starts batches in that order, so
the connector registers every account of a batch as "in flight" before its first request; a user batch
that needs one of them awaits it. A user whose company is not in Intercom is not acknowledged (attributes
and tags are written, the attach is not a delivered fact): retryable when the company's delivery failed in
this run, otherwise rejected as ``not_found`` (healable) until the company exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from intercom import AsyncIntercom
from intercom.types import CreateContactRequestWithExternalId, CreateOrUpdateCompanyRequest

from accoil_sync.config.models import IntercomDestination, ProfileConfig
from accoil_sync.connectors.base import Capabilities, Change, Outcome, Resolution
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.intercom_identity import ContactFinder, Match
from accoil_sync.connectors.intercom_schema import IntercomSchema
from accoil_sync.connectors.intercom_tags import Retag, Tagger
from accoil_sync.errors import DestinationError, DestinationUnavailable, PermanentError, RetryableError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.encoders import Encoder, FieldValue, IntercomEncoder
from accoil_sync.traits.names import ObjectKind

BATCH = 50
PER_BATCH_CONCURRENCY = 8
TAGS, COMPANY = IntercomEncoder.TAGS_FIELD, IntercomEncoder.COMPANY_FIELD


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


def _failed(key: str, exc: DestinationError) -> Outcome:
    if isinstance(exc, RetryableError):
        return Outcome.retry(key, str(exc))
    return Outcome.reject(key, (exc.vendor_reason or str(exc))[:600])


def _attributes(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    return {k: v for k, v in fields.items() if k not in (TAGS, COMPANY)}


def _retag(change: Change, object_id: str) -> Retag | None:
    if TAGS not in change.fields:
        return None
    new = set(change.fields[TAGS] or [])
    old = set(change.previous.get(TAGS) or [])  # only tags we applied are ever removed
    return Retag(object_id, new - old, old - new) if new != old else None


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
        self.capabilities = Capabilities(max_batch=BATCH, max_concurrency=cfg.max_concurrency, resolves=True)
        self.encoder: Encoder = IntercomEncoder(
            cfg.tag_prefix, cfg.attach_users_to_companies, per_profile_tags=len(profiles) > 1
        )
        limiter = RateLimiter(cfg.requests_per_10s, 10.0)
        self.transport = Transport(
            "intercom",
            cfg.url,
            # for the plain requests; the SDK sends the same on its own calls
            headers={
                "Authorization": f"Bearer {token}",
                "Intercom-Version": cfg.api_version,
                "Accept": "application/json",
            },
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
        self.schema = IntercomSchema(
            self.transport, self.sdk, profiles, cache, ttl_seconds=cfg.schema_ttl_hours * 3600
        )
        self.finder = ContactFinder(self.transport, self.sdk, self.ownership)
        self.tagger = Tagger(self.transport, self.sdk)
        self._companies: dict[str, str] = {}  # our account id -> Intercom company id, this run
        self._in_flight: dict[str, asyncio.Future[str | None]] = {}  # account deliveries of this run
        self._schema_lock = asyncio.Lock()
        self._schema_rechecked = False

    async def ensure_schema(self) -> None:
        await self.schema.ensure()

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        if kind is ObjectKind.ACCOUNT:
            return await self._deliver_companies(batch)
        return await self._deliver_contacts(batch)

    async def _each(self, items: Sequence[Any], work: Any) -> list[Any]:
        slots = asyncio.Semaphore(PER_BATCH_CONCURRENCY)

        async def one(item: Any) -> Any:
            async with slots:
                return await work(item)

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def _drifted(self, exc: PermanentError) -> bool:
        """An attribute cached as existing was archived or deleted: list and create again, once a run.
        True when the caller should send its record again."""
        if "does not exist" not in (exc.vendor_reason or ""):
            return False
        async with self._schema_lock:
            if not self._schema_rechecked:
                self._schema_rechecked = True
                self.schema.forget()
                await self.schema.ensure()
        return True

    # ------------------------------------------------------------------------------------------- contacts

    async def _deliver_contacts(self, batch: Sequence[Change]) -> list[Outcome]:
        unknown = [c for c in batch if not c.dest_id and c.record is not None]
        try:
            matches = await self.finder.find(unknown, exact_when_missing=not self.cfg.create_missing_contacts)
        except DestinationUnavailable:
            raise
        except DestinationError:
            matches = {}  # each contact is looked up on its own below
        # Two new keys of a batch behind one mailbox: the first by key resolves (and claims) before the
        # others try, so which one owns the contact does not depend on request timing.
        first: list[Change] = []
        later: list[Change] = []
        seen: set[str] = set()
        for change in sorted(batch, key=lambda c: c.key):
            email = change.record.email.lower() if change.record and change.record.email else None
            (later if not change.dest_id and email and email in seen else first).append(change)
            if email and not change.dest_id:
                seen.add(email)
        written: dict[str, str | Outcome] = {}
        for wave in (first, later):
            results = await self._each(wave, lambda c: self._write_contact(c, matches.get(c.key)))
            written.update(zip([c.key for c in wave], results, strict=True))
        retags = {
            c.key: r
            for c in batch
            if isinstance(cid := written[c.key], str) and (r := _retag(c, cid)) is not None
        }
        tag_errors = await self.tagger.contacts(retags) if retags else {}
        outcomes = await self._each(batch, lambda c: self._finish_contact(c, written[c.key], tag_errors))
        return outcomes

    async def _finish_contact(
        self, change: Change, written: str | Outcome, tag_errors: dict[str, DestinationError]
    ) -> Outcome:
        if isinstance(written, Outcome):
            return written
        if change.key in tag_errors:
            exc = tag_errors[change.key]
            stale = isinstance(exc, PermanentError) and exc.status in (404, 410)
            if not (stale and change.dest_id and change.record is not None):
                return _failed(change.key, exc)
            # Only tags changed, so the stale id showed up here: resolve, write everything, tag it alone.
            self._forget(change)
            again = await self._write_contact(change, None)
            if isinstance(again, Outcome):
                return again
            written = again
            retag = _retag(change, written)
            errors = await self.tagger.contacts({change.key: retag}) if retag else {}
            if errors:
                return _failed(change.key, errors[change.key])
        try:
            problem = await self._attach(change, written)
        except DestinationUnavailable:
            raise
        except DestinationError as exc:
            return _failed(change.key, exc)
        return problem or Outcome.ok(change.key, written)

    def _forget(self, change: Change) -> None:
        """The stored id is gone (deleted, or merged into another contact): drop it, and plan the whole
        record for the contact it resolves to now."""
        assert change.dest_id is not None and change.record is not None
        self.ownership.release(ObjectKind.USER, change.key, change.dest_id)
        change.dest_id = None
        change.fields = self.encoder.encode(change.record)
        change.previous = {}

    async def _write_contact(self, change: Change, match: Match | None) -> str | Outcome:
        """The contact's Intercom id once its attributes are written, or its outcome when they are not."""
        return await self._healing(change.key, lambda: self._write_attributes(change, match))

    async def _healing(self, key: str, write: Callable[[], Awaitable[str | Outcome]]) -> str | Outcome:
        """``write``, once more after a schema re-check when it failed for an attribute deleted since the
        schema was cached; a refusal that remains is this record's outcome."""
        try:
            for attempt in range(2):
                try:
                    return await write()
                except PermanentError as exc:
                    if attempt or not await self._drifted(exc):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except DestinationUnavailable:
            raise
        except DestinationError as exc:
            return _failed(key, exc)

    async def _write_attributes(self, change: Change, match: Match | None) -> str | Outcome:
        attributes = _attributes(change.fields)
        if change.dest_id:
            if not attributes:
                return change.dest_id
            try:
                await self._update(change.dest_id, attributes)
                return change.dest_id
            except PermanentError as exc:
                if exc.status not in (404, 410) or change.record is None:
                    raise
            self._forget(change)
            match = (await self.finder.find([change], exact_when_missing=True))[change.key]
            attributes = _attributes(change.fields)
        if change.record is None:
            return await self._place_lost(change, attributes)
        if match is None:
            match = (await self.finder.find([change], exact_when_missing=True))[change.key]
        match = self.finder.claim(change.key, match)
        if match.verdict == "missing":
            if not self.cfg.create_missing_contacts:
                return Outcome.reject(
                    change.key,
                    "no Intercom contact with this external_id or email; not created because "
                    "destinations.intercom.create_missing_contacts is off",
                    "not_found",
                )
            created = await self._create(change, attributes)
            if isinstance(created, str):
                return created
            match = self.finder.claim(change.key, created)
        if match.verdict == "ambiguous":
            return Outcome.reject(
                change.key,
                f"Intercom contacts {', '.join(match.candidates)} have this user's email and no "
                "external_id; nothing was written (merge them in Intercom, or set external_id on one)",
                "ambiguous",
            )
        if match.verdict == "conflict":
            assert match.contact_id is not None and match.owner is not None
            return Outcome.conflict(change.key, match.owner, match.contact_id, "Intercom")
        assert match.contact_id is not None
        if match.verdict == "adopt" or attributes:
            await self._update(
                match.contact_id, attributes, adopt=change.key if match.verdict == "adopt" else None
            )
        return match.contact_id

    async def _place_lost(self, change: Change, attributes: dict[str, FieldValue]) -> str | Outcome:
        """A clear for a key that left the source after a write of its was lost unacknowledged (no contact id
        stored, sync/pending.py): every contact we write carries our key as external_id, so the one that
        write reached is found by it -- ``find_by_external_id``, which sees a contact created a moment ago.
        None found: the write never landed, nothing to clear."""
        found = await self.finder.exact(change.key)
        if found is None:
            return Outcome.ok(change.key)
        match = self.finder.claim(change.key, Match("update", found))
        if match.verdict == "conflict":
            assert match.owner is not None
            return Outcome.conflict(change.key, match.owner, found, "Intercom")
        if attributes:
            await self._update(found, attributes)
        return found

    async def _update(
        self, contact_id: str, attributes: dict[str, FieldValue], adopt: str | None = None
    ) -> None:
        body: dict[str, Any] = {"external_id": adopt} if adopt else {}
        if attributes:
            body["custom_attributes"] = attributes
        await self.transport.request("PUT", f"/contacts/{quote(contact_id, safe='')}", json=body)

    async def _create(self, change: Change, attributes: dict[str, FieldValue]) -> str | Match:
        """Create the contact with its attributes in one call; a 409 names the contact that exists."""
        assert change.record is not None
        body: dict[str, Any] = {}
        if change.record.email:
            body["email"] = change.record.email  # never null: that would be an instruction to clear
        values = {k: v for k, v in attributes.items() if v is not None}
        if values:
            body["custom_attributes"] = values
        request = CreateContactRequestWithExternalId(external_id=change.key, role="user", **body)
        try:
            created = await self.transport.call(lambda: self.sdk.contacts.create(request=request))
        except PermanentError as exc:
            if exc.status != 409:
                raise
            match = await self.finder.adopt_existing(change.key, exc.vendor_reason or "")
            if match.verdict == "missing":
                raise
            return match
        contact_id = str(created.id)
        self.finder.claim(change.key, Match("update", contact_id))
        return contact_id

    # ----------------------------------------------------------------------------------- company attach

    async def _attach(self, change: Change, contact_id: str) -> Outcome | None:
        """Attach to the account's company, detach from the one left. None when done."""
        if COMPANY not in change.fields:
            return None
        new, old = change.fields.get(COMPANY), change.previous.get(COMPANY)
        if new:
            pending = str(new) in self._in_flight
            company_id = await self._company_id(str(new))
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
        if (old_id := await self._company_id(old)) is not None and old_id != keep:
            ours.add(old_id)
        companies = self.sdk.companies
        for company_id in sorted(ours):
            try:
                await self.transport.call(partial(companies.detach_contact, contact_id, company_id))
            except PermanentError as exc:
                if exc.status != 404:  # no longer attached (or gone): what a move wants
                    raise

    async def _company_id(self, account_id: str) -> str | None:
        """Intercom's id for our account id (the attach takes Intercom's): this run's delivery, else a read."""
        if account_id in self._companies:
            return self._companies[account_id]
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
        self._companies[account_id] = str(company.id)
        return self._companies[account_id]

    # ------------------------------------------------------------------------------------------ companies

    async def _deliver_companies(self, batch: Sequence[Change]) -> list[Outcome]:
        # Registered before the first await: a user batch the engine starts after this one finds them.
        loop = asyncio.get_running_loop()
        for change in batch:
            if change.record is not None:
                self._in_flight[change.key] = loop.create_future()
        try:
            written = await self._each(batch, self._write_company)
            retags = {
                c.key: r
                for c, cid in zip(batch, written, strict=True)
                if isinstance(cid, str) and (r := _retag(c, cid)) is not None
            }
            tag_errors = await self.tagger.companies(retags) if retags else {}
        finally:
            for change in batch:
                future = self._in_flight.get(change.key)
                if future is not None and not future.done():
                    future.set_result(self._companies.get(change.key))
        outcomes = []
        for change, cid in zip(batch, written, strict=True):
            if isinstance(cid, Outcome):
                outcomes.append(cid)
            elif change.key in tag_errors:
                outcomes.append(_failed(change.key, tag_errors[change.key]))
            else:
                outcomes.append(Outcome.ok(change.key, cid))
        return outcomes

    async def _write_company(self, change: Change) -> str | Outcome:
        return await self._healing(change.key, lambda: self._upsert_company(change))

    async def _upsert_company(self, change: Change) -> str | Outcome:
        """Attributes by company_id; name and website only where Intercom has none (or ``always``)."""
        record = change.record
        if record is None and await self._company_id(change.key) is None:
            # A clear never creates (the upsert would, nameless): deleted in Intercom, or a lost first write
            # that never landed (sync/pending.py) -- nothing to clear.
            return Outcome.ok(change.key)
        always = self.cfg.company_details == "always"
        details = self._details(change) if always else {}
        request = CreateOrUpdateCompanyRequest(
            company_id=change.key, custom_attributes=_attributes(change.fields), **details
        )
        company = await self.transport.call(lambda: self.sdk.companies.create_or_update(request=request))
        company_id = str(company.id)
        owner = self.ownership.claim(ObjectKind.ACCOUNT, change.key, company_id)
        if owner is not None:
            return Outcome.conflict(change.key, owner, company_id, "Intercom")
        self._companies[change.key] = company_id
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

    # ------------------------------------------------------------------------------------------- resolve

    async def resolve(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Resolution]:
        """What delivery would do for each key, by read-only lookups (``plan --resolve``)."""
        if kind is ObjectKind.ACCOUNT:
            return await self._each(batch, self._resolve_company)
        matches = await self.finder.find(
            [c for c in batch if not c.dest_id and c.record], exact_when_missing=True
        )
        out = []
        owners = self.ownership.owners(
            ObjectKind.USER, [m.contact_id for m in matches.values() if m.contact_id]
        )
        for change in batch:
            if change.dest_id:
                out.append(Resolution(change.key, "update", change.dest_id, "stored id"))
                continue
            if change.record is None:  # a lost write's key, gone from the source: found by key or nothing
                found = await self.finder.exact(change.key)
                out.append(
                    Resolution(change.key, "update", found, "a lost write reached it: to be cleared")
                    if found
                    else Resolution(change.key, "not_found", None, "nothing of this key's: nothing to clear")
                )
                continue
            match = matches.get(change.key, Match("missing"))
            owner = owners.get(match.contact_id or "")
            if match.verdict in ("update", "adopt") and owner not in (None, change.key):
                out.append(Resolution(change.key, "conflict", match.contact_id, f"owned by key {owner!r}"))
            elif match.verdict in ("update", "adopt"):
                detail = "found by email; external_id will be set" if match.verdict == "adopt" else None
                out.append(Resolution(change.key, "update", match.contact_id, detail))
            elif match.verdict == "conflict":
                out.append(
                    Resolution(change.key, "conflict", match.contact_id, f"owned by key {match.owner!r}")
                )
            elif match.verdict == "ambiguous":
                out.append(
                    Resolution(change.key, "ambiguous", None, "candidates " + ", ".join(match.candidates))
                )
            elif self.cfg.create_missing_contacts:
                out.append(Resolution(change.key, "create"))
            else:
                out.append(Resolution(change.key, "not_found", None, "create_missing_contacts is off"))
        return out

    async def _resolve_company(self, change: Change) -> Resolution:
        company_id = await self._company_id(change.key)
        if company_id is None:
            if change.record is None:
                return Resolution(change.key, "not_found", None, "no such company: nothing to clear")
            return Resolution(change.key, "create")
        owner = self.ownership.owners(ObjectKind.ACCOUNT, [company_id]).get(company_id)
        if owner not in (None, change.key):
            return Resolution(change.key, "conflict", company_id, f"owned by key {owner!r}")
        return Resolution(change.key, "update", company_id)

    async def aclose(self) -> None:
        self.ownership.close()
        await self.transport.aclose()
