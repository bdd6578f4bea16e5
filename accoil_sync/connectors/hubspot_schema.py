"""HubSpot schema management: our property group, one property per trait, segment options kept current.

Property definitions are built with hubspot-api-client's own models (``PropertyCreate``, ``OptionInput``),
which validate type/fieldType combinations before anything is sent; the requests themselves go through
the shared async transport (the SDK is synchronous and its retries do not cover POST).

What was found or made is cached in the state directory (``hubspot-schema.json``): the schema is read again
only when it can have changed -- the first run, another set of properties (a new profile, another group or
portal URL), a cache older than ``schema_ttl_hours``, or a write that HubSpot refused because one of our
properties or options is gone (``recheck``). An unchanged re-run sends HubSpot nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from accoil_sync.config.models import HubSpotDestination, ProfileConfig
from accoil_sync.connectors.http import Transport
from accoil_sync.errors import DestinationUnavailable, PermanentError
from accoil_sync.traits.encoders import hubspot_property
from accoil_sync.traits.names import METRICS_FOR_KIND, Metric, ObjectKind, trait_name

log = logging.getLogger("accoil_sync.hubspot")
OBJECT_TYPES = {ObjectKind.USER: "contacts", ObjectKind.ACCOUNT: "companies"}
_TYPES: dict[Metric, tuple[str, str]] = {
    Metric.SEGMENTS: ("enumeration", "checkbox"),
    Metric.LAST_ACTIVE: ("date", "date"),
}
_DESCRIPTIONS = {
    Metric.SCORE: "Engagement score, 0-100",
    Metric.SEGMENTS: "Accoil segments the record belongs to",
    Metric.ACTIVATION: "Activation rate, %",
    Metric.ADOPTION_RECENT: "Adoption over the latest engagement period, %",
    Metric.ADOPTION_EVER: "Adoption over the whole life, %",
    Metric.LAST_ACTIVE: "Last active day (UTC)",
    Metric.FREQUENCY: "Active days in the scoring window",
    Metric.ACTIVE_USERS: "Active users",
    Metric.TOTAL_USERS: "Total users",
}


def property_specs(
    cfg: HubSpotDestination, kind: ObjectKind, profiles: Sequence[ProfileConfig]
) -> list[dict[str, Any]]:
    """The properties accoil-sync needs on one object type, as HubSpot's create payloads."""
    from hubspot.crm.properties import ApiClient, PropertyCreate

    client = ApiClient()
    specs = []
    for profile in profiles:
        for metric in METRICS_FOR_KIND[kind]:
            type_, field_type = _TYPES.get(metric, ("number", "number"))
            model = PropertyCreate(
                name=hubspot_property(profile.score_name, metric),
                label=trait_name(profile.score_name, metric),
                type=type_,
                field_type=field_type,
                group_name=cfg.property_group,
                description=f"{_DESCRIPTIONS[metric]} (accoil-sync, profile {profile.name})",
                options=[] if type_ == "enumeration" else None,
            )
            specs.append(client.sanitize_for_serialization(model))
    unique = None
    if kind is ObjectKind.ACCOUNT:
        # Always created: with domain matching it is filled in once a company is found, so later runs
        # can address the company by it.
        unique = (cfg.company_id_property, "Accoil account id")
    if kind is ObjectKind.USER and cfg.contact_match == "property":
        unique = (cfg.contact_id_property, "Accoil user id")
    if unique:
        model = PropertyCreate(
            name=unique[0],
            label=unique[1],
            type="string",
            field_type="text",
            group_name=cfg.property_group,
            has_unique_value=True,
            description="The product's own id, set by accoil-sync (unique)",
        )
        specs.append(client.sanitize_for_serialization(model))
    return specs


class HubSpotSchema:
    def __init__(
        self,
        cfg: HubSpotDestination,
        transport: Transport,
        profiles: Sequence[ProfileConfig],
        cache: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.profiles = profiles
        self.cache = cache
        self.properties: dict[str, dict[str, dict[str, Any]]] = {}
        self._option_locks: dict[str, asyncio.Lock] = {}
        self._recheck_lock = asyncio.Lock()
        self.rechecks = 0
        self.created: list[str] = []
        self._signature_value = ""

    def _signature(self, kinds: Iterable[ObjectKind]) -> str:
        """What the cached schema was checked for: the portal URL, the group and every property spec."""
        specs = {OBJECT_TYPES[k]: property_specs(self.cfg, k, self.profiles) for k in kinds}
        text = json.dumps([self.cfg.base_url, self.cfg.property_group, specs], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _load_cache(self, signature: str) -> bool:
        if self.cache is None or not self.cache.exists():
            return False
        try:
            data = json.loads(self.cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        fresh = time.time() - float(data.get("checked_at", 0)) < self.cfg.schema_ttl_hours * 3600
        if data.get("signature") != signature or not fresh:
            return False
        self.properties = data["properties"]
        return True

    def _save_cache(self, checked_at: float | None = None) -> None:
        if self.cache is None or not self._signature_value:
            return
        if checked_at is None:  # an option added: the check's age stays that of the last full read
            try:
                checked_at = float(json.loads(self.cache.read_text(encoding="utf-8"))["checked_at"])
            except (OSError, ValueError, KeyError):
                checked_at = time.time()
        ours = {
            t: {n: p for n, p in props.items() if p.get("groupName") == self.cfg.property_group}
            for t, props in self.properties.items()
        }
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"signature": self._signature_value, "checked_at": checked_at, "properties": ours}),
            encoding="utf-8",
        )
        os.replace(tmp, self.cache)  # a kill mid-write leaves the old cache or the new one

    async def ensure(self, kinds: Iterable[ObjectKind], *, force: bool = False) -> None:
        kinds = list(kinds)
        self._signature_value = self._signature(kinds)
        if not force and self._load_cache(self._signature_value):
            log.debug("hubspot: schema from cache %s", self.cache)
            return
        started = time.time()
        await self._read_and_create(kinds)
        self._save_cache(started)

    async def recheck(self, kinds: Iterable[ObjectKind], seen: int) -> None:
        """HubSpot refused a write because our property or option is gone: read the schema again (once for
        all the batches that met it at the same time; ``seen`` is ``rechecks`` when the refusal came)."""
        async with self._recheck_lock:
            if self.rechecks != seen:
                return  # another batch rechecked meanwhile
            log.warning("hubspot: a property or option accoil-sync cached is gone; reading the schema again")
            await self.ensure(kinds, force=True)
            self.rechecks += 1

    async def _read_and_create(self, kinds: Iterable[ObjectKind]) -> None:
        for kind in kinds:
            object_type = OBJECT_TYPES[kind]
            await self._ensure_group(object_type)
            response = await self.transport.request("GET", f"/crm/v3/properties/{object_type}")
            existing = {p["name"]: p for p in response.json().get("results", [])}
            self.properties[object_type] = existing
            missing = []
            for spec in property_specs(self.cfg, kind, self.profiles):
                have = existing.get(spec["name"])
                if have is None:
                    missing.append(spec)
                else:
                    self._check_compatible(object_type, spec, have)
            if missing:
                await self._create(object_type, missing)

    async def _ensure_group(self, object_type: str) -> None:
        try:
            await self.transport.request(
                "GET", f"/crm/v3/properties/{object_type}/groups/{self.cfg.property_group}"
            )
            return
        except PermanentError as exc:
            if exc.status != 404:
                raise
        try:
            await self.transport.request(
                "POST",
                f"/crm/v3/properties/{object_type}/groups",
                json={"name": self.cfg.property_group, "label": "Accoil Analytics"},
            )
        except PermanentError as exc:
            if exc.status != 409:  # another run created it a moment ago: fine
                raise

    @staticmethod
    def _check_compatible(object_type: str, want: dict[str, Any], have: dict[str, Any]) -> None:
        if (have.get("type"), have.get("fieldType")) != (want["type"], want["fieldType"]) or (
            want.get("hasUniqueValue") and not have.get("hasUniqueValue")
        ):
            raise DestinationUnavailable(
                f"HubSpot {object_type} property {want['name']!r} exists as {have.get('type')}/"
                f"{have.get('fieldType')}{' (not unique)' if want.get('hasUniqueValue') else ''}, but accoil-sync "
                f"needs {want['type']}/{want['fieldType']}{' with unique values' if want.get('hasUniqueValue') else ''}"
                ". Delete or rename that property in HubSpot, or set destinations.hubspot.property_group and "
                "profile names so the names differ."
            )

    async def _create(self, object_type: str, specs: list[dict[str, Any]]) -> None:
        response = await self.transport.request(
            "POST", f"/crm/v3/properties/{object_type}/batch/create", json={"inputs": specs}
        )
        body = response.json()
        for prop in body.get("results", []):
            self.properties[object_type][prop["name"]] = prop
            self.created.append(f"{object_type}.{prop['name']}")
        if body.get("errors"):
            # Two runs creating the same property at once: the loser sees "already exists". Re-read and verify.
            response = await self.transport.request("GET", f"/crm/v3/properties/{object_type}")
            existing = {p["name"]: p for p in response.json().get("results", [])}
            self.properties[object_type] = existing
            for spec in specs:
                if spec["name"] not in existing:
                    raise DestinationUnavailable(
                        f"HubSpot would not create property {spec['name']!r}: "
                        f"{body['errors'][0].get('message')}"
                    )
                self._check_compatible(object_type, spec, existing[spec["name"]])
        log.info("hubspot: created %d properties on %s", len(body.get("results", [])), object_type)

    async def ensure_options(self, object_type: str, wanted: dict[str, dict[str, str]]) -> None:
        """``wanted``: property -> {option value: label}. Adds the options a new segment needs, once."""
        for name, options in wanted.items():
            prop = self.properties[object_type][name]
            if not set(options) - {o["value"] for o in prop.get("options", [])}:
                continue
            lock = self._option_locks.setdefault(f"{object_type}.{name}", asyncio.Lock())
            async with lock:
                prop = self.properties[object_type][name]
                have = list(prop.get("options", []))
                known = {o["value"] for o in have}
                new = [v for v in sorted(options) if v not in known]
                if not new:
                    continue
                merged = [
                    {
                        "label": o["label"],
                        "value": o["value"],
                        "hidden": o.get("hidden", False),
                        "displayOrder": o.get("displayOrder", n),
                    }
                    for n, o in enumerate(have)
                ]
                merged += [
                    {"label": options[v], "value": v, "hidden": False, "displayOrder": len(merged) + n}
                    for n, v in enumerate(new)
                ]
                response = await self.transport.request(
                    "PATCH", f"/crm/v3/properties/{object_type}/{name}", json={"options": merged}
                )
                self.properties[object_type][name] = response.json()
                log.info("hubspot: %s.%s gained options %s", object_type, name, new)
                self._save_cache()
