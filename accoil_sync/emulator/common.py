"""What every emulated vendor shares: fault injection, rate-limit windows, request counters, auth checks.

Faults are drawn from a seeded ``random.Random``, so a failing test re-runs exactly.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send


@dataclass
class Faults:
    """Injected faults for one vendor. Rates are probabilities per request."""

    error_rate: float = 0.0  # share of requests answered with one of error_statuses
    error_statuses: tuple[int, ...] = (500, 502, 503)
    throttle_rate: float = 0.0  # share answered 429 although the limit is not reached (a "429 storm")
    latency_ms: tuple[float, float] = (0.0, 0.0)  # uniform extra latency
    slow_rate: float = 0.0  # share delayed by slow_seconds (past a client timeout)
    slow_seconds: float = 0.0
    drop_rate: float = 0.0  # share whose connection is dropped mid-response
    record_error_rate: float = 0.0  # share of batch inputs failed with a validation error
    revoked: bool = False  # every request answers 401 (a token revoked mid-run)
    # Scripted answers for the next requests, in order: an HTTP status, 0 = do the write and drop the answer,
    # -1 = answer normally (to aim a scripted fault at a later request).
    fail_next: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        data = dict(data)
        for key in ("error_statuses", "latency_ms"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class Window:
    """A fixed window of ``limit`` requests per ``seconds`` (HubSpot's and Intercom's 10-second windows)."""

    def __init__(self, limit: int | None, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.start = time.time()
        self.count = 0

    def hit(self) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, window reset as a Unix timestamp)."""
        now = time.time()
        if now - self.start >= self.seconds:
            self.start = now - ((now - self.start) % self.seconds)
            self.count = 0
        reset = self.start + self.seconds
        if self.limit is None:
            return True, 1_000_000, reset
        if self.count >= self.limit:
            return False, 0, reset
        self.count += 1
        return True, self.limit - self.count, reset


class RollingWindow:
    """At most ``limit`` requests in any trailing ``seconds`` (HubSpot's TEN_SECONDLY_ROLLING)."""

    def __init__(self, limit: int | None, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.hits: deque[float] = deque()

    def hit(self) -> tuple[bool, int, float]:
        now = time.time()
        while self.hits and self.hits[0] <= now - self.seconds:
            self.hits.popleft()
        if self.limit is None:
            return True, 1_000_000, now + self.seconds
        reset = (self.hits[0] if self.hits else now) + self.seconds
        if len(self.hits) >= self.limit:
            return False, 0, reset
        self.hits.append(now)
        return True, self.limit - len(self.hits), reset


class DroppedResponse(Response):
    """Starts a response, sends part of it, then dies: the client sees the connection drop."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": True})
        raise ConnectionResetError("emulator: connection dropped mid-response")


Handler = Callable[[Request], Awaitable[Response]]


class Vendor:
    """Base of the three vendor look-alikes: counters, faults and a ``guard`` around every handler."""

    name = "vendor"

    def __init__(self, seed: int = 0, faults: Faults | None = None) -> None:
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.requests: Counter[str] = Counter()  # "endpoint status" -> count
        self.operations: Counter[tuple[str, int]] = Counter()  # (operation, status) -> count

    def count(self, endpoint: str, status: int, operation: str | None = None) -> None:
        self.requests[f"{endpoint} {status}"] += 1
        self.operations[(operation or endpoint, status)] += 1

    @staticmethod
    def operation(request: Request, endpoint: str) -> str:
        """The operation a request performed, for the benchmarks' request mix: the route's name, prefixed
        with the object type when the path names one (HubSpot's ``/crm/v3/objects/{type}/batch/update`` is
        ``contacts/batch/update`` or ``companies/batch/update``). A handler may name it more precisely by
        setting ``request.state.operation``."""
        named = getattr(request.state, "operation", None)
        if named:
            return str(named)
        kind = request.path_params.get("type")
        return f"{kind}/{endpoint}" if kind else endpoint

    def counters(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        for key, n in self.requests.items():
            by_status[key.rsplit(" ", 1)[1]] += n
        return {
            "total": sum(self.requests.values()),
            "by_status": dict(by_status),
            "by_endpoint": dict(sorted(self.requests.items())),
            "by_operation": self.operation_counts(),
        }

    def operation_counts(self) -> dict[str, dict[str, int]]:
        """operation -> {"total": n, "<status>": n, ...}: what the vendor was asked to do, and how it answered."""
        out: dict[str, dict[str, int]] = {}
        for (operation, status), n in sorted(self.operations.items()):
            entry = out.setdefault(operation, {"total": 0})
            entry["total"] += n
            entry[str(status)] = n
        return out

    def unauthorized(self) -> Response:
        return JSONResponse({"message": "unauthorized"}, status_code=401)

    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def throttled(self, request: Request, endpoint: str) -> Response | None:
        """The vendor's own rate limit; None when the request may go on."""
        return None

    def error_response(self, status: int) -> Response:
        return JSONResponse({"message": f"emulated {status}"}, status_code=status)

    def throttle_response(self) -> Response:
        return JSONResponse({"message": "rate limited"}, status_code=429, headers={"Retry-After": "1"})

    def route(self, endpoint: str, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                response = await self._guard(request, endpoint, handler)
            except ClientDisconnect:
                # The client went away mid-request (killed, timed out): nginx's 499, nothing to answer.
                response = Response(status_code=499)
            self.count(endpoint, response.status_code, self.operation(request, endpoint))
            return response

        return guarded

    async def _guard(self, request: Request, endpoint: str, handler: Handler) -> Response:
        f = self.faults
        if f.latency_ms[1] > 0:
            await asyncio.sleep(self.rng.uniform(*f.latency_ms) / 1000)
        if f.revoked or not self.authorized(request):
            return self.unauthorized()
        if f.fail_next:
            status = f.fail_next.pop(0)
            if status == -1:
                return await handler(request)
            if status == 0:
                await handler(request)
                return DroppedResponse()
            return self.throttle_response() if status == 429 else self.error_response(status)
        if (limited := self.throttled(request, endpoint)) is not None:
            return limited
        roll = self.rng.random()
        if roll < f.throttle_rate:
            return self.throttle_response()
        roll -= f.throttle_rate
        if roll < f.error_rate:
            return self.error_response(self.rng.choice(f.error_statuses))
        roll -= f.error_rate
        if roll < f.slow_rate:
            await asyncio.sleep(f.slow_seconds)
        roll -= f.slow_rate
        if roll < f.drop_rate:
            # The write happens, the answer is lost: the nastiest case for idempotency.
            await handler(request)
            return DroppedResponse()
        return await handler(request)

    def reset(self) -> None:
        self.requests.clear()
        self.operations.clear()

    # What survives a restart when the emulator persists to SQLite (``--persist``).
    PERSISTENT: tuple[str, ...] = ()

    def snapshot(self) -> dict[str, Any]:
        return {name: _encode(getattr(self, name)) for name in self.PERSISTENT}

    def restore(self, data: dict[str, Any]) -> None:
        for name in self.PERSISTENT:
            if name in data:
                setattr(self, name, _decode(data[name]))

    def faults_dict(self) -> dict[str, Any]:
        return asdict(self.faults)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw else None


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def _encode(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return {"__set__": sorted(value)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__set__"}:
            return set(value["__set__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
