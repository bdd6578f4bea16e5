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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from intercom import AsyncIntercom
from intercom.types import CreateContactRequestWithExternalId

from accoil_sync.config.models import IntercomDestination, ProfileConfig
from accoil_sync.connectors.base import Capabilities, Change, Outcome, Resolution
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.intercom_companies import Companies
from accoil_sync.connectors.intercom_fields import custom_attributes, outcome_of, tag_changes
from accoil_sync.connectors.intercom_identity import ContactFinder, Match
from accoil_sync.connectors.intercom_schema import IntercomSchema
from accoil_sync.connectors.intercom_tags import Tagger
from accoil_sync.errors import DestinationError, DestinationUnavailable, PermanentError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.encoders import Encoder, FieldValue, IntercomEncoder
from accoil_sync.traits.names import ObjectKind

BATCH = 50
PER_BATCH_CONCURRENCY = 8


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
        self.companies = Companies(
            cfg, self.transport, self.sdk, self.ownership, self.tagger, healing=self._healing, each=self._each
        )
        self._schema_lock = asyncio.Lock()
        self._schema_rechecked = False

    async def ensure_schema(self) -> None:
        await self.schema.ensure()

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        if kind is ObjectKind.ACCOUNT:
            return await self.companies.deliver(batch)
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
            if isinstance(cid := written[c.key], str) and (r := tag_changes(c, cid)) is not None
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
                return outcome_of(change.key, exc)
            # Only tags changed, so the stale id showed up here: resolve, write everything, tag it alone.
            self._forget(change)
            again = await self._write_contact(change, None)
            if isinstance(again, Outcome):
                return again
            written = again
            retag = tag_changes(change, written)
            errors = await self.tagger.contacts({change.key: retag}) if retag else {}
            if errors:
                return outcome_of(change.key, errors[change.key])
        try:
            problem = await self.companies.attach(change, written)
        except DestinationUnavailable:
            raise
        except DestinationError as exc:
            return outcome_of(change.key, exc)
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
            return outcome_of(key, exc)

    async def _write_attributes(self, change: Change, match: Match | None) -> str | Outcome:
        attributes = custom_attributes(change.fields)
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
            attributes = custom_attributes(change.fields)
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
        write reached is found by it -- the finder's search (a merged contact's survivor), then
        ``find_by_external_id`` (a contact created a moment ago). None found: the write never landed,
        nothing to clear."""
        found = (await self.finder.find([change], exact_when_missing=True))[change.key]
        if found.verdict != "update" or found.contact_id is None:
            return Outcome.ok(change.key)
        match = self.finder.claim(change.key, found)
        if match.verdict == "conflict":
            assert match.owner is not None
            return Outcome.conflict(change.key, match.owner, found.contact_id, "Intercom")
        if attributes:
            await self._update(found.contact_id, attributes)
        return found.contact_id

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

    # ------------------------------------------------------------------------------------------- resolve

    async def resolve(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Resolution]:
        """What delivery would do for each key, by read-only lookups (``plan --resolve``)."""
        if kind is ObjectKind.ACCOUNT:
            return await self._each(batch, self.companies.resolve)
        matches = await self.finder.find([c for c in batch if not c.dest_id], exact_when_missing=True)
        out = []
        owners = self.ownership.owners(
            ObjectKind.USER, [m.contact_id for m in matches.values() if m.contact_id]
        )
        for change in batch:
            if change.dest_id:
                out.append(Resolution(change.key, "update", change.dest_id, "stored id"))
                continue
            # A key without a record is a lost write's, gone from the source: found by its key, or nothing.
            lost = change.record is None
            match = matches.get(change.key, Match("missing"))
            owner = owners.get(match.contact_id or "")
            if match.verdict in ("update", "adopt") and owner not in (None, change.key):
                out.append(Resolution(change.key, "conflict", match.contact_id, f"owned by key {owner!r}"))
            elif match.verdict in ("update", "adopt"):
                detail = "found by email; external_id will be set" if match.verdict == "adopt" else None
                if lost:
                    detail = "a lost write reached it: to be cleared"
                out.append(Resolution(change.key, "update", match.contact_id, detail))
            elif lost:
                out.append(
                    Resolution(change.key, "not_found", None, "nothing of this key's: nothing to clear")
                )
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

    async def aclose(self) -> None:
        self.ownership.close()
        await self.transport.aclose()
