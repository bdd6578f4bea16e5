"""What the card endpoints accept before doing any work: numbers as plain ASCII digits of a bounded length,
and request bodies no larger than HubSpot itself sends.

``str.isdigit`` is not enough: it is true for ``'²'`` and other Unicode digits that ``int()`` then
refuses, and ``int()`` of a 5,000-digit string raises (CPython caps int/str conversion at 4,300 digits).
Either would be a 500 for what is only a bad request.
"""

from __future__ import annotations

from typing import Any

import orjson

# HubSpot app cards: "request and response payloads <= 1 MB each" (hubspot.fetch; docs/guides/crm/
# public-apps/fetching-data). Classic card fetches are GETs with no body at all.
MAX_BODY_BYTES = 1024 * 1024
TIMESTAMP_DIGITS = 16  # ms since 1970 are 13 digits until the year 2286
RECORD_ID_DIGITS = 20  # HubSpot record ids are 64-bit integers (19 digits)
EXPIRY_DIGITS = 12  # our own link expiry, seconds since 1970
MAX_TEXT = 512  # an id property, email or domain longer than this is not one


def digits(value: str | None, max_len: int) -> int | None:
    """``value`` as a non-negative int if it is 1..max_len ASCII digits, else None."""
    if value is None or not 0 < len(value) <= max_len or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _reply(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        "body": orjson.dumps({"error": message}),
    }


class BodyLimit:
    """ASGI middleware: refuse a body over ``max_bytes`` (413) before any route sees the request.

    A declared Content-Length is checked first; a chunked body is read up to the limit and no further,
    then handed to the route whole, so nothing reads an unbounded body.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", ()) if k == b"content-length"]
        if declared:
            size = digits(declared[0].decode("latin-1"), 20)
            if size is None or len(declared) > 1:
                await self._refuse(send, 400, "malformed Content-Length")
                return
            if size > self.max_bytes:
                await self._refuse(send, 413, self._too_large())
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: no one to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes // 1024} KiB"

    @staticmethod
    async def _refuse(send: Any, status: int, message: str) -> None:
        start = _reply(status, message)
        body = start.pop("body")
        start["headers"].append((b"content-length", str(len(body)).encode()))
        await send(start)
        await send({"type": "http.response.body", "body": body})
