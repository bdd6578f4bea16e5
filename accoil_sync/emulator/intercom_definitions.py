"""The Intercom emulator's data attributes and tags, and the rules values are checked by: one attribute
name per model (never on both contacts and companies), at most 250 custom attributes, null is "unknown",
"" is refused for numbers and dates; tags by name, applied and removed in bulk. With the error list every
Intercom endpoint answers in."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from accoil_sync.emulator.common import json_body

MAX_CUSTOM_ATTRIBUTES = 250
DATA_TYPES = {"string", "integer", "float", "boolean", "date", "datetime", "options"}
_ATTR_NAME = re.compile(r"^[\w$£€¥\- ]+$")
_STANDARD = {
    "name",
    "email",
    "phone",
    "external_id",
    "role",
    "company_id",
    "plan",
    "size",
    "website",
    "industry",
}


def error_list(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": "error.list",
            "request_id": f"req-{time.time_ns():x}",
            "errors": [{"code": code, "message": message}],
        },
        status_code=status,
    )


class Definitions:
    # Provided by the Intercom emulator (its persistent state).
    seq: int
    contacts: dict[str, dict[str, Any]]
    companies: dict[str, dict[str, Any]]
    attributes: dict[str, dict[str, dict[str, Any]]]
    tags: dict[str, dict[str, Any]]
    contact_tags: dict[str, set[str]]
    company_tags: dict[str, set[str]]

    def _reply(self, request: Request, body: Any, status: int = 200) -> Response:
        raise NotImplementedError

    def _check_attributes(self, model: str, values: Any) -> Response | None:
        if values is None:
            return None
        if not isinstance(values, dict):
            return error_list(400, "parameter_invalid", "custom_attributes must be an object")
        for name, value in values.items():
            attr = self.attributes[model].get(name)
            if attr is None:
                return error_list(400, "parameter_invalid", f"Custom attribute '{name}' does not exist")
            kind = attr["data_type"]
            if value is None or (value == "" and kind == "string"):
                continue  # null is "unknown" for every type; "" empties a string
            if value == "":
                # Intercom refuses an empty string for a number or a date: null is how to clear one.
                return error_list(
                    400,
                    "parameter_invalid",
                    f"Custom attribute '{name}' expects a {kind}, got an empty string",
                )
            ok = {
                "string": isinstance(value, str),
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, int | float) and not isinstance(value, bool),
                "boolean": isinstance(value, bool),
                "date": isinstance(value, int) and not isinstance(value, bool),
                "datetime": isinstance(value, int) and not isinstance(value, bool),
            }.get(kind, True)
            if not ok:
                return error_list(
                    400,
                    "parameter_invalid",
                    f"Custom attribute '{name}' expects a {kind}, got {type(value).__name__}",
                )
        return None

    @staticmethod
    def _apply(target: dict[str, Any], values: dict[str, Any] | None) -> None:
        for name, value in (values or {}).items():
            if value is None or value == "":
                target.pop(name, None)  # null sets the attribute to unknown; "" (strings only) empties it
            else:
                target[name] = value

    # ------------------------------------------------------------------------------------- attributes

    def _attribute(self, model: str, a: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "data_attribute",
            "id": a["id"],
            "model": model,
            "name": a["name"],
            "full_name": f"custom_attributes.{a['name']}",
            "label": a["name"],
            "description": a.get("description", ""),
            "data_type": "date" if a["data_type"] == "datetime" else a["data_type"],
            "custom": True,
            "archived": False,
            "messenger_writable": False,
            "ui_writable": True,
            "api_writable": True,
            "created_at": int(a["created"]),
            "updated_at": int(a["created"]),
        }

    async def list_attributes(self, request: Request) -> Response:
        model = request.query_params.get("model")
        models = [model] if model in ("contact", "company") else ["contact", "company"]
        data = [self._attribute(m, a) for m in models for a in self.attributes[m].values()]
        return self._reply(request, {"type": "list", "data": data})

    async def create_attribute(self, request: Request) -> Response:
        body = await json_body(request) or {}
        name, model, data_type = str(body.get("name", "")), body.get("model"), body.get("data_type")
        if model not in ("contact", "company"):
            return error_list(400, "parameter_invalid", "Model isn't an option")
        if data_type not in DATA_TYPES:
            return error_list(400, "parameter_invalid", "Data Type isn't an option")
        if not name or not _ATTR_NAME.match(name) or "." in name:
            return error_list(
                400,
                "parameter_invalid",
                "Your name for this attribute must only contain "
                "alphanumeric characters, currency symbols, and hyphens",
            )
        if name.lower() in _STANDARD:
            return error_list(400, "parameter_invalid", f"'{name}' is one of our standard attributes")
        other = "company" if model == "contact" else "contact"
        if name in self.attributes[other]:
            target = "people" if model == "contact" else "company"
            return error_list(
                400,
                "parameter_invalid",
                f"You already have '{name}' in your {other} data. To save "
                f"this as new {target} data, use a different name.",
            )
        if name in self.attributes[model]:
            return error_list(400, "parameter_invalid", f"You already have '{name}' in your {model} data")
        if sum(len(v) for v in self.attributes.values()) >= MAX_CUSTOM_ATTRIBUTES:
            return error_list(
                400,
                "parameter_invalid",
                f"You have reached the limit of {MAX_CUSTOM_ATTRIBUTES} "
                "custom data attributes; archive unused ones to free up space",
            )
        attribute = {
            "id": self.seq + 100_000,
            "name": name,
            "data_type": data_type,
            "created": time.time(),
            "description": body.get("description", ""),
        }
        self.seq += 1
        self.attributes[model][name] = attribute
        return self._reply(request, self._attribute(model, attribute))

    # ------------------------------------------------------------------------------------------- tags

    def _tag_by_name(self, name: str) -> dict[str, Any]:
        for tag in self.tags.values():
            if tag["name"].lower() == name.lower():
                return tag
        tag = {"type": "tag", "id": str(self.seq + 500_000), "name": name}
        self.seq += 1
        self.tags[tag["id"]] = tag
        return tag

    async def tags_post(self, request: Request) -> Response:
        body = await json_body(request) or {}
        name = str(body.get("name", "")).strip()
        if not name:
            return error_list(400, "parameter_invalid", "name is required")
        users, companies = body.get("users"), body.get("companies")
        if users and companies:
            # "Companies and user tag directives cannot be mixed in the same request" (Intercom's tag docs)
            return error_list(400, "parameter_invalid", "invalid tag parameters")
        if users is not None:
            # tag_multiple_users_request (spec 2.14): users are identified by Intercom id only, and the
            # schema has no "untag" for users -- removing a tag from a contact is one DELETE per contact.
            if not isinstance(users, list) or any(not isinstance(u, dict) or set(u) != {"id"} for u in users):
                return error_list(400, "parameter_invalid", "invalid tag parameters")
            found = [self.contacts.get(str(u["id"])) for u in users]
            if any(c is None for c in found):
                return error_list(404, "not_found", "User Not Found")
            tag = self._tag_by_name(name)
            for contact in found:
                assert contact is not None
                self.contact_tags.setdefault(contact["id"], set()).add(tag["id"])
            return self._reply(request, {"type": "tag", "id": tag["id"], "name": tag["name"]})
        tag = self._tag_by_name(name)
        for item in body.get("companies") or []:
            company = self.companies.get(str(item.get("id", ""))) or next(
                (c for c in self.companies.values() if c["company_id"] == item.get("company_id")), None
            )
            if company is None:
                return error_list(404, "company_not_found", "Company Not Found")
            tags = self.company_tags.setdefault(company["id"], set())
            if item.get("untag"):
                tags.discard(tag["id"])
            else:
                tags.add(tag["id"])
        return self._reply(request, {"type": "tag", "id": tag["id"], "name": tag["name"]})

    async def list_tags(self, request: Request) -> Response:
        return self._reply(request, {"type": "list", "data": list(self.tags.values())})
