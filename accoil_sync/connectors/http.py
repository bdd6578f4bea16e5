"""HTTP plumbing every vendor connector shares: one httpx client, one rate limiter and one retry policy
per destination, and the mapping from a vendor's answer to the action it calls for.

- 2xx: done. 429, 408, 423, 5xx, timeouts, dropped connections: ``RetryableError`` (honouring
  ``Retry-After`` or the vendor's reset header; 423 Locked waits at least 2 s). 401/403:
  ``DestinationUnavailable`` at once. Any other 4xx: ``PermanentError`` carrying the vendor's own reason.
  Never retried: validation errors.
- SDK retries stay off everywhere so that policies never stack; this module is the only retry loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from accoil_sync import __version__
from accoil_sync.errors import DestinationUnavailable, PermanentError, RetryableError
from accoil_sync.telemetry import API_CALLS, RETRIES, THROTTLED

log = logging.getLogger("accoil_sync.http")
T = TypeVar("T")
USER_AGENT = f"accoil-sync/{__version__}"
MAX_REASON = 600
# HubSpot answers 423 Locked to high-volume batch writes that come too close together and asks for at
# least 2 s between them (/work/shared/reference/hubspot.md, "Partial failures").
LOCKED_WAIT = 2.0
# Set on a request an httpx.Auth sends for itself (an OAuth token refresh): outside the API's rate window,
# and its answer is the auth flow's to read, not the hooks' to classify.
AUTH_REQUEST = "accoil_sync.auth_request"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 60.0
    max_retry_after: float = 300.0  # a vendor asking for longer than this is treated as down
    unavailable_after: int = 3  # consecutive batches that exhausted their retries -> stop the destination


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def reason_of(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:MAX_REASON] if text else response.reason_phrase


def classify(vendor: str, response: httpx.Response, retry_after: float | None = None) -> Exception | None:
    """The exception a response calls for, or None for success."""
    status = response.status_code
    if status < 300:
        return None
    reason = reason_of(response)
    if status in (401, 403):
        return DestinationUnavailable(
            f"{vendor} refused the credentials ({status}): {reason}. Check the token and its scopes.",
            status=status,
            vendor_reason=reason,
        )
    if status == 423:
        hinted = parse_retry_after(response.headers.get("retry-after"))
        return RetryableError(
            f"{vendor} answered 423 (locked): {reason}",
            status=status,
            vendor_reason=reason,
            retry_after=max(LOCKED_WAIT, hinted or 0.0),
        )
    if status == 429 or status == 408 or status >= 500:
        wait = (
            retry_after if retry_after is not None else parse_retry_after(response.headers.get("retry-after"))
        )
        return RetryableError(
            f"{vendor} answered {status}: {reason}", status=status, vendor_reason=reason, retry_after=wait
        )
    return PermanentError(
        f"{vendor} rejected the request ({status}): {reason}", status=status, vendor_reason=reason
    )


class RateLimiter:
    """At most ``rate`` requests in any ``period`` seconds (a sliding log), as the vendors count them.

    HubSpot's limit is a rolling 10-second window and Intercom's a fixed one; a sliding log satisfies
    both: a full window's worth may go at once, then one request each time the oldest leaves the window.
    (A token bucket with the same numbers would let up to twice the limit into one window and earn 429s.)
    The vendor's headers correct it: a smaller published limit shrinks it, ``remaining = 0`` pauses it.
    """

    def __init__(self, rate: float | None, period: float = 1.0) -> None:
        self.rate = int(rate) if rate else None
        self.period = period
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0  # monotonic
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if self.blocked_until > now:
                    await asyncio.sleep(self.blocked_until - now)
                    continue
                if self.rate is None:
                    return
                while self.sent and self.sent[0] <= now - self.period:
                    self.sent.popleft()
                if len(self.sent) < self.rate:
                    self.sent.append(now)
                    return
                await asyncio.sleep(self.sent[0] + self.period - now)

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` (after a 429, or when the headers say the window is spent)."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    def observe(self, remaining: int | None, reset_in: float | None, limit: int | None = None) -> None:
        """Correct the log from the vendor's own count.

        Requests we did not make (an earlier run, another integration on the same app) are in the vendor's
        window but not in our log. They are entered as if made just now: the cautious guess, since we cannot
        know when they leave the window. (Spreading them over the window was measured to earn 429s after a
        run that ended in a burst, and each 429 costs a whole window.)
        """
        if limit and self.rate and limit < self.rate:
            self.rate = limit
        if remaining is None:
            return
        if self.rate:
            now = time.monotonic()
            while self.sent and self.sent[0] <= now - self.period:
                self.sent.popleft()
            unseen = min(self.rate - remaining - len(self.sent), self.rate - len(self.sent))
            self.sent.extend([now] * max(0, unseen))
        if remaining <= 0 and reset_in is not None:
            self.pause(reset_in)


class Transport:
    """One destination's HTTP client + limiter + retry loop.

    The limiter and the error classification sit in the client's event hooks, so every request made with
    ``client`` -- by ``request`` here, or by a vendor SDK handed the same client -- waits its turn, feeds the
    vendor's rate-limit headers back, and turns a non-2xx answer into the error that says what to do.
    ``call`` wraps any coroutine (an SDK call, say) in the one retry policy.
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        max_connections: int = 16,
        client: httpx.AsyncClient | None = None,
        observe: Callable[[httpx.Response], float | None] | None = None,
    ) -> None:
        self.vendor = vendor
        self.limiter = limiter or RateLimiter(None)
        self.policy = policy or RetryPolicy()
        self.observe = observe
        self.client = client or httpx.AsyncClient(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self.client.event_hooks["request"].append(self._before)
        self.client.event_hooks["response"].append(self._after)
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self._exhausted_in_a_row = 0
        self._rng = random.Random()
        self._calls = API_CALLS.labels(vendor)

    async def _before(self, request: httpx.Request) -> None:
        if not request.extensions.get(AUTH_REQUEST):
            await self.limiter.acquire()
        self.requests += 1
        self._calls.inc()

    async def _after(self, response: httpx.Response) -> None:
        log.debug(
            "%s %s %s -> %s",
            self.vendor,
            response.request.method,
            response.request.url.path,
            response.status_code,
        )
        if response.request.extensions.get(AUTH_REQUEST):
            return
        if response.status_code >= 300:
            await response.aread()  # the error body is the vendor's reason; observers may read it too
        hinted = self.observe(response) if self.observe else None
        if response.status_code < 300:
            return
        error = classify(self.vendor, response, hinted)
        if error is None:
            return
        if response.status_code == 429:
            self.throttled += 1
            THROTTLED.labels(self.vendor).inc()
            if isinstance(error, RetryableError):
                self.limiter.pause(error.retry_after if error.retry_after is not None else 1.0)
        raise error

    async def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        """Send with the shared policy; returns a 2xx response or raises the classified error."""
        return await self.call(lambda: self.client.request(method, url, **kwargs))  # type: ignore[arg-type]

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` (which sends through ``client``) under the retry policy."""

        async def attempt() -> T:
            try:
                return await op()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise RetryableError(
                    f"{self.vendor}: {type(exc).__name__}: {exc or 'connection failed'}"
                ) from exc

        try:
            async for try_ in AsyncRetrying(
                stop=stop_after_attempt(self.policy.max_attempts),
                wait=self._wait,
                retry=retry_if_exception_type(RetryableError),
                before_sleep=self._count_retry,
                reraise=True,
            ):
                with try_:
                    result = await attempt()
            self._exhausted_in_a_row = 0
            return result
        except RetryableError as exc:
            self._exhausted_in_a_row += 1
            if self._exhausted_in_a_row >= self.policy.unavailable_after:
                raise DestinationUnavailable(
                    f"{self.vendor} unreachable: {self._exhausted_in_a_row} requests in a row failed after "
                    f"{self.policy.max_attempts} attempts each; last: {exc}",
                    status=exc.status,
                    vendor_reason=exc.vendor_reason,
                ) from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        exponent = float(2 ** (state.attempt_number - 1))
        backoff = min(self.policy.max_wait, self.policy.initial_wait * exponent)
        backoff *= 0.75 + 0.5 * self._rng.random()  # jitter, so that parallel batches do not retry in step
        hinted: float | None = exc.retry_after if isinstance(exc, RetryableError) else None
        if hinted is not None:
            if hinted > self.policy.max_retry_after:
                raise DestinationUnavailable(f"{self.vendor} asks to wait {hinted:.0f}s: {exc}")
            return max(hinted, min(backoff, self.policy.max_wait))
        return backoff

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        RETRIES.labels(self.vendor).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.debug("%s: retry %d after %s", self.vendor, state.attempt_number, exc)

    async def aclose(self) -> None:
        await self.client.aclose()
