"""Intercom REST API look-alike: contacts, companies, data attributes and tags, with Intercom's version
header, search indexing lag, case-insensitive email search, 409 on duplicates, attribute rules (null is
"unknown", "" is refused for numbers and dates), bulk tagging, merged and deleted contacts, and 10-second
rate-limit windows. ``seed_messy`` makes a workspace that already holds data (see its docstring)."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accoil_sync.emulator import intercom_messy
from accoil_sync.emulator.common import Faults, Vendor, Window, json_body
from accoil_sync.emulator.intercom_definitions import Definitions, error_list


def _hex_id(n: int) -> str:
    return f"{n:024x}"


def _version(request: Request) -> tuple[int, int]:
    raw = request.headers.get("intercom-version", "2.11")  # an app's default version when no header is sent
    try:
        major, minor = raw.split(".")
        return int(major), int(minor)
    except ValueError:
        return (0, 0)


class Intercom(Definitions, Vendor):
    name = "intercom"
    PERSISTENT = (
        "seq",
        "contacts",
        "companies",
        "attributes",
        "tags",
        "contact_tags",
        "company_tags",
        "contact_companies",
        "merged",
    )

    def __init__(
        self,
        seed: int = 0,
        faults: Faults | None = None,
        requests_per_10s: int | None = 1666,
        search_lag_seconds: float = 60.0,
        tokens: set[str] | None = None,
    ) -> None:
        super().__init__(seed, faults)
        self.window = Window(requests_per_10s, 10.0)
        self.search_lag_seconds = search_lag_seconds
        self.tokens = tokens
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.seq = 1
        self.contacts: dict[str, dict[str, Any]] = {}
        self.companies: dict[str, dict[str, Any]] = {}
        self.attributes: dict[str, dict[str, dict[str, Any]]] = {"contact": {}, "company": {}}
        self.tags: dict[str, dict[str, Any]] = {}
        self.contact_tags: dict[str, set[str]] = {}
        self.company_tags: dict[str, set[str]] = {}
        self.contact_companies: dict[str, set[str]] = {}
        self.merged: dict[str, str] = {}  # merged contact id -> the contact it was merged into

    def _next(self) -> str:
        self.seq += 1
        return _hex_id(self.seq)

    def routes(self) -> list[Route]:
        r = self.route
        return [
            Route("/contacts", r("contacts/create", self.create_contact), methods=["POST"]),
            Route("/contacts/search", r("contacts/search", self.search_contacts), methods=["POST"]),
            Route(
                "/contacts/find_by_external_id/{external_id:path}",
                r("contacts/find_by_external_id", self.find_by_external_id),
                methods=["GET"],
            ),
            Route("/contacts/{id}", r("contacts/get", self.get_contact), methods=["GET"]),
            Route("/contacts/{id}", r("contacts/update", self.update_contact), methods=["PUT"]),
            Route(
                "/contacts/{id}/companies",
                r("contacts/attach_company", self.attach_company),
                methods=["POST"],
            ),
            Route(
                "/contacts/{id}/companies",
                r("contacts/list_companies", self.list_contact_companies),
                methods=["GET"],
            ),
            Route("/contacts/{id}/tags", r("contacts/tag", self.tag_contact), methods=["POST"]),
            Route(
                "/contacts/{id}/tags/{tag_id}", r("contacts/untag", self.untag_contact), methods=["DELETE"]
            ),
            Route(
                "/contacts/{id}/companies/{company_id}",
                r("contacts/detach_company", self.detach_company),
                methods=["DELETE"],
            ),
            Route(
                "/companies", r("companies/create_or_update", self.create_or_update_company), methods=["POST"]
            ),
            Route("/companies", r("companies/retrieve", self.retrieve_company), methods=["GET"]),
            Route("/companies/{id}", r("companies/get", self.get_company), methods=["GET"]),
            Route("/data_attributes", r("data_attributes/list", self.list_attributes), methods=["GET"]),
            Route("/data_attributes", r("data_attributes/create", self.create_attribute), methods=["POST"]),
            Route("/tags", r("tags/create", self.tags_post), methods=["POST"]),
            Route("/tags", r("tags/list", self.list_tags), methods=["GET"]),
        ]

    # -------------------------------------------------------------------------------------- plumbing

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        return bool(token) and (self.tokens is None or token in self.tokens)

    def unauthorized(self) -> Response:
        return error_list(401, "unauthorized", "Access Token Invalid")

    def error_response(self, status: int) -> Response:
        code = {500: "server_error", 502: "bad_gateway", 503: "service_unavailable"}.get(
            status, "server_error"
        )
        return error_list(status, code, "emulated server error")

    def _limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        if self.window.limit is None:
            return {}
        return {
            "X-RateLimit-Limit": str(self.window.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset)),
        }  # a Unix timestamp, not seconds to wait

    def throttle_response(self) -> Response:
        response = error_list(429, "rate_limit_exceeded", "The rate limit for the App has been exceeded")
        response.headers.update(self._limit_headers(0, self.window.start + self.window.seconds))
        return response

    def throttled(self, request: Request, endpoint: str) -> Response | None:
        allowed, remaining, reset = self.window.hit()
        if not allowed:
            return self.throttle_response()
        request.state.limit_headers = self._limit_headers(remaining, reset)
        return None

    def _reply(self, request: Request, body: Any, status: int = 200) -> Response:
        return JSONResponse(body, status_code=status, headers=getattr(request.state, "limit_headers", {}))

    # ------------------------------------------------------------------------------------- shapes

    def _contact(self, c: dict[str, Any]) -> dict[str, Any]:
        tag_ids = sorted(self.contact_tags.get(c["id"], set()))
        company_ids = sorted(self.contact_companies.get(c["id"], set()))
        return {
            "type": "contact",
            "id": c["id"],
            "workspace_id": "emu",
            "external_id": c.get("external_id"),
            "role": c.get("role", "user"),
            "email": c.get("email"),
            "name": c.get("name"),
            "created_at": int(c["created"]),
            "updated_at": int(c["updated"]),
            "custom_attributes": dict(c["custom_attributes"]),
            "tags": {
                "type": "list",
                "data": [{"type": "tag", "id": t, "url": f"/tags/{t}"} for t in tag_ids],
                "url": f"/contacts/{c['id']}/tags",
                "total_count": len(tag_ids),
                "has_more": False,
            },
            "companies": {
                "type": "list",
                "data": [{"type": "company", "id": i, "url": f"/companies/{i}"} for i in company_ids],
                "url": f"/contacts/{c['id']}/companies",
                "total_count": len(company_ids),
                "has_more": False,
            },
        }

    def _company(self, c: dict[str, Any]) -> dict[str, Any]:
        tag_ids = sorted(self.company_tags.get(c["id"], set()))
        users = sum(1 for ids in self.contact_companies.values() if c["id"] in ids)
        return {
            "type": "company",
            "id": c["id"],
            "company_id": c["company_id"],
            "app_id": "emu",
            "name": c.get("name"),
            "created_at": int(c["created"]),
            "updated_at": int(c["updated"]),
            "user_count": users,
            "session_count": 0,
            "monthly_spend": 0,
            "custom_attributes": dict(c["custom_attributes"]),
            "tags": {
                "type": "tag.list",
                "tags": [{"type": "tag", "id": t, "name": self.tags[t]["name"]} for t in tag_ids],
            },
            "segments": {"type": "segment.list", "segments": []},
            **({"website": c["website"]} if c.get("website") else {}),  # the spec's website is a string
        }

    # ------------------------------------------------------------------------------------- contacts

    def _duplicate(self, body: dict[str, Any]) -> dict[str, Any] | None:
        for c in self.contacts.values():
            if body.get("external_id") and c.get("external_id") == body["external_id"]:
                return c
            if body.get("email") and c.get("email") and c["email"].lower() == str(body["email"]).lower():
                return c
        return None

    async def create_contact(self, request: Request) -> Response:
        body = await json_body(request) or {}
        if not any(body.get(k) for k in ("email", "external_id", "role")):
            return error_list(400, "parameter_not_found", "requires email, external_id or role")
        if body.get("email") and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(body["email"])):
            return error_list(400, "parameter_invalid", "Email address is invalid")
        if (bad := self._check_attributes("contact", body.get("custom_attributes"))) is not None:
            return bad
        if (existing := self._duplicate(body)) is not None:
            return error_list(
                409, "conflict", f"A contact matching those details already exists with id={existing['id']}"
            )
        now = time.time()
        contact = {
            "id": self._next(),
            "external_id": body.get("external_id"),
            "email": body.get("email"),
            "role": body.get("role", "user"),
            "name": body.get("name"),
            "created": now,
            "updated": now,
            "custom_attributes": {},
        }
        self._apply(contact["custom_attributes"], body.get("custom_attributes"))
        self.contacts[contact["id"]] = contact
        return self._reply(request, self._contact(contact))

    async def get_contact(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        if contact is None:
            return error_list(404, "not_found", "User Not Found")
        return self._reply(request, self._contact(contact))

    async def update_contact(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        if contact is None:
            return error_list(404, "not_found", "User Not Found")
        body = await json_body(request) or {}
        if (bad := self._check_attributes("contact", body.get("custom_attributes"))) is not None:
            return bad
        for key in ("email", "name", "external_id", "role"):
            if body.get(key) is not None:
                contact[key] = body[key]
        self._apply(contact["custom_attributes"], body.get("custom_attributes"))
        contact["updated"] = time.time()
        return self._reply(request, self._contact(contact))

    async def find_by_external_id(self, request: Request) -> Response:
        if _version(request) < (2, 13):
            return error_list(
                404, "not_found", "Resource Not Found (find_by_external_id needs Intercom-Version 2.13+)"
            )
        external_id = request.path_params["external_id"]
        for contact in self.contacts.values():
            if contact.get("external_id") == external_id and contact.get("role") == "user":
                return self._reply(request, self._contact(contact))
        return error_list(404, "not_found", "User Not Found")

    async def search_contacts(self, request: Request) -> Response:
        body = await json_body(request) or {}
        query = body.get("query") or {}
        filters = query.get("value") if query.get("operator") in ("AND", "OR") else [query]
        mode = query.get("operator", "AND")
        indexed_before = time.time() - self.search_lag_seconds

        def match(c: dict[str, Any], f: dict[str, Any]) -> bool:
            value = (
                c.get(f.get("field", ""))
                if not str(f.get("field", "")).startswith("custom_attributes.")
                else c["custom_attributes"].get(f["field"].split(".", 1)[1])
            )
            wanted = f.get("value")
            if f.get("field") == "email":
                # Intercom matches emails case-insensitively (its search lowercases both sides).
                value = str(value).lower() if value is not None else None
                wanted = [str(w).lower() for w in wanted] if isinstance(wanted, list) else str(wanted).lower()
            if f.get("operator") == "IN":
                return value in (wanted or [])
            return value == wanted

        results = []
        for c in self.contacts.values():
            if c["created"] > indexed_before:
                continue  # Intercom's search index lags its writes
            hits = [match(c, f) for f in (filters or []) if isinstance(f, dict)]
            if hits and (all(hits) if mode == "AND" else any(hits)):
                results.append(self._contact(c))
        per_page = int((body.get("pagination") or {}).get("per_page") or 50)
        return self._reply(
            request,
            {
                "type": "list",
                "data": results[:per_page],
                "total_count": len(results),
                "pages": {"type": "pages", "page": 1, "per_page": per_page, "total_pages": 1},
            },
        )

    async def attach_company(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        if contact is None:
            return error_list(404, "not_found", "User Not Found")
        body = await json_body(request) or {}
        company = self.companies.get(str(body.get("id", "")))
        if company is None:
            return error_list(404, "company_not_found", "Company Not Found")
        self.contact_companies.setdefault(contact["id"], set()).add(company["id"])
        return self._reply(request, self._company(company))

    async def list_contact_companies(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        if contact is None:
            return error_list(404, "not_found", "User Not Found")
        ids = sorted(self.contact_companies.get(contact["id"], set()))
        data = [self._company(self.companies[i]) for i in ids if i in self.companies]
        return self._reply(
            request,
            {
                "type": "list",
                "data": data,
                "total_count": len(data),
                "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1},
            },
        )

    async def detach_company(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        if contact is None:
            return error_list(404, "not_found", "User Not Found")
        company = self.companies.get(request.path_params["company_id"])
        if company is None:
            return error_list(404, "company_not_found", "Company Not Found")
        self.contact_companies.setdefault(contact["id"], set()).discard(company["id"])
        return self._reply(request, self._company(company))

    async def tag_contact(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        tag = self.tags.get(str((await json_body(request) or {}).get("id", "")))
        if contact is None or tag is None:
            return error_list(404, "not_found", "Resource Not Found")
        self.contact_tags.setdefault(contact["id"], set()).add(tag["id"])
        return self._reply(request, {"type": "tag", "id": tag["id"], "name": tag["name"]})

    async def untag_contact(self, request: Request) -> Response:
        contact = self.contacts.get(request.path_params["id"])
        tag = self.tags.get(request.path_params["tag_id"])
        if contact is None or tag is None:
            return error_list(404, "not_found", "Resource Not Found")
        self.contact_tags.setdefault(contact["id"], set()).discard(tag["id"])
        return self._reply(request, {"type": "tag", "id": tag["id"], "name": tag["name"]})

    # ------------------------------------------------------------------------------------- companies

    async def create_or_update_company(self, request: Request) -> Response:
        body = await json_body(request) or {}
        company_id = body.get("company_id")
        if not company_id:
            return error_list(400, "parameter_not_found", "company_id is required")
        if (bad := self._check_attributes("company", body.get("custom_attributes"))) is not None:
            return bad
        existing = next((c for c in self.companies.values() if c["company_id"] == company_id), None)
        now = time.time()
        if existing is None:
            existing = {"id": self._next(), "company_id": company_id, "created": now, "custom_attributes": {}}
            self.companies[existing["id"]] = existing
        for key in ("name", "plan", "website", "industry"):
            if body.get(key) is not None:
                existing[key] = body[key]
        self._apply(existing["custom_attributes"], body.get("custom_attributes"))
        existing["updated"] = now
        return self._reply(request, self._company(existing))

    async def retrieve_company(self, request: Request) -> Response:
        company_id = request.query_params.get("company_id")
        for c in self.companies.values():
            if company_id and c["company_id"] == company_id:
                return self._reply(request, self._company(c))
        return error_list(404, "company_not_found", "Company Not Found")

    async def get_company(self, request: Request) -> Response:
        company = self.companies.get(request.path_params["id"])
        if company is None:
            return error_list(404, "company_not_found", "Company Not Found")
        return self._reply(request, self._company(company))

    # ------------------------------------------------------------------------------------- messy portal

    def _seed_contact(self, external_id: str | None, email: str | None, **extra: Any) -> dict[str, Any]:
        return intercom_messy.seed_contact(self, external_id, email, **extra)

    def seed_messy(self, users: list[dict[str, Any]], accounts: list[dict[str, Any]]) -> dict[str, Any]:
        """A workspace people have used before accoil-sync (see emulator/intercom_messy.py)."""
        return intercom_messy.seed_messy(self, users, accounts)

    def delete_contact(self, contact_id: str) -> None:
        """Someone deleted the contact in Intercom: its id answers 404 from now on."""
        self.contacts.pop(contact_id, None)
        self.contact_tags.pop(contact_id, None)
        self.contact_companies.pop(contact_id, None)

    def merge_contact(self, merged_id: str, into_id: str) -> None:
        """Someone merged a contact into another: the merged id is gone (404), the survivor keeps its own
        external_id or takes the merged one's."""
        merged, survivor = self.contacts[merged_id], self.contacts[into_id]
        if not survivor.get("external_id"):
            survivor["external_id"] = merged.get("external_id")
        self.delete_contact(merged_id)
        self.merged[merged_id] = into_id

    def state(self) -> dict[str, Any]:
        def tag_names(ids: set[str]) -> list[str]:
            return sorted(self.tags[i]["name"] for i in ids)

        return {
            "contacts": {
                c.get("external_id") or c["id"]: {
                    "id": c["id"],
                    "email": c.get("email"),
                    "custom_attributes": c["custom_attributes"],
                    "tags": tag_names(self.contact_tags.get(c["id"], set())),
                    "companies": sorted(
                        self.companies[i]["company_id"] for i in self.contact_companies.get(c["id"], set())
                    ),
                }
                for c in self.contacts.values()
            },
            "companies": {
                c["company_id"]: {
                    "id": c["id"],
                    "name": c.get("name"),
                    "website": c.get("website"),
                    "custom_attributes": c["custom_attributes"],
                    "tags": tag_names(self.company_tags.get(c["id"], set())),
                }
                for c in self.companies.values()
            },
            "data_attributes": {m: sorted(v) for m, v in self.attributes.items()},
            "tags": sorted(t["name"] for t in self.tags.values()),
            "requests": self.counters(),
        }
