"""HubSpot request signatures (v3, and v2 when configured) and our own signed details links.

v3: base64(HMAC-SHA256(client_secret, METHOD + URI + body + timestamp)), the timestamp in ms and no older
than five minutes. HubSpot signs the URI with a fixed set of percent-escapes decoded, so the same escapes
are decoded here before hashing. ``hubspot-api-client``'s helper is not used: it raises on a stale
timestamp, accepts any future one and decodes nothing -- three ways to turn a bad request into a 500 or
a pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from accoil_sync.card.limits import EXPIRY_DIGITS, TIMESTAMP_DIGITS, digits

MAX_AGE_MS = 5 * 60 * 1000  # HubSpot: reject requests older than five minutes
MAX_FUTURE_MS = 60 * 1000  # clock skew tolerated the other way; a far-future stamp would never go stale

V3_HEADER = "x-hubspot-signature-v3"
TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
V2_HEADER = "x-hubspot-signature"
VERSION_HEADER = "x-hubspot-signature-version"

_V3_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE_RE = re.compile("|".join(_V3_ESCAPES), re.IGNORECASE)


def decode_uri_v3(uri: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _V3_ESCAPES[m.group(0).upper()], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = (method.upper() + decode_uri_v3(uri)).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256((secret + method.upper() + uri).encode() + body).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str  # why not (for the log; the client only ever gets a plain 401)


def verify(
    *,
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    versions: Collection[str] = ("v3",),
    now_ms: int | None = None,
) -> Verdict:
    """Check a request HubSpot says it sent. ``headers`` must be case-insensitive (Starlette's are)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if "v3" in versions and (given := headers.get(V3_HEADER)):
        stamp = headers.get(TIMESTAMP_HEADER, "")
        stamp_ms = digits(stamp, TIMESTAMP_DIGITS)
        if stamp_ms is None:
            return Verdict(False, "v3 signature without a valid X-HubSpot-Request-Timestamp")
        age = now_ms - stamp_ms
        if age > MAX_AGE_MS:
            return Verdict(False, f"timestamp is {age // 1000} s old (limit {MAX_AGE_MS // 1000} s)")
        if -age > MAX_FUTURE_MS:
            return Verdict(False, f"timestamp is {-age // 1000} s in the future")
        expected = sign_v3(secret, method, uri, body, stamp)
        if hmac.compare_digest(expected.encode(), given.strip().encode()):
            return Verdict(True, "v3")
        return Verdict(False, "v3 signature does not match")
    if "v2" in versions and (given := headers.get(V2_HEADER)):
        if headers.get(VERSION_HEADER, "v2").lower() != "v2":
            return Verdict(False, f"unsupported signature version {headers.get(VERSION_HEADER)!r}")
        expected = sign_v2(secret, method, uri, body)
        if hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
            return Verdict(True, "v2")
        return Verdict(False, "v2 signature does not match")
    wanted = " or ".join(f"{v} ({V3_HEADER if v == 'v3' else V2_HEADER})" for v in versions)
    return Verdict(False, f"no signature; expected {wanted}")


# ----------------------------------------------------------------------------------- details links


def link_token(secret: str, kind: str, key: str, expires: int) -> str:
    """A details link HubSpot cannot sign for us (the user's browser opens it): we sign it ourselves."""
    message = f"details\n{kind}\n{key}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def check_link(secret: str, kind: str, key: str, expires: str, token: str, now: float | None = None) -> bool:
    until = digits(expires, EXPIRY_DIGITS)
    if until is None or until < (time.time() if now is None else now) or not token.isascii():
        return False
    return hmac.compare_digest(link_token(secret, kind, key, until).encode(), token.encode())
