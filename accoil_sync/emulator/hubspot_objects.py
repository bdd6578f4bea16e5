"""The HubSpot emulator's objects API for contacts and companies: batch upsert, update and read (HubSpot's
batch semantics: one invalid input fails the whole batch and nothing says which, unless every input carries
an ``objectWriteTraceId``: then a 207 names the failed ones), single create, read, update, archive and
merge, and search."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from accoil_sync.emulator.common import Faults, iso_now, json_body
from accoil_sync.emulator.hubspot_properties import EMAIL, OBJECT_TYPE_IDS, PropertiesAPI, error_body
from accoil_sync.emulator.hubspot_records import Records

MAX_BATCH = 100


class ObjectsAPI(Records, PropertiesAPI):
    # Provided by the HubSpot emulator: its fault profile and random source, and its plumbing.
    faults: Faults
    rng: Any

    def _object_type(
        self, request: Request, write: bool, schema: bool = False
    ) -> tuple[str | None, Response | None]:
        raise NotImplementedError

    def error_response(self, status: int) -> Response:
        raise NotImplementedError

    async def _batch_inputs(
        self, request: Request
    ) -> tuple[str | None, list[dict[str, Any]], Response | None]:
        kind, denied = self._object_type(request, write=True)
        if denied:
            return None, [], denied
        body = await json_body(request)
        inputs = (body or {}).get("inputs")
        if not isinstance(inputs, list):
            return (
                None,
                [],
                self._reply(request, error_body(400, "VALIDATION_ERROR", "inputs must be an array"), 400),
            )
        if len(inputs) > MAX_BATCH:
            return (
                None,
                [],
                self._reply(
                    request,
                    error_body(
                        400,
                        "VALIDATION_ERROR",
                        f"Batch input limit exceeded ({len(inputs)} > {MAX_BATCH})",
                        context={"maxInputs": [str(MAX_BATCH)]},
                    ),
                    400,
                ),
            )
        ids = [
            str(i.get("id", "")).lower() if i.get("idProperty") == "email" else str(i.get("id", ""))
            for i in inputs
        ]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            return (
                None,
                [],
                self._reply(
                    request,
                    error_body(
                        400,
                        "VALIDATION_ERROR",
                        f"Duplicate IDs found in batch input: [{', '.join(dups)}]. IDs must be unique",
                        context={"ids": dups},
                    ),
                    400,
                ),
            )
        return kind, inputs, None

    def _batch_result(
        self, request: Request, kind: str, inputs: list[dict[str, Any]], upsert: bool
    ) -> Response:
        started = iso_now()
        traced = all(i.get("objectWriteTraceId") for i in inputs)
        problems: dict[int, tuple[str, list[dict[str, Any]]]] = {}
        targets: dict[int, dict[str, Any] | None] = {}
        for n, item in enumerate(inputs):
            id_property = item.get("idProperty")
            properties = item.get("properties") or {}
            if id_property and id_property != "hs_object_id":
                prop = self.properties[kind].get(id_property)
                if prop is None or not prop.get("hasUniqueValue") or (not upsert and id_property == "email"):
                    body = error_body(
                        400,
                        "VALIDATION_ERROR",
                        f"Unable to perform update/upsert by non-unique "
                        f"{OBJECT_TYPE_IDS[kind]} property {id_property}",
                    )
                    return self._reply(request, body, 400)
            errors = self._invalid(kind, properties)
            if id_property == "email" and not EMAIL.match(str(item.get("id", ""))):
                errors.append(
                    {
                        "message": f"Email address {item.get('id')} is invalid",
                        "code": "INVALID_EMAIL",
                        "context": {"propertyName": ["email"]},
                    }
                )
            if self.faults.record_error_rate and self.rng.random() < self.faults.record_error_rate:
                errors.append(
                    {
                        "message": "emulated record error",
                        "code": "INVALID_INTEGER",
                        "context": {"propertyName": ["(injected)"]},
                    }
                )
            target = self._find(kind, id_property, item.get("id", ""), follow_merged=upsert)
            if target is None and not upsert:
                errors.append(
                    {
                        "message": "Object not found. objectId are usually numeric.",
                        "code": "OBJECT_NOT_FOUND",
                        "context": {"ids": [str(item.get("id"))]},
                    }
                )
            if not errors and (
                other := self._unique_conflict(kind, properties, target["id"] if target else None)
            ):
                errors.append(
                    {
                        "message": f"A record with this unique value already exists. Existing ID: {other}",
                        "code": "CONFLICT",
                        "context": {"id": [other]},
                    }
                )
            if errors:
                category = (
                    "OBJECT_NOT_FOUND" if errors[0]["code"] == "OBJECT_NOT_FOUND" else "VALIDATION_ERROR"
                )
                problems[n] = (category, errors)
            targets[n] = target
        if problems and not traced:
            # One bad input fails the whole batch, nothing is written, and nothing says which input it was.
            category, errors = next(iter(problems.values()))
            return self._invalid_reply(request, errors, category)
        results = []
        for n, item in enumerate(inputs):
            if n in problems:
                continue
            properties = dict(item.get("properties") or {})
            target = targets[n]
            id_property = item.get("idProperty")
            if target is None and id_property and id_property != "hs_object_id":
                properties.setdefault(id_property, item["id"])
            obj, created = self._write(kind, target, properties)
            results.append(
                self._public(obj, new=created if upsert else None, trace=item.get("objectWriteTraceId"))
            )
        out: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_now(),
        }
        if not problems:
            return self._reply(request, out, 200)
        out["numErrors"] = len(problems)
        out["errors"] = [
            {
                "status": "error",
                "category": category,
                "message": "; ".join(e["message"] for e in errors),
                "context": {"objectWriteTraceId": [inputs[n]["objectWriteTraceId"]]},
                "errors": errors,
                "links": {},
            }
            for n, (category, errors) in problems.items()
        ]
        return self._reply(request, out, 207)

    async def batch_upsert(self, request: Request) -> Response:
        kind, inputs, error = await self._batch_inputs(request)
        if error is not None or kind is None:
            return error or self.error_response(500)
        for item in inputs:
            if not item.get("idProperty"):
                return self._reply(
                    request, error_body(400, "VALIDATION_ERROR", "idProperty is required for upsert"), 400
                )
        return self._batch_result(request, kind, inputs, upsert=True)

    async def batch_update(self, request: Request) -> Response:
        kind, inputs, error = await self._batch_inputs(request)
        if error is not None or kind is None:
            return error or self.error_response(500)
        return self._batch_result(request, kind, inputs, upsert=False)

    async def batch_read(self, request: Request, kind: str) -> Response:
        body = await json_body(request) or {}
        id_property = body.get("idProperty")
        wanted = body.get("properties") or None
        results, missing = [], []
        for item in body.get("inputs") or []:
            obj = self._find(kind, id_property, item.get("id", ""))
            if obj is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self._public(obj, wanted=wanted))
        out: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": iso_now(),
            "completedAt": iso_now(),
        }
        if missing:
            out["numErrors"] = 1
            out["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {kind} objects, they may be deleted or not exist.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            ]
            return self._reply(request, out, 207)
        return self._reply(request, out)

    # ------------------------------------------------------------------------------------------ singles

    def _invalid_reply(
        self, request: Request, errors: list[dict[str, Any]], category: str = "VALIDATION_ERROR"
    ) -> Response:
        message = "Property values were not valid: " + "; ".join(e["message"] for e in errors)
        return self._reply(request, error_body(400, category, message, errors=errors), 400)

    async def create_object(self, request: Request, kind: str) -> Response:
        properties = (await json_body(request) or {}).get("properties") or {}
        errors = self._invalid(kind, properties)
        if errors:
            return self._invalid_reply(request, errors)
        if other := self._unique_conflict(kind, properties, None):
            label = "Contact" if kind == "contacts" else "Company"
            return self._reply(
                request, error_body(409, "CONFLICT", f"{label} already exists. Existing ID: {other}"), 409
            )
        obj, _ = self._write(kind, None, properties)
        return self._reply(request, self._public(obj), 201)

    async def get_object(self, request: Request, kind: str) -> Response:
        obj = self._find(kind, request.query_params.get("idProperty"), request.path_params["id"])
        if obj is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "resource not found"), 404)
        # Both forms are accepted: ?properties=a,b and ?properties=a&properties=b (what the SDK sends).
        wanted = [p for value in request.query_params.getlist("properties") for p in value.split(",") if p]
        return self._reply(request, self._public(obj, wanted=wanted or None))

    async def patch_object(self, request: Request, kind: str) -> Response:
        obj = self._find(kind, request.query_params.get("idProperty"), request.path_params["id"])
        if obj is None:
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "resource not found"), 404)
        properties = (await json_body(request) or {}).get("properties") or {}
        errors = self._invalid(kind, properties)
        if errors:
            return self._invalid_reply(request, errors)
        obj, _ = self._write(kind, obj, properties)
        return self._reply(request, self._public(obj))

    async def delete_object(self, request: Request, kind: str) -> Response:
        if not self.archive(kind, request.path_params["id"]):
            return self._reply(request, error_body(404, "OBJECT_NOT_FOUND", "resource not found"), 404)
        return Response(status_code=204, headers=getattr(request.state, "rate_headers", {}))

    async def merge_objects(self, request: Request, kind: str) -> Response:
        body = await json_body(request) or {}
        primary, other = str(body.get("primaryObjectId", "")), str(body.get("objectIdToMerge", ""))
        if primary == other or primary not in self.objects[kind] or other not in self.objects[kind]:
            return self._reply(
                request,
                error_body(400, "VALIDATION_ERROR", "two existing, different records are needed"),
                400,
            )
        return self._reply(request, self._public(self.merge(kind, primary, other)))

    async def search(self, request: Request, kind: str) -> Response:
        body = await json_body(request) or {}
        groups = body.get("filterGroups") or []

        def matches(obj: dict[str, Any]) -> bool:
            if not groups:
                return True
            for group in groups:
                ok = True
                for f in group.get("filters", []):
                    value = obj["properties"].get(f.get("propertyName"))
                    op = f.get("operator", "EQ")
                    if op == "EQ":
                        ok &= value is not None and str(value).lower() == str(f.get("value", "")).lower()
                    elif op == "IN":
                        ok &= value is not None and str(value).lower() in {
                            str(v).lower() for v in f.get("values", [])
                        }
                    elif op == "HAS_PROPERTY":
                        ok &= value is not None
                if ok:
                    return True
            return False

        found = [o for o in self.objects[kind].values() if matches(o)]
        limit = min(int(body.get("limit") or 10), 200)
        start = int(body.get("after") or 0)
        page = found[start : start + limit]
        out: dict[str, Any] = {
            "total": len(found),
            "results": [self._public(o, wanted=body.get("properties") or None) for o in page],
        }
        if start + limit < len(found):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return JSONResponse(out)  # search answers carry no rate-limit headers
