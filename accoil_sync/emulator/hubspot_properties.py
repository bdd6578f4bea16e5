"""The HubSpot emulator's properties API -- property definitions and groups, and the validation of values
against their types -- with the error body every HubSpot endpoint answers in."""

from __future__ import annotations

import re
import time
import uuid
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from accoil_sync.emulator.common import iso_now, json_body

OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2"}
EMAIL = re.compile(r"^[^@\s;,]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FIELD_TYPES = {
    "string": {"text", "textarea", "file", "html", "phonenumber", "calculation_equation"},
    "number": {"number", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "bool": {"booleancheckbox", "calculation_equation"},
}


def builtin(
    name: str, label: str, type_: str = "string", field: str = "text", unique: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field,
        "groupName": "contactinformation",
        "options": [],
        "hasUniqueValue": unique,
        "hidden": False,
        "formField": False,
        "calculated": False,
        "externalOptions": False,
        "displayOrder": -1,
        "description": "",
        "createdAt": "2020-01-01T00:00:00Z",
        "updatedAt": "2020-01-01T00:00:00Z",
        "modificationMetadata": {"archivable": False, "readOnlyDefinition": True, "readOnlyValue": False},
    }


def error_body(
    status: int,
    category: str,
    message: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    context: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if errors is not None:
        body["errors"] = errors
    if context is not None:
        body["context"] = context
    body.update(extra)
    return body


class PropertiesAPI:
    # Provided by the HubSpot emulator: its property definitions, groups, records and unique-value index.
    properties: dict[str, dict[str, dict[str, Any]]]
    groups: dict[str, dict[str, dict[str, Any]]]
    objects: dict[str, dict[str, dict[str, Any]]]
    index: dict[str, dict[str, dict[str, str]]]

    def _reply(self, request: Request, body: Any, status: int = 200) -> Response:
        raise NotImplementedError

    def _invalid(self, kind: str, properties: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-property validation errors, in HubSpot's ``errors[]`` shape."""
        errors = []
        defs = self.properties[kind]
        for name, value in properties.items():
            prop = defs.get(name)
            if prop is None:
                errors.append(
                    {
                        "message": f'Property "{name}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": [name]},
                    }
                )
                continue
            if value is None or value == "":
                continue
            value = str(value)
            problem = self._check_value(prop, value)
            if problem:
                code, message = problem
                errors.append({"message": message, "code": code, "context": {"propertyName": [name]}})
        return errors

    def _check_value(self, prop: dict[str, Any], value: str) -> tuple[str, str] | None:
        kind = prop["type"]
        if prop["name"] == "email" and not EMAIL.match(value):
            return "INVALID_EMAIL", f"Email address {value} is invalid"
        if kind == "number":
            try:
                float(value)
            except ValueError:
                return "INVALID_INTEGER", f"{value} was not a valid number."
        elif kind == "date":
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                try:
                    date.fromisoformat(value)
                except ValueError:
                    return "INVALID_DATE", f"{value} is not a valid date"
            elif value.lstrip("-").isdigit():
                ms = int(value)
                if ms % 86_400_000:
                    at = time.strftime("%H:%M:%S", time.gmtime(ms / 1000))
                    return "INVALID_DATE", f"{value} is at {at}.{ms % 1000:03d} UTC, not midnight!"
            else:
                return "INVALID_DATE", f"{value} is not a valid date"
        elif kind == "datetime":
            if not (
                value.isdigit() or re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})?", value)
            ):
                return "INVALID_DATETIME", f"{value} is not a valid datetime"
        elif kind == "enumeration":
            allowed = {o["value"] for o in prop["options"]}
            for part in value.split(";"):
                if part and part not in allowed:
                    return "INVALID_OPTION", (
                        f"{part} was not one of the allowed options: [{', '.join(sorted(allowed))}]"
                    )
        elif kind == "bool" and value.lower() not in ("true", "false"):
            return "INVALID_BOOLEAN", f"{value} is not a valid boolean"
        return None

    async def list_properties(self, request: Request, kind: str) -> Response:
        return self._reply(request, {"results": list(self.properties[kind].values())})

    async def get_property(self, request: Request, kind: str) -> Response:
        prop = self.properties[kind].get(request.path_params["name"])
        if prop is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "property not found"), 404)
        return self._reply(request, prop)

    def _new_property(self, kind: str, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = str(spec.get("name", ""))
        if not _NAME.match(name) or len(name) >= 100:
            return 400, error_body(
                400,
                "VALIDATION_ERROR",
                "Names for properties should be lowercase and have less "
                f"than 100 characters. Invalid names: [{name}]",
            )
        for required in ("label", "type", "fieldType", "groupName"):
            if not spec.get(required):
                return 400, error_body(400, "VALIDATION_ERROR", f"{required} is required")
        if name in self.properties[kind]:
            return 409, error_body(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        if spec["type"] not in FIELD_TYPES or spec["fieldType"] not in FIELD_TYPES[spec["type"]]:
            return 400, error_body(
                400, "VALIDATION_ERROR", f"fieldType {spec['fieldType']} is not valid for type {spec['type']}"
            )
        if spec["groupName"] not in self.groups[kind]:
            return 400, error_body(
                400, "VALIDATION_ERROR", f"property group {spec['groupName']} does not exist"
            )
        options = [
            {
                "label": o["label"],
                "value": o["value"],
                "hidden": bool(o.get("hidden", False)),
                "displayOrder": o.get("displayOrder", n),
                "description": o.get("description", ""),
            }
            for n, o in enumerate(spec.get("options") or [])
        ]
        if (
            spec["type"] == "enumeration"
            and spec["fieldType"] == "checkbox"
            and not isinstance(spec.get("options"), list)
        ):
            return 400, error_body(400, "VALIDATION_ERROR", "options are required for enumeration properties")
        stamp = iso_now()
        prop = {
            **builtin(name, spec["label"], spec["type"], spec["fieldType"], bool(spec.get("hasUniqueValue"))),
            "groupName": spec["groupName"],
            "options": options,
            "description": spec.get("description", ""),
            "createdAt": stamp,
            "updatedAt": stamp,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
        }
        self.properties[kind][name] = prop
        return 201, prop

    async def create_property(self, request: Request, kind: str) -> Response:
        status, body = self._new_property(kind, await json_body(request) or {})
        return self._reply(request, body, status)

    async def batch_create_properties(self, request: Request, kind: str) -> Response:
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for spec in (await json_body(request) or {}).get("inputs") or []:
            status, body = self._new_property(kind, spec)
            (results if status == 201 else errors).append(body)
        out: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": iso_now(),
            "completedAt": iso_now(),
        }
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
            return self._reply(request, out, 207)
        return self._reply(request, out, 201)

    async def patch_property(self, request: Request, kind: str) -> Response:
        prop = self.properties[kind].get(request.path_params["name"])
        if prop is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "property not found"), 404)
        body = await json_body(request) or {}
        if "type" in body and body["type"] != prop["type"]:
            return self._reply(
                request, error_body(400, "VALIDATION_ERROR", "the type of a property cannot change"), 400
            )
        for key in ("label", "description", "groupName", "hidden", "displayOrder", "fieldType"):
            if key in body:
                prop[key] = body[key]
        if "options" in body:
            prop["options"] = [
                {
                    "label": o["label"],
                    "value": o["value"],
                    "hidden": bool(o.get("hidden", False)),
                    "displayOrder": o.get("displayOrder", n),
                    "description": o.get("description", ""),
                }
                for n, o in enumerate(body["options"])
            ]
        prop["updatedAt"] = iso_now()
        return self._reply(request, prop)

    async def archive_property(self, request: Request, kind: str) -> Response:
        """Archive a property (204): writes naming it fail with PROPERTY_DOESNT_EXIST from now on."""
        prop = self.properties[kind].get(request.path_params["name"])
        if prop is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "property not found"), 404)
        if not prop["modificationMetadata"].get("archivable"):  # [U] the exact answer for a default property
            body = error_body(
                400,
                "VALIDATION_ERROR",
                f"{prop['name']} is a HubSpot default property and cannot be archived",
            )
            return self._reply(request, body, 400)
        del self.properties[kind][prop["name"]]
        for obj in self.objects[kind].values():
            obj["properties"].pop(prop["name"], None)
        self.index[kind].pop(prop["name"], None)
        return Response(status_code=204, headers=getattr(request.state, "rate_headers", {}))

    async def list_groups(self, request: Request, kind: str) -> Response:
        return self._reply(request, {"results": list(self.groups[kind].values())})

    async def get_group(self, request: Request, kind: str) -> Response:
        group = self.groups[kind].get(request.path_params["name"])
        if group is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "group not found"), 404)
        return self._reply(request, group)

    async def create_group(self, request: Request, kind: str) -> Response:
        body = await json_body(request) or {}
        name = str(body.get("name", ""))
        if not _NAME.match(name) or not body.get("label"):
            return self._reply(
                request, error_body(400, "VALIDATION_ERROR", "name (lower case) and label are required"), 400
            )
        if name in self.groups[kind]:
            return self._reply(
                request,
                error_body(409, "OBJECT_ALREADY_EXISTS", f"A property group named '{name}' already exists."),
                409,
            )
        group = {
            "name": name,
            "label": body["label"],
            "displayOrder": body.get("displayOrder", -1),
            "archived": False,
        }
        self.groups[kind][name] = group
        return self._reply(request, group, 201)
