"""Segment: users as ``identify``, accounts as ``group``, through the HTTP Tracking API's ``/v1/batch``.

Why httpx and not ``segment-analytics-python``: the SDK queues messages for a background thread, drops
them silently when its queue is full, loses what is queued at exit unless flushed, and never retries in
sync mode -- so it cannot tell us that *this* batch was acknowledged, which is what our state commit
needs. We call the HTTP API directly with the shared retry policy instead (docs/ARCHITECTURE.md).

Segment answers 200 to almost anything and drops silently what it will not take, so everything it would
drop is checked here first: a message over 32 KB, a request over 500 KB, more than 2,500 events, a value
that is not valid JSON.

Accounts (``group_mode``): "members" sends each account's traits as a ``group`` call from every member user
(the source users whose ``account_id`` names it), which is what links users to companies downstream and adds
no tracked user; a user whose account changed (or who is new) gets one ``group`` call to its current account
with that account's current traits. "synthetic" sends one ``group`` call per account from a stable
anonymousId, as earlier releases did. The costs of each are in docs/CONFIG.md.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from operator import itemgetter

import httpx
import orjson

from accoil_sync import __version__
from accoil_sync.config.models import SegmentDestination
from accoil_sync.connectors.base import Capabilities, Change, Outcome, SourceView
from accoil_sync.connectors.http import RateLimiter, RetryPolicy, Transport
from accoil_sync.connectors.segment_messages import (
    GROUP_FIELD,
    SegmentEncoder,
    anonymous_group_id,
    encode_group,
    encode_message,
    link_message_id,
    member_message_id,
    message_id,
    timestamp_json,
    traits_json,
)
from accoil_sync.errors import PermanentError
from accoil_sync.traits.encoders import Encoder, FieldValue
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind

log = logging.getLogger("accoil_sync.segment")

MAX_MESSAGE_BYTES = 32 * 1024
REQUEST_BUDGET = 475 * 1024  # headroom under 500 KB for the envelope, as Segment's own SDKs keep
MAX_EVENTS = 2500
CONTEXT = {"library": {"name": "accoil-sync", "version": __version__}}
_CONTEXT_JSON = orjson.dumps(CONTEXT)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Requests:
    """Packs messages into ``/v1/batch`` requests within the byte budget and the event cap; a request that
    is full waits in ``ready`` until the caller sends it, so an account with many thousands of members never
    holds more than a request or two in memory, and queuing a message costs no await. Each message belongs
    to one change (by index); a request Segment refuses fails all the changes with a message in it."""

    def __init__(
        self,
        send: Callable[[list[bytes]], Awaitable[str | None]],
        budget: int,
        cap: int,
        failures: dict[int, Outcome],
        keys: Sequence[str],
    ) -> None:
        self._send = send
        self._budget = budget
        self._cap = cap
        self._failures = failures
        self._keys = keys
        self._owners: set[int] = set()
        self._messages: list[bytes] = []
        self._size = 0
        self.ready: list[tuple[set[int], list[bytes]]] = []

    def add(self, owner: int, message: bytes) -> None:
        length = len(message)
        if length > MAX_MESSAGE_BYTES:
            self._failures.setdefault(
                owner,
                Outcome.reject(
                    self._keys[owner],
                    f"message is {length:,} bytes, over Segment's 32 KB limit (Segment would drop it); "
                    "nothing was sent",
                ),
            )
            return
        if self._messages and (self._size + length + 1 > self._budget or len(self._messages) >= self._cap):
            self.ready.append((self._owners, self._messages))
            self._owners, self._messages, self._size = set(), [], 0
        self._owners.add(owner)
        self._messages.append(message)
        self._size += length + 1

    async def send_ready(self) -> None:
        while self.ready:
            owners, messages = self.ready.pop(0)
            reason = await self._send(messages)
            if reason is not None:
                for owner in owners:
                    self._failures.setdefault(owner, Outcome.reject(self._keys[owner], reason))

    async def flush(self) -> None:
        if self._messages:
            self.ready.append((self._owners, self._messages))
            self._owners, self._messages, self._size = set(), [], 0
        await self.send_ready()


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
        self.members_mode = cfg.group_mode == "members"
        self.capabilities = Capabilities(max_batch=max_events, max_concurrency=cfg.max_concurrency)
        self.encoder: Encoder = SegmentEncoder(self.members_mode)
        self.transport = transport or Transport(
            "segment",
            cfg.url,
            auth=httpx.BasicAuth(cfg.write_key.get_secret_value(), ""),
            timeout=cfg.timeout_seconds,
            limiter=RateLimiter(cfg.requests_per_second, 1.0),
            policy=policy or RetryPolicy(max_attempts=cfg.max_attempts),
            max_connections=cfg.max_concurrency,
        )
        self.view: SourceView | None = None
        # Accounts whose member calls this run carried all their traits and were acknowledged: every member
        # is linked already, so an existing member's own link call would repeat it. A user new to Segment
        # still gets its own, after its identify: its member call went out before the user existed
        # downstream, and a destination may only attach a contact it has (Intercom answers 404 "Contact Not
        # Found" to attaching an unknown one).
        self._linked: set[str] = set()
        self.memberless: list[str] = []  # accounts skipped for want of members (members mode, "skip")
        # Account deliveries in flight. The planner yields accounts before users and the engine starts
        # batches in that order, so a user batch waiting for this to reach zero is sent after every
        # account batch was answered: links go out after the traits they point to, and only when needed.
        self._accounts_busy = 0
        self._accounts_idle = asyncio.Event()
        self._accounts_idle.set()

    def bind_source(self, view: SourceView) -> None:
        self.view = view

    async def ensure_schema(self) -> None:
        return None  # Segment has no schema to create

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        if not self.members_mode:
            return await self._deliver(kind, batch)
        if kind is ObjectKind.USER:
            await self._accounts_idle.wait()
            return await self._deliver(kind, batch)
        self._accounts_busy += 1
        self._accounts_idle.clear()
        try:
            return await self._deliver(kind, batch)
        finally:
            self._accounts_busy -= 1
            if not self._accounts_busy:
                self._accounts_idle.set()

    async def _deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        failures: dict[int, Outcome] = {}
        written: dict[int, dict[str, FieldValue]] = {}  # what was recorded, when it differs from the plan
        keys = [change.key for change in batch]
        requests = _Requests(self._send, self.request_budget, self.max_events, failures, keys)
        now = orjson.dumps(_now())
        if not self.members_mode:
            await self._plain(batch, requests, failures, now)
        elif kind is ObjectKind.ACCOUNT:
            await self._accounts(batch, requests, failures, written, now)
        else:
            await self._users(batch, requests, failures, now)
        await requests.flush()
        outcomes = [
            failures.get(i) or Outcome(key, "ok", fields=written.get(i)) for i, key in enumerate(keys)
        ]
        if self.members_mode and kind is ObjectKind.ACCOUNT:
            self._note_linked(batch, outcomes)
        return outcomes

    async def _plain(
        self, batch: Sequence[Change], requests: _Requests, failures: dict[int, Outcome], now: bytes
    ) -> None:
        for i, change in enumerate(batch):
            try:
                requests.add(i, encode_message(change, now))
            except (ValueError, TypeError) as exc:
                failures[i] = Outcome.reject(change.key, f"not valid JSON for Segment: {exc}")
                continue
            if requests.ready:
                await requests.send_ready()

    def _require_view(self) -> SourceView:
        if self.view is None:
            raise RuntimeError("group_mode = 'members' needs a source view: call bind_source() first")
        return self.view

    async def _accounts(
        self,
        batch: Sequence[Change],
        requests: _Requests,
        failures: dict[int, Outcome],
        written: dict[int, dict[str, FieldValue]],
        now: bytes,
    ) -> None:
        """One group call per member per changed account, with the changed traits (Segment keeps the
        traits a call leaves out); accounts without members per ``memberless_accounts``."""
        view = self._require_view()
        index = {change.key: i for i, change in enumerate(batch)}
        with_members: set[int] = set()
        for account, rows in itertools.groupby(view.members(list(index)), itemgetter(0)):
            i = index[account]
            change = batch[i]
            with_members.add(i)
            try:
                traits = traits_json(change.fields)
            except (ValueError, TypeError) as exc:
                failures[i] = Outcome.reject(change.key, f"not valid JSON for Segment: {exc}")
                continue
            timestamp = timestamp_json(change.record, now)
            for _, user in rows:
                if i in failures:
                    break  # one member's message over 32 KB: the account is rejected, not half-sent
                mid = member_message_id(account, user, change.version, change.fields, change.salt)
                requests.add(i, encode_group(account, user, mid, timestamp, traits))
                if requests.ready:
                    await requests.send_ready()
        for i, change in enumerate(batch):
            if i in with_members:
                continue
            if self.cfg.memberless_accounts == "synthetic":
                try:
                    requests.add(i, encode_message(change, now))
                except (ValueError, TypeError) as exc:
                    failures[i] = Outcome.reject(change.key, f"not valid JSON for Segment: {exc}")
                if requests.ready:
                    await requests.send_ready()
            else:
                # Nothing is sent, and nothing is recorded as delivered: when a member appears its link
                # call carries all the account's traits; when the traits change, they are planned again.
                written[i] = {}
                self.memberless.append(change.key)

    def _note_linked(self, batch: Sequence[Change], outcomes: Sequence[Outcome]) -> None:
        for change, outcome in zip(batch, outcomes, strict=True):
            if outcome.status != "ok" or outcome.fields is not None or change.record is None:
                continue
            if set(change.fields) >= set(self.encoder.encode(change.record)):
                self._linked.add(change.key)

    async def _users(
        self, batch: Sequence[Change], requests: _Requests, failures: dict[int, Outcome], now: bytes
    ) -> None:
        """An identify for changed traits; a group call to the user's current account when the link
        changed (joined, moved, first sync), with all the account's current traits, after the identify."""
        links = {i: str(account) for i, change in enumerate(batch) if (account := self._link(change))}
        accounts = self._account_traits(set(links.values()))
        for i, change in enumerate(batch):
            traits = {k: v for k, v in change.fields.items() if k != GROUP_FIELD}
            try:
                if traits:
                    requests.add(i, encode_message(change, now, traits))  # before the link: see _linked
                account = links.get(i)
                if account is not None:
                    record, fields = accounts.get(account, (None, {}))
                    mid = link_message_id(change.key, account, change.version, fields, change.salt)
                    message = encode_group(
                        account, change.key, mid, timestamp_json(record, now), traits_json(fields)
                    )
                    requests.add(i, message)
            except (ValueError, TypeError) as exc:
                failures.setdefault(i, Outcome.reject(change.key, f"not valid JSON for Segment: {exc}"))
            if requests.ready:
                await requests.send_ready()

    def _link(self, change: Change) -> FieldValue:
        """The account this user change must be linked to with a call of its own, if any."""
        account = change.fields.get(GROUP_FIELD)
        if account is None or (account in self._linked and not change.is_new):
            return None
        return account

    def _account_traits(self, keys: Iterable[str]) -> dict[str, tuple[ObjectRecord, dict[str, FieldValue]]]:
        """The current traits of the accounts users link to; an account the source does not have is linked
        with no traits (the link is what matters; its traits arrive with its own row)."""
        wanted = sorted(keys)
        if not wanted:
            return {}
        records = self._require_view().records(ObjectKind.ACCOUNT, wanted)
        return {key: (record, self.encoder.encode(record)) for key, record in records.items()}

    async def _send(self, messages: list[bytes]) -> str | None:
        body = b'{"batch":[' + b",".join(messages) + b'],"context":' + _CONTEXT_JSON + b"}"
        try:
            await self.transport.request(
                "POST", "/v1/batch", content=body, headers={"Content-Type": "application/json"}
            )
        except PermanentError as exc:
            # A 400 rejects the whole request; our own checks should have caught it, so say what Segment said.
            return str(exc)
        return None

    async def aclose(self) -> None:
        if self.memberless:
            sample = ", ".join(self.memberless[:5]) + (" ..." if len(self.memberless) > 5 else "")
            log.warning(
                "segment: %d account(s) have no member users in the source, so no group call was sent "
                '(memberless_accounts = "skip"); each is linked when a user names it: %s',
                len(self.memberless),
                sample,
            )
        await self.transport.aclose()


__all__ = [
    "GROUP_FIELD",
    "MAX_EVENTS",
    "MAX_MESSAGE_BYTES",
    "SegmentConnector",
    "SegmentEncoder",
    "anonymous_group_id",
    "encode_message",
    "link_message_id",
    "member_message_id",
    "message_id",
]
