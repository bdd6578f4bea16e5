"""HubSpot: users to contact properties, accounts to company properties, 100 records per request.

Matching: contacts by email (or a unique property of ours), companies by our unique ``accoil_account_id``
(or by domain, once, when configured); the HubSpot record id is then kept in state, so steady-state
updates are ``batch/update`` by id: one request per 100 changed records. Missing records are created only
with ``create_missing = true`` (``batch/upsert``); otherwise they are reported as not found.

HubSpot fails a whole batch for one bad input unless every input carries an ``objectWriteTraceId``, and
rejects duplicate ids outright. So: emails are validated and keys lower-cased and de-duplicated here, every
input carries our key as its trace id (a 207 then names the bad record), and a batch that still fails as a
whole is split in halves until the bad record stands alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx

from accoil_sync.config.models import HubSpotDestination, ProfileConfig
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.hubspot_auth import OAuthRefresh
from accoil_sync.connectors.hubspot_schema import OBJECT_TYPES, HubSpotSchema
from accoil_sync.errors import DestinationUnavailable, PermanentError
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
_EMAIL = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[A-Za-z]{2,}$")
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


class HubSpotConnector:
    name = "hubspot"

    def __init__(
        self,
        cfg: HubSpotDestination,
        profiles: Sequence[ProfileConfig],
        *,
        policy: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.capabilities = Capabilities(max_batch=MAX_BATCH, max_concurrency=cfg.max_concurrency)
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
        self.schema = HubSpotSchema(cfg, self.transport, profiles)
        self._email_owner: dict[str, str] = {}

    async def ensure_schema(self) -> None:
        await self.schema.ensure(OBJECT_TYPES)

    # ------------------------------------------------------------------------------------------ deliver

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self._check_daily()
        object_type = OBJECT_TYPES[kind]
        outcomes: list[Outcome] = []
        by_id: list[tuple[Change, str]] = []  # (change, HubSpot record id)
        to_resolve: list[tuple[Change, str]] = []  # (change, value of the id property)
        for change in batch:
            if change.dest_id:
                by_id.append((change, change.dest_id))
                continue
            key_value, problem = self._match_value(kind, change)
            if problem:
                outcomes.append(Outcome.reject(change.key, problem))
            else:
                assert key_value is not None
                to_resolve.append((change, key_value))
        await self._ensure_options(object_type, batch)
        if to_resolve:
            if self.cfg.create_missing:
                outcomes += await self._write(
                    object_type,
                    "upsert",
                    [(c, {"id": v, "idProperty": self._id_property(kind)}) for c, v in to_resolve],
                )
            else:
                found, missing = await self._resolve(kind, to_resolve)
                by_id += found
                outcomes += [
                    Outcome.reject(
                        c.key,
                        f"not found in HubSpot by {self._id_property(kind)} {v!r}; "
                        "not created because destinations.hubspot.create_missing is off",
                    )
                    for c, v in missing
                ]
        if by_id:
            outcomes += await self._write(object_type, "update", [(c, {"id": i}) for c, i in by_id])
        return outcomes

    def _check_daily(self) -> None:
        left = self.daily.get("remaining")
        if left is not None and left <= DAILY_RESERVE:
            raise DestinationUnavailable(
                f"HubSpot's daily API limit is nearly used ({left} of {self.daily.get('limit')} requests left); "
                "the run stops cleanly here and resumes after midnight in the HubSpot account's time zone"
            )

    def _id_property(self, kind: ObjectKind) -> str:
        if kind is ObjectKind.ACCOUNT:
            return self.cfg.company_id_property
        return "email" if self.cfg.contact_match == "email" else self.cfg.contact_id_property

    def _match_value(self, kind: ObjectKind, change: Change) -> tuple[str | None, str | None]:
        """The value to find this record by, or why it cannot be sent."""
        if change.record is None:
            return None, "cannot clear: the HubSpot record id is not known (it was never delivered)"
        if kind is ObjectKind.ACCOUNT or self.cfg.contact_match == "property":
            return change.key, None
        email = (change.record.email or "").strip().lower()
        if not email:
            return None, 'no email: HubSpot contacts are matched by email (or set contact_match = "property")'
        if not _EMAIL.match(email):
            return None, f"email {email!r} is not one HubSpot accepts (INVALID_EMAIL); nothing was sent"
        owner = self._email_owner.setdefault(email, change.key)
        if owner != change.key:
            return (
                None,
                f"email {email!r} also belongs to user {owner!r}; HubSpot keeps one contact per email",
            )
        return email, None

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

    async def _resolve(
        self, kind: ObjectKind, items: list[tuple[Change, str]]
    ) -> tuple[list[tuple[Change, str]], list[tuple[Change, str]]]:
        """HubSpot ids for records not yet known, by one batch read (or a domain search for companies)."""
        object_type = OBJECT_TYPES[kind]
        id_property = self._id_property(kind)
        response = await self.transport.request(
            "POST",
            f"/crm/v3/objects/{object_type}/batch/read",
            json={
                "idProperty": id_property,
                "properties": [id_property],
                "inputs": [{"id": v} for _, v in items],
            },
        )
        ids = {}
        for result in response.json().get("results", []):
            value = (result.get("properties") or {}).get(id_property)
            if value is not None:
                ids[str(value).lower() if id_property == "email" else str(value)] = str(result["id"])
        found = [(c, ids[v]) for c, v in items if v in ids]
        missing = [(c, v) for c, v in items if v not in ids]
        if missing and kind is ObjectKind.ACCOUNT and self.cfg.company_match == "domain":
            by_domain, missing = await self._by_domain(missing)
            found += by_domain
        return found, missing

    async def _by_domain(
        self, items: list[tuple[Change, str]]
    ) -> tuple[list[tuple[Change, str]], list[tuple[Change, str]]]:
        domains = sorted({c.record.domain for c, _ in items if c.record and c.record.domain})
        matches: dict[str, list[str]] = {}
        if domains:
            response = await self.transport.request(
                "POST",
                "/crm/v3/objects/companies/search",
                json={
                    "filterGroups": [
                        {"filters": [{"propertyName": "domain", "operator": "IN", "values": domains}]}
                    ],
                    "properties": ["domain"],
                    "limit": 200,
                },
            )
            for result in response.json().get("results", []):
                domain = str((result.get("properties") or {}).get("domain", "")).lower()
                matches.setdefault(domain, []).append(str(result["id"]))
        found, missing = [], []
        for change, value in items:
            domain = (change.record.domain or "").lower() if change.record else ""
            hits = matches.get(domain, [])
            if len(hits) == 1:
                # Also write our unique id, so that later runs find the company without searching.
                fields = {**change.fields, self.cfg.company_id_property: change.key}
                found.append((Change(**{**_as_dict(change), "fields": fields}), hits[0]))
            else:
                missing.append((change, value))
        return found, missing

    async def _write(
        self, object_type: str, mode: str, items: list[tuple[Change, dict[str, Any]]]
    ) -> list[Outcome]:
        inputs = [{**ident, "objectWriteTraceId": c.key, "properties": c.fields} for c, ident in items]
        try:
            response = await self.transport.request(
                "POST", f"/crm/v3/objects/{object_type}/batch/{mode}", json={"inputs": inputs}
            )
        except PermanentError as exc:
            if len(items) == 1:
                return [Outcome.reject(items[0][0].key, _reason(exc))]
            # The whole batch failed for something in it: halve until the bad record stands alone.
            half = len(items) // 2
            return await self._write(object_type, mode, items[:half]) + await self._write(
                object_type, mode, items[half:]
            )
        body = response.json()
        ids = {r.get("objectWriteTraceId"): str(r["id"]) for r in body.get("results", [])}
        errors: dict[str, str] = {}
        for error in body.get("errors", []):
            for trace in (error.get("context") or {}).get("objectWriteTraceId", []):
                errors[trace] = f"{error.get('category', 'error')}: {error.get('message', '')}"[:600]
        outcomes = []
        for change, ident in items:
            if change.key in errors:
                outcomes.append(Outcome.reject(change.key, errors[change.key]))
            elif change.key in ids:
                outcomes.append(Outcome.ok(change.key, ids[change.key]))
            elif mode == "update" and not body.get("errors"):
                outcomes.append(Outcome.ok(change.key, ident["id"]))  # no trace ids echoed: all applied
            else:
                outcomes.append(Outcome.retry(change.key, "HubSpot's answer did not mention this record"))
        return outcomes

    async def aclose(self) -> None:
        await self.transport.aclose()


def _reason(exc: PermanentError) -> str:
    return (exc.vendor_reason or str(exc))[:600]


def _as_dict(change: Change) -> dict[str, Any]:
    return {f: getattr(change, f) for f in change.__dataclass_fields__}
