"""HubSpot: users to contact properties, accounts to company properties, 100 records per request.

Identity (docs/IDENTITY.md, ``hubspot_identity``): a key without a stored HubSpot id is looked up first
(contacts by our unique property and by email, companies by our unique property and by domain), the record
found is claimed for the key through ``Ownership`` (a record another key owns is a reported conflict, never
a write), and only keys the lookup did not find are created (``create_missing = true``, ``batch/upsert`` by
email or by our unique property, so a retried create cannot duplicate). The HubSpot id is then kept in
state, so steady-state updates are ``batch/update`` by id: one request per 100 changed records. A stored id
HubSpot no longer knows (merged, deleted) is replaced in the same run: by the merge's survivor, or by a
new lookup.

HubSpot fails a whole batch for one bad input unless every input carries an ``objectWriteTraceId``, and
rejects duplicate ids outright. So: emails are validated and keys lower-cased and de-duplicated here, every
input carries our key as its trace id (a 207 then names the bad record), and a batch that still fails as a
whole is split in halves until the bad record stands alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from accoil_sync.config.models import HubSpotDestination, ProfileConfig
from accoil_sync.connectors.base import Capabilities, Change, Outcome, Resolution
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.hubspot_answers import (
    CONFLICT_HINT,
    DRIFT,
    drifted,
    email_moved,
    missing_ids,
    reason_class,
    reason_text,
    reported,
    verdict,
)
from accoil_sync.connectors.hubspot_auth import OAuthRefresh
from accoil_sync.connectors.hubspot_identity import (
    OBJECT_TYPES,
    HubSpotIdentity,
    normalise_domain,
    normalise_email,
)
from accoil_sync.connectors.hubspot_schema import HubSpotSchema
from accoil_sync.errors import DestinationUnavailable, PermanentError
from accoil_sync.sync.identity import Ownership
from accoil_sync.traits.encoders import Encoder, HubSpotEncoder, hubspot_option_value, hubspot_property
from accoil_sync.traits.names import Metric, ObjectKind

MAX_BATCH = 100
TIER_PER_10S = {
    "free": 100,
    "starter": 100,
    "professional": 190,
    "enterprise": 190,
    "api_limit_increase": 250,
}
DAILY_RESERVE = 50  # stop cleanly before the last requests of the day, leaving room for people's own tools


def _headers_observer(limiter: RateLimiter, daily: dict[str, int]) -> Any:
    def observe(response: httpx.Response) -> float | None:
        h = response.headers
        remaining, maximum = h.get("x-hubspot-ratelimit-remaining"), h.get("x-hubspot-ratelimit-max")
        interval = float(h.get("x-hubspot-ratelimit-interval-milliseconds", "10000")) / 1000
        if remaining is not None:
            limiter.observe(int(remaining), interval, int(maximum) if maximum else None)
        if (left := h.get("x-hubspot-ratelimit-daily-remaining")) is not None:
            daily["remaining"] = int(left)
            daily["limit"] = int(h.get("x-hubspot-ratelimit-daily", "0") or 0)
        if response.status_code == 429:
            try:
                policy = response.json().get("policyName", "")
            except ValueError:
                policy = ""
            if policy == "DAILY":
                raise DestinationUnavailable(
                    "HubSpot's daily API limit is used up; the run stops here and resumes after midnight in the "
                    "HubSpot account's time zone",
                    status=429,
                )
            return 1.0 if policy == "SECONDLY" else interval
        return None

    return observe


@dataclass(slots=True)
class _Write:
    """One input of a batch write: the change, how HubSpot finds the record, the properties sent."""

    change: Change
    ident: dict[str, str]  # {"id": record id} (update) or {"id": value, "idProperty": name} (upsert)
    properties: dict[str, Any]


class HubSpotConnector:
    name = "hubspot"

    def __init__(
        self,
        cfg: HubSpotDestination,
        profiles: Sequence[ProfileConfig],
        *,
        policy: RetryPolicy | None = None,
        ownership: Ownership | None = None,
        client: httpx.AsyncClient | None = None,
        schema_cache: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.ownership = ownership or Ownership("hubspot")  # who owns which record (docs/IDENTITY.md)
        self.capabilities = Capabilities(
            max_batch=MAX_BATCH, max_concurrency=cfg.max_concurrency, resolves=True
        )
        self.encoder: Encoder = HubSpotEncoder()
        self.daily: dict[str, int] = {}
        limiter = RateLimiter(TIER_PER_10S[cfg.tier], 10.0)
        auth: httpx.Auth | None = None
        headers = {}
        if cfg.oauth_refresh_token is not None:
            assert cfg.oauth_client_id and cfg.oauth_client_secret
            auth = OAuthRefresh(
                cfg.base_url,
                cfg.oauth_client_id,
                cfg.oauth_client_secret.get_secret_value(),
                cfg.oauth_refresh_token.get_secret_value(),
            )
        else:
            assert cfg.access_token is not None
            headers["Authorization"] = f"Bearer {cfg.access_token.get_secret_value()}"
        self.transport = Transport(
            "hubspot",
            cfg.base_url,
            headers=headers,
            auth=auth,
            timeout=cfg.timeout_seconds,
            limiter=limiter,
            policy=policy or RetryPolicy(max_attempts=cfg.max_attempts),
            max_connections=cfg.max_concurrency,
            client=client,
            observe=_headers_observer(limiter, self.daily),
        )
        self.schema = HubSpotSchema(cfg, self.transport, profiles, schema_cache)
        self.identity = HubSpotIdentity(cfg, self.transport)
        self._email_owner: dict[str, str] = {}  # email -> the key that creates its contact in this run

    async def ensure_schema(self) -> None:
        await self.schema.ensure(OBJECT_TYPES)

    # ------------------------------------------------------------------------------------------ deliver

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self._check_daily()
        await self._ensure_options(OBJECT_TYPES[kind], batch)
        outcomes: dict[str, Outcome] = {}
        updates: list[_Write] = []
        unknown: list[Change] = []
        unplaced: list[Change] = []
        for change in batch:
            if not change.dest_id:
                (unplaced if change.record is None else unknown).append(change)
        if unplaced:
            await self._place_lost(kind, unplaced, outcomes)
        refused = self._claim_all(kind, [(c.key, c.dest_id) for c in batch if c.dest_id])
        for change in batch:
            if change.dest_id and change.key not in outcomes:
                if owner := refused.get(change.key):
                    outcomes[change.key] = Outcome.conflict(change.key, owner, change.dest_id, "HubSpot")
                else:
                    updates.append(_Write(change, {"id": change.dest_id}, dict(change.fields)))
        creates: list[_Write] = []
        if unknown:
            await self._place(kind, unknown, updates, creates, outcomes)
        seen = self.schema.rechecks
        results = await self._update(kind, updates) + await self._send(kind, "upsert", creates)
        gone = {o.key for o in results if drifted(o)}
        if gone:
            # Our property or option was archived in HubSpot after the schema was cached: check the schema
            # again and send the affected records once more, in this run.
            await self.schema.recheck(OBJECT_TYPES, seen)
            await self._ensure_options(OBJECT_TYPES[kind], [c for c in batch if c.key in gone])
            results = [o for o in results if o.key not in gone]
            results += await self._update(kind, [w for w in updates if w.change.key in gone])
            results += await self._send(kind, "upsert", [w for w in creates if w.change.key in gone])
        for outcome in results:
            outcomes[outcome.key] = outcome
        return [outcomes[c.key] for c in batch]

    async def _place_lost(self, kind: ObjectKind, batch: list[Change], outcomes: dict[str, Outcome]) -> None:
        """Clears for keys that left the source after a write of theirs was lost unacknowledged (no record
        id stored, sync/pending.py): the record that write reached carries our key in our unique property,
        and a read by it is exact (not a lagging search). Found: its id goes on the change, to be cleared
        like any other. Not found: the write never landed and there is nothing to clear. Contacts matched
        by email carry no key of ours, and the source no longer gives the email: reported, not guessed."""
        prop = self.identity.id_property(kind)
        if prop is None:
            for change in batch:
                outcomes[change.key] = Outcome.reject(
                    change.key,
                    "cannot clear: a write for this key was never acknowledged and the key has left the "
                    "source; HubSpot contacts are found by email, which the source no longer gives "
                    f'(contact_match = "property" finds them by {self.cfg.contact_id_property})',
                    "not_found",
                )
            return
        found = await self.identity.read_keys(kind, [c.key for c in batch])
        for change in batch:
            if change.key in found:
                change.dest_id = found[change.key]
            else:
                outcomes[change.key] = Outcome.ok(change.key)

    def _claim_all(self, kind: ObjectKind, pairs: list[tuple[str, str]]) -> dict[str, str]:
        """Claim each (key, record id); returns key -> the other owner, for the claims refused. One state
        query for the batch: in steady state every stored id is already its key's."""
        owners = self.ownership.owners(kind, [d for _, d in pairs])
        refused: dict[str, str] = {}
        for key, dest_id in pairs:
            owner = owners.get(dest_id)
            if owner is None:
                owner = self.ownership.claim(kind, key, dest_id)
            if owner is not None and owner != key:
                refused[key] = owner
            else:
                owners[dest_id] = key
        return refused

    def _check_daily(self) -> None:
        left = self.daily.get("remaining")
        if left is not None and left <= DAILY_RESERVE:
            exc = DestinationUnavailable(
                f"HubSpot's daily API limit is nearly used ({left} of {self.daily.get('limit')} requests left); "
                "the run stops cleanly here and resumes after midnight in the HubSpot account's time zone"
            )
            exc.before_sending = True
            raise exc

    async def _place(
        self,
        kind: ObjectKind,
        changes: list[Change],
        updates: list[_Write],
        creates: list[_Write],
        outcomes: dict[str, Outcome],
    ) -> None:
        """Look up records for keys without a HubSpot id; claim what was found, create what was not."""
        matches = await self.identity.lookup(kind, [(c.key, c.record) for c in changes if c.record])
        for change in changes:
            match = matches[change.key]
            key = change.key
            if match.verdict == "found":
                assert match.dest_id is not None
                if owner := self.ownership.claim(kind, key, match.dest_id):
                    outcomes[key] = Outcome.conflict(key, owner, match.dest_id, "HubSpot")
                else:
                    updates.append(_Write(change, {"id": match.dest_id}, {**change.fields, **match.stamp}))
            elif match.verdict == "not_found" and self.cfg.create_missing:
                write, problem = self._creation(kind, change)
                if write is not None:
                    creates.append(write)
                else:
                    assert problem is not None
                    outcomes[key] = problem
            else:
                outcomes[key] = reported(key, match, self.cfg.create_missing)

    def _creation(self, kind: ObjectKind, change: Change) -> tuple[_Write | None, Outcome | None]:
        """A new record for a key the lookup did not find, carrying what identifies it in HubSpot."""
        record = change.record
        assert record is not None
        key = change.key
        if kind is ObjectKind.ACCOUNT:
            domain = normalise_domain(record.domain)
            name = (record.name or "").strip() or domain
            if not name:
                return None, Outcome.reject(
                    key,
                    "not found in HubSpot, and not created: a company needs a name or a domain, and the "
                    "source has neither for this account",
                    "not_found",
                )
            properties: dict[str, Any] = {**change.fields, "name": name}
            if domain:
                properties["domain"] = domain
            prop = self.cfg.company_id_property
            return _Write(change, {"id": key, "idProperty": prop}, properties), None
        if problem := self.identity.email_problem(record):
            return None, Outcome.reject(key, f"not found in HubSpot, and not created: {problem}", "not_found")
        email = normalise_email(record.email) or ""
        owner = self._email_owner.setdefault(email, key)
        if owner != key:
            return None, Outcome.reject(
                key,
                f"conflict: email {email!r} also belongs to key {owner!r}; HubSpot keeps one contact per "
                f"email; {CONFLICT_HINT}",
                "conflict",
            )
        properties = {**change.fields, "email": email}
        user_prop = self.identity.id_property(kind)
        if user_prop is None:
            return _Write(change, {"id": email, "idProperty": "email"}, properties), None
        return _Write(change, {"id": key, "idProperty": user_prop}, {**properties, user_prop: key}), None

    async def _update(self, kind: ObjectKind, updates: list[_Write], healing: bool = False) -> list[Outcome]:
        """``batch/update`` by id; stored ids HubSpot no longer knows are replaced and sent again."""
        if not updates:
            return []
        outcomes = await self._send(kind, "update", updates)
        stale = {o.key for o in outcomes if o.status == "rejected" and o.reason_class == "not_found"}
        if not stale or healing:
            return outcomes
        items = [w for w in updates if w.change.key in stale]
        survivors = await self.identity.survivors(kind, [w.ident["id"] for w in items])
        kept = [o for o in outcomes if o.key not in stale]
        again: list[_Write] = []
        lost: list[Change] = []
        for write in items:
            change, old = write.change, write.ident["id"]
            self.ownership.release(kind, change.key, old)
            new = survivors.get(old)
            if new is not None and new != old:
                if owner := self.ownership.claim(kind, change.key, new):
                    kept.append(Outcome.conflict(change.key, owner, new, "HubSpot"))
                else:
                    again.append(_Write(change, {"id": new}, write.properties))
            elif change.record is None:
                kept.append(Outcome.ok(change.key))  # the object left the source and its record left HubSpot
            else:
                lost.append(replace(change, dest_id=None))
        creates: list[_Write] = []
        if lost:
            found_out: dict[str, Outcome] = {}
            await self._place(kind, lost, again, creates, found_out)
            kept += found_out.values()
        return (
            kept + await self._update(kind, again, healing=True) + await self._send(kind, "upsert", creates)
        )

    async def _ensure_options(self, object_type: str, batch: Sequence[Change]) -> None:
        wanted: dict[str, dict[str, str]] = {}
        for change in batch:
            if change.record is None:
                continue
            for score_name, metrics in change.record.metrics.items():
                segments = metrics.get(Metric.SEGMENTS)
                if isinstance(segments, tuple) and segments:
                    options = wanted.setdefault(hubspot_property(score_name, Metric.SEGMENTS), {})
                    options.update({hubspot_option_value(s): s for s in segments})
        if wanted:
            await self.schema.ensure_options(object_type, wanted)

    async def _send(self, kind: ObjectKind, mode: str, items: list[_Write]) -> list[Outcome]:
        if not items:
            return []
        object_type = OBJECT_TYPES[kind]
        inputs = [{**w.ident, "objectWriteTraceId": w.change.key, "properties": w.properties} for w in items]
        try:
            response = await self.transport.request(
                "POST", f"/crm/v3/objects/{object_type}/batch/{mode}", json={"inputs": inputs}
            )
        except PermanentError as exc:
            reason = reason_text(exc)
            gone = missing_ids(reason, [w.ident["id"] for w in items]) if mode == "update" else set()
            if gone and len(gone) < len(items):
                # The whole batch failed for ids HubSpot names as unknown (stale): those are healed by the
                # caller, the rest is sent again at once -- no bisection for a dead id.
                stale = [w for w in items if w.ident["id"] in gone]
                return [Outcome.reject(w.change.key, reason, "not_found") for w in stale] + await self._send(
                    kind, mode, [w for w in items if w.ident["id"] not in gone]
                )
            if len(items) == 1 or DRIFT.search(reason):
                # One record, or a property every record carries is gone (halving would not isolate it).
                return [Outcome.reject(w.change.key, reason, reason_class(reason, mode)) for w in items]
            # The whole batch failed for something in it: halve until the bad record stands alone.
            half = len(items) // 2
            return await self._send(kind, mode, items[:half]) + await self._send(kind, mode, items[half:])
        body = response.json()
        ids = {r.get("objectWriteTraceId"): str(r["id"]) for r in body.get("results", [])}
        errors: dict[str, tuple[str, str]] = {}
        for error in body.get("errors", []):
            category = error.get("category", "error")
            text = f"{category}: {error.get('message', '')}"[:600]
            for trace in (error.get("context") or {}).get("objectWriteTraceId", []):
                errors[trace] = (text, reason_class(text, mode))
        outcomes = []
        for write in items:
            key = write.change.key
            if key in errors:
                outcomes.append(Outcome.reject(key, *errors[key]))  # type: ignore[arg-type]
            elif key in ids:
                outcomes.append(self._acknowledged(kind, key, ids[key], write))
            elif mode == "update" and not body.get("errors"):
                outcomes.append(Outcome.ok(key, write.ident["id"]))  # no trace ids echoed: all applied
            else:
                outcomes.append(Outcome.retry(key, "HubSpot's answer did not mention this record"))
        return outcomes

    def _acknowledged(self, kind: ObjectKind, key: str, dest_id: str, write: _Write) -> Outcome:
        """A record HubSpot wrote: created ones (and an update HubSpot redirected) are claimed now."""
        claim = write.ident.get("idProperty") or dest_id != write.ident["id"]
        if claim and (owner := self.ownership.claim(kind, key, dest_id)):
            return Outcome.conflict(key, owner, dest_id, "HubSpot")
        return Outcome.ok(key, dest_id)

    # ------------------------------------------------------------------------------------------ resolve

    async def resolve(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Resolution]:
        """What delivering ``batch`` would do to which record, by read-only lookups (``plan --resolve``).
        Stored ids are read once (one request per 100) so that merged and deleted records show up."""
        out: dict[str, Resolution] = {}
        stored = [c for c in batch if c.dest_id]
        claims: dict[str, str] = {}
        lookup: list[Change] = [c for c in batch if not c.dest_id and c.record is not None]
        if stored:
            emails = ["email", "hs_additional_emails"] if kind is ObjectKind.USER else []
            read = await self.identity.read_ids(kind, [c.dest_id for c in stored if c.dest_id], emails)
            for change in stored:
                assert change.dest_id is not None
                answer = read.get(change.dest_id)
                if answer is None:
                    if change.record is None:
                        out[change.key] = Resolution(
                            change.key, "update", None, "record gone: nothing to clear"
                        )
                    else:
                        lookup.append(change)
                    continue
                new, props = answer
                notes = [] if new == change.dest_id else [f"stored id {change.dest_id} merged into {new}"]
                if kind is ObjectKind.USER and change.record is not None:
                    notes += email_moved(change.record.email, props)
                detail = "; ".join(notes) or None
                out[change.key] = self._plan_claim(kind, change.key, new, claims, detail)
        lost = [c for c in batch if not c.dest_id and c.record is None]
        if lost:
            placed: dict[str, Outcome] = {}
            await self._place_lost(kind, lost, placed)
            for change in lost:
                if change.key not in placed:
                    assert change.dest_id is not None
                    out[change.key] = self._plan_claim(
                        kind, change.key, change.dest_id, claims, "a lost write reached it: to be cleared"
                    )
                else:
                    outcome = placed[change.key]
                    out[change.key] = Resolution(
                        change.key,
                        "not_found",
                        None,
                        outcome.reason or "nothing of this key's: nothing to clear",
                    )
        if lookup:
            matches = await self.identity.lookup(kind, [(c.key, c.record) for c in lookup if c.record])
            for change in lookup:
                match = matches[change.key]
                if match.verdict == "found":
                    assert match.dest_id is not None
                    out[change.key] = self._plan_claim(kind, change.key, match.dest_id, claims, None)
                elif match.verdict == "not_found" and self.cfg.create_missing:
                    write, problem = self._creation(kind, change)
                    out[change.key] = (
                        Resolution(change.key, "create")
                        if write
                        else Resolution(
                            change.key, verdict(problem), None, problem.reason if problem else None
                        )
                    )
                else:
                    report = reported(change.key, match, self.cfg.create_missing)
                    out[change.key] = Resolution(change.key, verdict(report), match.dest_id, report.reason)
        return [out[c.key] for c in batch]

    def _plan_claim(
        self, kind: ObjectKind, key: str, dest_id: str, claims: dict[str, str], detail: str | None
    ) -> Resolution:
        owner = claims.get(dest_id) or self.ownership.owners(kind, [dest_id]).get(dest_id)
        if owner is not None and owner != key:
            return Resolution(key, "conflict", dest_id, f"HubSpot record {dest_id} belongs to key {owner!r}")
        claims[dest_id] = key
        return Resolution(key, "update", dest_id, detail)

    async def aclose(self) -> None:
        self.ownership.close()
        await self.transport.aclose()
