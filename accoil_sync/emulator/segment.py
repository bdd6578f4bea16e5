"""Segment HTTP Tracking API look-alike: /v1/identify, /v1/group, /v1/batch.

Like the real one it answers 200 to nearly everything and silently drops what it will not accept (no
userId/anonymousId, more than 2,500 events in a batch, a messageId seen in the last 24 hours); the drops
are visible in ``state()["dropped"]``, as Segment's debugger would show them.

It also shows what a workspace owner would look at: which users each group call linked to which group
(``members``), and the tracked users the accepted calls add up to, counted as Segment bills MTUs: unique
userIds plus unique anonymousIds never seen with a userId (segment-docs
``src/guides/usage-and-billing/mtus-and-throughput.md``, "How does Segment calculate MTUs?").
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter, OrderedDict
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accoil_sync.emulator.common import Faults, Vendor, Window

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
DEDUP_SECONDS = 24 * 3600
MAX_KEPT = 200_000  # bounded memory: oldest messages and drops are forgotten first (up to 220,000 kept)


class Segment(Vendor):
    name = "segment"
    PERSISTENT = (
        "users",
        "groups",
        "members",
        "user_ids",
        "anonymous_ids",
        "associated",
        "messages",
        "dropped",
        "seen",
        "duplicates",
        "largest_batch",
    )

    def __init__(
        self, seed: int = 0, faults: Faults | None = None, requests_per_second: int | None = 1000
    ) -> None:
        super().__init__(seed, faults)
        self.window = Window(requests_per_second, 1.0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}  # groupId -> the userIds (or anonymousIds) grouped into it
        self.user_ids: set[str] = set()
        self.anonymous_ids: set[str] = set()
        self.associated: set[str] = set()  # anonymousIds seen with a userId: not a tracked user of their own
        self.messages: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.seen: OrderedDict[str, float] = OrderedDict()
        self.duplicates = 0
        self.largest_batch = 0
        # Accepted messages by call ("group/user" or "group/anonymous" for group calls): a /v1/batch request
        # is one operation, so the request mix alone does not show what the batches carried.
        self.message_types: Counter[str] = Counter()

    def restore(self, data: dict[str, Any]) -> None:
        super().restore(data)
        self.seen = OrderedDict(self.seen)  # the JSON snapshot is a plain dict, still in insertion order

    def routes(self) -> list[Route]:
        return [
            Route("/v1/batch", self.route("batch", self.batch), methods=["POST"]),
            Route("/v1/identify", self.route("identify", self.single("identify")), methods=["POST"]),
            Route("/v1/group", self.route("group", self.single("group")), methods=["POST"]),
        ]

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            try:
                return bool(base64.b64decode(header[6:]).decode().split(":", 1)[0])
            except ValueError:
                return False
        return True  # the write key may also be in the body; checked in the handler

    def unauthorized(self) -> Response:
        return JSONResponse({"success": False, "message": "Invalid write key"}, status_code=401)

    def throttled(self, request: Request, endpoint: str) -> Response | None:
        allowed, _, reset = self.window.hit()
        if allowed:
            return None
        wait = max(1, int(reset - time.time() + 0.999))
        return self.throttle_response(wait)

    def throttle_response(self, wait: int = 1) -> Response:
        return JSONResponse(
            {"success": False, "message": "Too Many Requests"},
            status_code=429,
            headers={"Retry-After": str(wait), "X-RateLimit-Reset": str(wait)},
        )

    def error_response(self, status: int) -> Response:
        return JSONResponse({"success": False, "message": "Internal Server Error"}, status_code=status)

    async def _parse(self, request: Request, limit: int) -> tuple[Any, Response | None]:
        raw = await request.body()
        if len(raw) > limit:
            return None, JSONResponse(
                {"success": False, "message": f"payload larger than {limit // 1024}KB"}, status_code=400
            )
        try:
            body = orjson.loads(raw)  # strict, as Segment is: NaN and Infinity are not JSON
        except ValueError:
            return None, JSONResponse({"success": False, "message": "Invalid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return None, JSONResponse({"success": False, "message": "Invalid JSON"}, status_code=400)
        if "authorization" not in request.headers and not body.get("writeKey"):
            return None, self.unauthorized()
        return body, None

    def single(self, kind: str) -> Any:
        async def handler(request: Request) -> Response:
            body, error = await self._parse(request, MAX_MESSAGE_BYTES)
            if error is not None:
                return error
            self._accept({**body, "type": kind}, {})
            return JSONResponse({"success": True})

        return handler

    async def batch(self, request: Request) -> Response:
        body, error = await self._parse(request, MAX_BATCH_BYTES)
        if error is not None:
            return error
        events = body.get("batch")
        if not isinstance(events, list):
            return JSONResponse({"success": False, "message": "batch must be an array"}, status_code=400)
        for event in events:
            if len(orjson.dumps(event)) > MAX_MESSAGE_BYTES:
                return JSONResponse(
                    {"success": False, "message": "a message is larger than 32KB"}, status_code=400
                )
        self.largest_batch = max(self.largest_batch, len(events))
        if len(events) > MAX_BATCH_EVENTS:
            # Segment's documented behaviour: 200, and the events are rejected.
            for event in events:
                self._drop(event, "batch_too_large")
            return JSONResponse({"success": True})
        shared = {k: body[k] for k in ("context", "integrations") if k in body}
        for event in events:
            self._accept(event, shared)
        return JSONResponse({"success": True})

    def _drop(self, event: Any, reason: str) -> None:
        self.dropped.append(
            {
                "reason": reason,
                "messageId": event.get("messageId") if isinstance(event, dict) else None,
                "type": event.get("type") if isinstance(event, dict) else None,
            }
        )
        if len(self.dropped) > MAX_KEPT + MAX_KEPT // 10:
            del self.dropped[:-MAX_KEPT]

    def _accept(self, event: dict[str, Any], shared: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind not in ("identify", "group", "track", "page", "screen", "alias"):
            self._drop(event, "invalid_type")
            return
        if not event.get("userId") and not event.get("anonymousId"):
            self._drop(event, "no_user_anon_id")
            return
        message_id = str(event.get("messageId") or uuid.uuid4())
        now = time.time()
        while self.seen and next(iter(self.seen.values())) < now - DEDUP_SECONDS:
            self.seen.popitem(last=False)
        if message_id in self.seen:
            self.duplicates += 1
            self._drop(event, "duplicate_message_id")
            return
        self.seen[message_id] = now
        message = {**shared, **event, "messageId": message_id}
        self.messages.append(message)
        if len(self.messages) > MAX_KEPT + MAX_KEPT // 10:
            # Trimmed a tenth at a time: trimming one per message moved the whole list each time (past
            # 200,000 messages the emulator spent most of a benchmark's time in memmove).
            del self.messages[:-MAX_KEPT]
        self._track(event)
        if kind == "group":
            self.message_types["group/user" if event.get("userId") else "group/anonymous"] += 1
        else:
            self.message_types[str(kind)] += 1
        traits = event.get("traits") or {}
        if kind == "group" and event.get("groupId"):
            who = event.get("userId") or event.get("anonymousId")
            self.members.setdefault(str(event["groupId"]), set()).add(str(who))
        if kind == "identify":
            target = self.users.setdefault(str(event.get("userId") or event.get("anonymousId")), {})
            target.update(traits)
        elif kind == "group" and event.get("groupId"):
            self.groups.setdefault(str(event["groupId"]), {}).update(traits)

    def _track(self, event: dict[str, Any]) -> None:
        user, anonymous = event.get("userId"), event.get("anonymousId")
        if user:
            self.user_ids.add(str(user))
        if anonymous:
            self.anonymous_ids.add(str(anonymous))
            if user:
                self.associated.add(str(anonymous))

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), "by_message": dict(sorted(self.message_types.items()))}

    def tracked_users(self) -> int:
        """MTUs as Segment counts them: unique userIds, plus unique anonymousIds not seen with a userId."""
        return len(self.user_ids) + len(self.anonymous_ids - self.associated)

    def state(self) -> dict[str, Any]:
        dropped: dict[str, int] = {}
        for d in self.dropped:
            dropped[d["reason"]] = dropped.get(d["reason"], 0) + 1
        return {
            "users": self.users,
            "groups": self.groups,
            "members": {group: sorted(who) for group, who in sorted(self.members.items())},
            "tracked_users": self.tracked_users(),
            "messages": len(self.messages),
            "duplicates_dropped": self.duplicates,
            "dropped": dropped,
            "largest_batch": self.largest_batch,
            "requests": self.counters(),
        }
