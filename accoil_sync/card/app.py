"""The card backend (ASGI): the data endpoints HubSpot calls, and the details page their link opens.

- ``GET /card/crm``      classic data-fetch JSON (``results``), what the legacy-card converter consumes
- ``GET /card/crm/v3``   the v3 card payload (``IntegratorCardPayloadResponse``)
- ``GET|POST /card/app`` compact JSON for the app card's ``hubspot.fetch``
- ``GET /card/details/{kind}/{key}?exp=&sig=`` the details page (a link we sign ourselves)

Every data request must carry a valid HubSpot signature; anything else gets 401 and no data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from accoil_sync.card.details import CSP, render_details, render_message
from accoil_sync.card.limits import MAX_TEXT, RECORD_ID_DIGITS, digits
from accoil_sync.card.signature import check_link, link_token, verify
from accoil_sync.card.store import CardReader
from accoil_sync.card.view import CardView, build_view, classic_json, compact_json, segment_table, v3_json
from accoil_sync.config.settings import Settings
from accoil_sync.telemetry import CARD_LATENCY, CARD_REQUESTS
from accoil_sync.traits.names import ObjectKind

log = logging.getLogger("accoil_sync.card")

LINK_TTL_SECONDS = 24 * 3600
# HubSpot names the record's type several ways depending on who calls: classic cards send
# associatedObjectType, the converter and app cards may send objectTypeId or the plural object name.
_KINDS: dict[str, ObjectKind] = {
    "contact": ObjectKind.USER,
    "contacts": ObjectKind.USER,
    "0-1": ObjectKind.USER,
    "company": ObjectKind.ACCOUNT,
    "companies": ObjectKind.ACCOUNT,
    "0-2": ObjectKind.ACCOUNT,
}


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class CardError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CardService:
    def __init__(
        self, settings: Settings, reader: CardReader, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.clock = clock
        secret = settings.serve.hubspot_client_secret
        self.secret = secret.get_secret_value() if secret else None
        self.hubspot = settings.destinations.hubspot
        self.segment_states = segment_table(settings.serve.segment_states)  # folded once, not per segment

    # ------------------------------------------------------------------------------------ request parts

    def public_uri(self, request: Request) -> str:
        """The URI HubSpot signed: the configured public URL (behind a proxy) or what the request says."""
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        query = request.scope.get("query_string", b"").decode("latin-1")
        if self.settings.serve.public_url:
            mount = request.scope.get("root_path", "")
            path = path[len(mount) :] if mount and path.startswith(mount) else path
        return self.base_url(request) + path + (f"?{query}" if query else "")

    def base_url(self, request: Request) -> str:
        if self.settings.serve.public_url:
            return self.settings.serve.public_url.rstrip("/")
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    async def authenticate(self, request: Request) -> bytes:
        if self.secret is None:
            raise CardError(
                503, "the card backend has no HubSpot client secret (serve.hubspot_client_secret)"
            )
        body = await request.body()
        verdict = verify(
            secret=self.secret,
            method=request.method,
            uri=self.public_uri(request),
            body=body,
            headers=request.headers,
            versions=self.settings.serve.signature_versions,
            now_ms=int(self.clock() * 1000),
        )
        if not verdict.ok:
            log.warning("card request refused: %s (%s %s)", verdict.reason, request.method, request.url.path)
            raise CardError(401, "invalid or missing HubSpot signature")
        return body

    @staticmethod
    def params(request: Request, body: bytes) -> dict[str, str]:
        params = dict(request.query_params)
        if body and request.method == "POST":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise CardError(400, "the request body is not JSON") from None
            if not isinstance(data, dict):
                raise CardError(400, "the request body must be a JSON object")
            params.update({str(k): str(v) for k, v in data.items() if v is not None})
        return params

    @staticmethod
    def text(params: Mapping[str, str], name: str) -> str | None:
        """An identifying value (our id, an email, a domain): bounded, or the request is bad."""
        value = params.get(name)
        if value is not None and len(value) > MAX_TEXT:
            raise CardError(400, f"{name} is longer than {MAX_TEXT} characters")
        return value or None

    def lookup(self, request: Request, params: Mapping[str, str]) -> CardView | None:
        raw = params.get("associatedObjectType") or params.get("objectTypeId") or params.get("objectType")
        if not raw or len(raw) > MAX_TEXT:
            raise CardError(400, "missing associatedObjectType (CONTACT or COMPANY)")
        kind = _KINDS.get(raw.strip().lower())
        if kind is None:
            raise CardError(
                400, f"unsupported object type {raw[:40]!r}: this card serves contacts and companies"
            )
        object_id = record_id(params)
        if kind is ObjectKind.USER:
            id_property, email, domain = self.hubspot.contact_id_property, self.text(params, "email"), None
        else:
            id_property, email, domain = self.hubspot.company_id_property, None, self.text(params, "domain")
        found = self.reader.find(
            kind,
            key=self.text(params, id_property),
            hubspot_id=None if object_id is None else str(object_id),
            email=email,
            domain=domain,
        )
        if found is None:
            return None
        return build_view(
            found,
            self.settings.profiles,
            self.segment_states,
            self.details_url(request, kind, found.key),
        )

    def details_url(self, request: Request, kind: ObjectKind, key: str) -> str:
        assert self.secret is not None
        expires = int(self.clock()) + LINK_TTL_SECONDS
        query = urlencode({"exp": expires, "sig": link_token(self.secret, kind.value, key, expires)})
        return f"{self.base_url(request)}/card/details/{kind.value}/{quote(key, safe='')}?{query}"

    # ------------------------------------------------------------------------------------------ routes

    async def crm(self, request: Request) -> Response:
        return await self._data(request, "crm", lambda v, p: classic_json(v, record_id(p)))

    async def crm_v3(self, request: Request) -> Response:
        return await self._data(request, "crm_v3", lambda v, p: v3_json(v))

    async def app(self, request: Request) -> Response:
        return await self._data(request, "app", lambda v, p: compact_json(v))

    async def _data(
        self,
        request: Request,
        endpoint: str,
        render: Callable[[CardView | None, Mapping[str, str]], dict[str, Any]],
    ) -> Response:
        started = time.perf_counter()
        try:
            body = await self.authenticate(request)
            params = self.params(request, body)
            view = self.lookup(request, params)
            response: Response = JSONResponse(
                render(view, params),
                headers={"Cache-Control": "no-store"},
            )
        except CardError as exc:
            response = JSONResponse({"error": exc.message}, status_code=exc.status)
        CARD_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        CARD_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response

    async def details(self, request: Request) -> Response:
        started = time.perf_counter()
        response = self._details(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        CARD_LATENCY.labels("details").observe(time.perf_counter() - started)
        CARD_REQUESTS.labels("details", str(response.status_code)).inc()
        return response

    def _details(self, request: Request) -> Response:
        if self.secret is None:
            return HTMLResponse(
                render_message("Not configured", "The card backend has no client secret."), 503
            )
        kind_raw, key = request.path_params["kind"], request.path_params["key"]
        if kind_raw not in ("user", "account"):
            return HTMLResponse(render_message("Not found", "Unknown object type."), 404)
        kind = ObjectKind(kind_raw)
        q = request.query_params
        if not check_link(self.secret, kind.value, key, q.get("exp", ""), q.get("sig", ""), self.clock()):
            return HTMLResponse(
                render_message("Link expired", "Open the card in HubSpot again for a fresh link."), 401
            )
        found = self.reader.find(kind, key=key)
        if found is None:
            return HTMLResponse(render_message("Not found", "No metrics are stored for this object."), 404)
        view = build_view(found, self.settings.profiles, self.segment_states, str(request.url))
        return HTMLResponse(render_details(view, self.reader.history(kind, key)))


def record_id(params: Mapping[str, str]) -> int | None:
    """The HubSpot record id the request names, if any: ASCII digits of int64 length, else a 400."""
    raw = params.get("associatedObjectId") or params.get("objectId")
    if raw is None:
        return None
    value = digits(raw, RECORD_ID_DIGITS)
    if value is None:
        raise CardError(400, "associatedObjectId must be a HubSpot record id (up to 20 ASCII digits)")
    return value


def card_routes(service: CardService) -> list[BaseRoute]:
    return [
        Route("/card/crm", service.crm, methods=["GET"]),
        Route("/card/crm/v3", service.crm_v3, methods=["GET"]),
        Route("/card/app", service.app, methods=["GET", "POST"]),
        Route("/card/details/{kind}/{key:path}", service.details, methods=["GET"]),
    ]
