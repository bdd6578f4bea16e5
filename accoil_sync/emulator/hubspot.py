"""HubSpot CRM v3 look-alike: contacts and companies (batch upsert/update/read, single create/update/read,
search) and the properties API (properties, groups, options), with HubSpot's batch semantics, error bodies,
scopes and rate-limit headers.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accoil_sync.emulator.common import Faults, RollingWindow, Vendor, Window
from accoil_sync.emulator.hubspot_objects import ObjectsAPI
from accoil_sync.emulator.hubspot_properties import OBJECT_TYPE_IDS, builtin, error_body

TIER_LIMITS = {  # requests per 10 s per app, requests per day per account
    "free": (100, 250_000),
    "starter": (100, 250_000),
    "professional": (190, 625_000),
    "enterprise": (190, 1_000_000),
    "api_limit_increase": (250, 2_000_000),
}
SEARCH_PER_SECOND = 5
ALL_SCOPES = frozenset(
    f"crm.{area}.{obj}.{mode}"
    for area in ("objects", "schemas")
    for obj in ("contacts", "companies")
    for mode in ("read", "write")
)


class HubSpot(ObjectsAPI, Vendor):
    name = "hubspot"
    PERSISTENT = ("objects", "properties", "groups", "next_id", "daily_used", "index", "merged", "additional")

    def __init__(
        self,
        seed: int = 0,
        faults: Faults | None = None,
        tier: str | None = "professional",
        tokens: dict[str, frozenset[str]] | None = None,
    ) -> None:
        super().__init__(seed, faults)
        self.tier = tier
        per_10s, daily = TIER_LIMITS[tier] if tier else (None, None)
        self.window = RollingWindow(per_10s, 10.0)
        self.daily_limit = daily
        self.search_window = Window(SEARCH_PER_SECOND if tier else None, 1.0)
        self.tokens = tokens  # None: any bearer token, every scope
        self.refresh_tokens: set[str] | None = None  # None: any refresh token; else the ones not revoked
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.daily_used = 0
        self.next_id = 1001
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"contacts": {}, "companies": {}}
        # Unique-value property -> value -> object id, so that upserts do not scan every object.
        self.index: dict[str, dict[str, dict[str, str]]] = {"contacts": {}, "companies": {}}
        # Merged-away id -> the id that survived it; additional (secondary) email -> its contact's id.
        self.merged: dict[str, dict[str, str]] = {"contacts": {}, "companies": {}}
        self.additional: dict[str, str] = {}
        self.groups: dict[str, dict[str, dict[str, Any]]] = {
            t: {
                "contactinformation": {
                    "name": "contactinformation",
                    "label": "Contact information",
                    "displayOrder": 0,
                    "archived": False,
                }
            }
            for t in OBJECT_TYPE_IDS
        }
        self.properties: dict[str, dict[str, dict[str, Any]]] = {
            "contacts": {
                p["name"]: p
                for p in (
                    builtin("email", "Email", unique=True),
                    builtin("firstname", "First name"),
                    builtin("lastname", "Last name"),
                    builtin("hs_object_id", "Record ID", "number", "number", True),
                    builtin("hs_additional_emails", "Additional email addresses", "string", "textarea"),
                    builtin("hs_merged_object_ids", "Merged record IDs", "string", "text"),
                )
            },
            "companies": {
                p["name"]: p
                for p in (
                    builtin("name", "Name"),
                    builtin("domain", "Company domain name"),
                    builtin("hs_object_id", "Record ID", "number", "number", True),
                    builtin("hs_merged_object_ids", "Merged record IDs", "string", "text"),
                )
            },
        }

    # ----------------------------------------------------------------------------------------- plumbing

    def routes(self) -> list[Route]:
        # (method, path, counter name, handler, write scope? (None: no object type), schema scope?)
        table: list[tuple[str, str, str, Any, bool | None, bool]] = [
            ("POST", "/crm/v3/objects/{type}/batch/upsert", "batch/upsert", self.batch_upsert, None, False),
            ("POST", "/crm/v3/objects/{type}/batch/update", "batch/update", self.batch_update, None, False),
            ("POST", "/crm/v3/objects/{type}/batch/read", "batch/read", self.batch_read, False, False),
            ("POST", "/crm/v3/objects/{type}/search", "search", self.search, False, False),
            ("POST", "/crm/v3/objects/{type}/merge", "object/merge", self.merge_objects, True, False),
            ("DELETE", "/crm/v3/objects/{type}/{id}", "object/delete", self.delete_object, True, False),
            ("GET", "/crm/v3/objects/{type}/{id}", "object/get", self.get_object, False, False),
            ("PATCH", "/crm/v3/objects/{type}/{id}", "object/patch", self.patch_object, True, False),
            ("POST", "/crm/v3/objects/{type}", "object/create", self.create_object, True, False),
            ("GET", "/crm/v3/properties/{type}/groups", "groups/list", self.list_groups, False, True),
            ("POST", "/crm/v3/properties/{type}/groups", "groups/create", self.create_group, True, True),
            ("GET", "/crm/v3/properties/{type}/groups/{name}", "groups/get", self.get_group, False, True),
            (
                "POST",
                "/crm/v3/properties/{type}/batch/create",
                "properties/batch",
                self.batch_create_properties,
                True,
                True,
            ),
            ("GET", "/crm/v3/properties/{type}", "properties/list", self.list_properties, False, True),
            ("POST", "/crm/v3/properties/{type}", "properties/create", self.create_property, True, True),
            ("GET", "/crm/v3/properties/{type}/{name}", "properties/get", self.get_property, False, True),
            (
                "PATCH",
                "/crm/v3/properties/{type}/{name}",
                "properties/patch",
                self.patch_property,
                True,
                True,
            ),
            (
                "DELETE",
                "/crm/v3/properties/{type}/{name}",
                "properties/delete",
                self.archive_property,
                True,
                True,
            ),
        ]
        routes = [  # no bearer token needed; v1 is deprecated from 16 Feb 2027, 2026-03 is current
            Route("/oauth/v1/token", self.oauth_token, methods=["POST"]),
            Route("/oauth/2026-03/token", self.oauth_token, methods=["POST"]),
        ]
        for method, path, name, handler, write, schema in table:
            if write is not None:
                handler = self._typed(handler, write, schema)
            routes.append(Route(path, self.route(name, handler), methods=[method]))
        return routes

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header[7:] if header.startswith("Bearer ") and len(header) > 7 else None

    def authorized(self, request: Request) -> bool:
        token = self._token(request)
        return token is not None and (self.tokens is None or token in self.tokens)

    def unauthorized(self) -> Response:
        return JSONResponse(
            error_body(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ),
            status_code=401,
        )

    def error_response(self, status: int) -> Response:
        return JSONResponse(error_body(status, "INTERNAL_ERROR", "internal error"), status_code=status)

    def _rate_headers(self, remaining: int, reset: float) -> dict[str, str]:
        if self.window.limit is None:
            return {}
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(self.window.limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, (self.daily_limit or 0) - self.daily_used)),
        }

    def throttle_response(self, policy: str = "TEN_SECONDLY_ROLLING") -> Response:
        message = (
            "You have reached your daily limit."
            if policy == "DAILY"
            else f"You have reached your {policy.lower()} limit."
        )
        headers = self._rate_headers(0, time.time() + 10)
        return JSONResponse(
            {
                "status": "error",
                "message": message,
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": policy,
                "requestId": str(uuid.uuid4()),
            },
            status_code=429,
            headers=headers,
        )

    def throttled(self, request: Request, endpoint: str) -> Response | None:
        if endpoint == "search":
            allowed, _, _ = self.search_window.hit()
            return None if allowed else self.throttle_response("SECONDLY")
        if self.daily_limit is not None and self.daily_used >= self.daily_limit:
            return self.throttle_response("DAILY")
        allowed, remaining, reset = self.window.hit()
        if not allowed:
            return self.throttle_response()
        self.daily_used += 1
        request.state.rate_headers = self._rate_headers(remaining, reset)
        return None

    def _reply(self, request: Request, body: Any, status: int = 200) -> Response:
        headers = getattr(request.state, "rate_headers", {})
        return JSONResponse(body, status_code=status, headers=headers)

    def _typed(self, handler: Any, write: bool, schema: bool = False) -> Any:
        """Resolve the object type and check the token's scope before ``handler(request, kind)``."""

        async def typed(request: Request) -> Response:
            kind, denied = self._object_type(request, write=write, schema=schema)
            if denied is not None or kind is None:
                return denied or self.error_response(500)
            return await handler(request, kind)  # type: ignore[no-any-return]

        return typed

    def _object_type(
        self, request: Request, write: bool, schema: bool = False
    ) -> tuple[str | None, Response | None]:
        kind = request.path_params["type"]
        kind = {"0-1": "contacts", "0-2": "companies", "contact": "contacts", "company": "companies"}.get(
            kind, kind
        )
        if kind not in OBJECT_TYPE_IDS:
            return None, self._reply(
                request, error_body(400, "VALIDATION_ERROR", f"Unknown object type {kind}"), 400
            )
        scope = f"crm.{'schemas' if schema else 'objects'}.{kind}.{'write' if write else 'read'}"
        token = self._token(request)
        scopes = ALL_SCOPES if self.tokens is None else self.tokens.get(token or "", frozenset())
        if scope not in scopes:
            body = error_body(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this "
                "call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]},
                    }
                ],
            )
            return None, self._reply(request, body, 403)
        return kind, None

    async def oauth_token(self, request: Request) -> Response:
        """OAuth token endpoint (refresh grant): a 30-minute access token for a refresh token."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if (
            form.get("grant_type") != "refresh_token"
            or not form.get("refresh_token")
            or not form.get("client_id")
            or (self.refresh_tokens is not None and form["refresh_token"] not in self.refresh_tokens)
        ):
            self.count("oauth/token", 400)
            return JSONResponse(
                {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"},
                status_code=400,
            )
        self.count("oauth/token", 200)
        token = f"emu-oauth-{uuid.uuid4().hex[:16]}"
        if self.tokens is not None:
            self.tokens[token] = ALL_SCOPES
        return JSONResponse(
            {
                "access_token": token,
                "refresh_token": form["refresh_token"],
                "expires_in": 1800,
                "token_type": "bearer",
            }
        )

    def seed_messy(self, users: list[dict[str, Any]], accounts: list[dict[str, Any]]) -> dict[str, Any]:
        """A portal that existed before accoil-sync (see ``hubspot_messy``)."""
        from accoil_sync.emulator.hubspot_messy import seed

        return seed(self, users, accounts)

    def state(self) -> dict[str, Any]:
        return {
            "contacts": {o["id"]: o["properties"] for o in self.objects["contacts"].values()},
            "companies": {o["id"]: o["properties"] for o in self.objects["companies"].values()},
            "properties": {
                k: sorted(
                    n
                    for n in v
                    if n.startswith("accoil")
                    or (
                        n not in ("email", "firstname", "lastname", "name", "domain")
                        and not n.startswith("hs_")
                    )
                )
                for k, v in self.properties.items()
            },
            "daily_used": self.daily_used,
            "requests": self.counters(),
        }
