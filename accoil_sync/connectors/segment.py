"""Segment: users as ``identify``, accounts as ``group``, through the HTTP Tracking API's ``/v1/batch``.

Why httpx and not ``segment-analytics-python``: the SDK queues messages for a background thread, drops
them silently when its queue is full, loses what is queued at exit unless flushed, and never retries in
sync mode -- so it cannot tell us that *this* batch was acknowledged, which is what our state commit
needs. We call the HTTP API directly with the shared retry policy instead (docs/ARCHITECTURE.md).

Segment answers 200 to almost anything and drops silently what it will not take, so everything it would
drop is checked here first: a message over 32 KB, a request over 500 KB, more than 2,500 events, a value
that is not valid JSON.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import orjson

from accoil_sync import __version__
from accoil_sync.config.models import SegmentDestination
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.errors import PermanentError
from accoil_sync.traits.encoders import Encoder, TraitsEncoder
from accoil_sync.traits.names import ObjectKind

MAX_MESSAGE_BYTES = 32 * 1024
REQUEST_BUDGET = 475 * 1024  # headroom under 500 KB for the envelope, as Segment's own SDKs keep
MAX_EVENTS = 2500
CONTEXT = {"library": {"name": "accoil-sync", "version": __version__}}


def message_id(change: Change) -> str:
    """Deterministic per (object, delivery version, values): a re-send of an acknowledged but uncommitted
    batch repeats its ids and Segment drops the copy; A -> B -> A within Segment's 24 h de-duplication
    window still delivers the second A, because the delivery version moved on. 45 characters (< 100)."""
    fields = orjson.dumps(change.fields, option=orjson.OPT_SORT_KEYS)
    return _message_id(change, orjson.dumps(change.key), fields).decode()


def _message_id(change: Change, key: bytes, traits: bytes) -> bytes:
    # The bytes of orjson.dumps([kind, key, version, fields], OPT_SORT_KEYS), assembled from the key and
    # traits already encoded for the message so the hot path serialises them once.
    body = b"[%b,%b,%d,%b]" % (_KIND_JSON[change.kind], key, change.version, traits)
    return b"accoil-" + hashlib.sha256(body).digest()[:19].hex().encode()


_KIND_JSON = {kind: orjson.dumps(kind.value) for kind in ObjectKind}


def encode_message(change: Change, now: str) -> bytes:
    """The identify (user) or group (account) message as Segment's JSON.

    Raises ``ValueError`` for a value Segment's JSON cannot carry: NaN and infinities are not numbers there
    (orjson would quietly write null).
    """
    traits = orjson.dumps(change.fields, option=orjson.OPT_SORT_KEYS)
    if b"null" in traits:  # a cleared trait, or a NaN that orjson wrote as null
        for value in change.fields.values():
            if type(value) is float and not math.isfinite(value):
                raise ValueError(f"{value} is not a JSON number")
    record = change.record
    computed_at = record.computed_at if record is not None else None
    key = orjson.dumps(change.key)
    tail = b',"messageId":"%b","timestamp":%b,"traits":%b}' % (
        _message_id(change, key, traits),
        orjson.dumps(computed_at or now),
        traits,
    )
    if change.kind is ObjectKind.USER:
        return b'{"type":"identify","userId":' + key + tail
    anonymous = orjson.dumps(anonymous_group_id(change.key))
    return b'{"type":"group","groupId":' + key + b',"anonymousId":' + anonymous + tail


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anonymous_group_id(account_id: str) -> str:
    """``group`` needs a userId or anonymousId; a stable one derived from the account (docs/TRAITS.md)."""
    return "accoil-account-" + hashlib.sha256(account_id.encode()).hexdigest()[:24]


class SegmentConnector:
    name = "segment"

    def __init__(
        self,
        cfg: SegmentDestination,
        *,
        transport: Transport | None = None,
        policy: RetryPolicy | None = None,
        max_events: int = MAX_EVENTS,
        request_budget: int = REQUEST_BUDGET,
    ) -> None:
        assert cfg.write_key is not None
        self.cfg = cfg
        self.max_events = max_events
        self.request_budget = request_budget
        self.capabilities = Capabilities(max_batch=max_events, max_concurrency=cfg.max_concurrency)
        self.encoder: Encoder = TraitsEncoder()
        self.transport = transport or Transport(
            "segment",
            cfg.url,
            auth=httpx.BasicAuth(cfg.write_key.get_secret_value(), ""),
            timeout=cfg.timeout_seconds,
            limiter=RateLimiter(cfg.requests_per_second, 1.0),
            policy=policy or RetryPolicy(max_attempts=cfg.max_attempts),
            max_connections=cfg.max_concurrency,
        )

    async def ensure_schema(self) -> None:
        return None  # Segment has no schema to create

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        pending: list[tuple[Change, bytes]] = []
        now = _now()
        for change in batch:
            try:
                encoded = encode_message(change, now)
            except (ValueError, TypeError) as exc:
                outcomes.append(Outcome.reject(change.key, f"not valid JSON for Segment: {exc}"))
                continue
            if len(encoded) > MAX_MESSAGE_BYTES:
                outcomes.append(
                    Outcome.reject(
                        change.key,
                        f"message is {len(encoded):,} bytes, over Segment's "
                        f"32 KB limit (Segment would drop it); nothing was sent",
                    )
                )
                continue
            pending.append((change, encoded))
        for request in self._requests(pending):
            outcomes.extend(await self._send(request))
        return outcomes

    def _requests(self, pending: list[tuple[Change, bytes]]) -> list[list[tuple[Change, bytes]]]:
        """Split into requests within both the byte budget and the event cap."""
        out: list[list[tuple[Change, bytes]]] = []
        current: list[tuple[Change, bytes]] = []
        size = 0
        for item in pending:
            if current and (size + len(item[1]) + 1 > self.request_budget or len(current) >= self.max_events):
                out.append(current)
                current, size = [], 0
            current.append(item)
            size += len(item[1]) + 1
        if current:
            out.append(current)
        return out

    async def _send(self, items: list[tuple[Change, bytes]]) -> list[Outcome]:
        context = orjson.dumps(CONTEXT)
        body = b'{"batch":[' + b",".join(encoded for _, encoded in items) + b'],"context":' + context + b"}"
        try:
            await self.transport.request(
                "POST", "/v1/batch", content=body, headers={"Content-Type": "application/json"}
            )
        except PermanentError as exc:
            # A 400 rejects the whole request; our own checks should have caught it, so say what Segment said.
            return [Outcome.reject(change.key, str(exc)) for change, _ in items]
        return [Outcome.ok(change.key) for change, _ in items]

    async def aclose(self) -> None:
        await self.transport.aclose()
