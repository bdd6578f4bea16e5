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
_CONTEXT_JSON = orjson.dumps(CONTEXT)


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
    return b"accoil-" + hashlib.sha256(body).hexdigest()[:38].encode()


_KIND_JSON = {kind: orjson.dumps(kind.value) for kind in ObjectKind}


def encode_message(change: Change, now: bytes) -> bytes:
    """The identify (user) or group (account) message as Segment's JSON; ``now`` is the JSON string of the
    timestamp for messages whose record has no computed-at time.

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
    tail = b'"messageId":"%b","timestamp":%b,"traits":%b}' % (
        _message_id(change, key, traits),
        orjson.dumps(computed_at) if computed_at else now,
        traits,
    )
    if change.kind is ObjectKind.USER:
        return b'{"type":"identify","userId":%b,%b' % (key, tail)
    anonymous = orjson.dumps(anonymous_group_id(change.key))
    return b'{"type":"group","groupId":%b,"anonymousId":%b,%b' % (key, anonymous, tail)


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
        # Requests within both the byte budget and the event cap, filled as the messages are encoded.
        requests: list[tuple[list[Change], list[bytes]]] = []
        changes: list[Change] = []
        messages: list[bytes] = []
        size = 0
        budget, cap, now = self.request_budget, self.max_events, orjson.dumps(_now())
        for change in batch:
            try:
                encoded = encode_message(change, now)
            except (ValueError, TypeError) as exc:
                outcomes.append(Outcome.reject(change.key, f"not valid JSON for Segment: {exc}"))
                continue
            length = len(encoded)
            if length > MAX_MESSAGE_BYTES:
                outcomes.append(
                    Outcome.reject(
                        change.key,
                        f"message is {length:,} bytes, over Segment's "
                        f"32 KB limit (Segment would drop it); nothing was sent",
                    )
                )
                continue
            if messages and (size + length + 1 > budget or len(messages) >= cap):
                requests.append((changes, messages))
                changes, messages, size = [], [], 0
            changes.append(change)
            messages.append(encoded)
            size += length + 1
        if messages:
            requests.append((changes, messages))
        for changes, messages in requests:
            outcomes.extend(await self._send(changes, messages))
        return outcomes

    async def _send(self, changes: list[Change], messages: list[bytes]) -> list[Outcome]:
        body = b'{"batch":[' + b",".join(messages) + b'],"context":' + _CONTEXT_JSON + b"}"
        try:
            await self.transport.request(
                "POST", "/v1/batch", content=body, headers={"Content-Type": "application/json"}
            )
        except PermanentError as exc:
            # A 400 rejects the whole request; our own checks should have caught it, so say what Segment said.
            return [Outcome.reject(change.key, str(exc)) for change in changes]
        return [Outcome(change.key, "ok") for change in changes]

    async def aclose(self) -> None:
        await self.transport.aclose()
