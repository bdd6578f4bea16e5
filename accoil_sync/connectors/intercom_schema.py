"""Intercom data attributes: make sure every one accoil-sync writes exists, with the right type, before the
first write -- and remember what exists, so later runs do not list attributes again.

The list is read again when it can have changed: on the first run, when a profile (new attribute names) is
added, when the cache is older than ``ttl`` (someone may have archived an attribute), and when a write
answers "does not exist" (the connector calls ``forget`` and ``ensure`` again in the same run)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from intercom.types import CreateDataAttributeRequestOne

from accoil_sync.config.models import ProfileConfig
from accoil_sync.connectors.http import Transport
from accoil_sync.errors import DestinationUnavailable, PermanentError
from accoil_sync.traits.encoders import intercom_attribute
from accoil_sync.traits.names import METRICS_FOR_KIND, Metric, ObjectKind

log = logging.getLogger("accoil_sync.intercom")
MAX_CUSTOM_ATTRIBUTES = 250
MODELS = {ObjectKind.USER: "contact", ObjectKind.ACCOUNT: "company"}
DATA_TYPES = {
    Metric.SCORE: "float",
    Metric.SEGMENTS: "string",
    Metric.ACTIVATION: "float",
    Metric.ADOPTION_RECENT: "float",
    Metric.ADOPTION_EVER: "float",
    Metric.LAST_ACTIVE: "date",
    Metric.FREQUENCY: "integer",
    Metric.ACTIVE_USERS: "integer",
    Metric.TOTAL_USERS: "integer",
}
_COMPATIBLE = {("float", "integer"), ("date", "datetime")}  # what Intercom reports back for what we create


def needed(profiles: Sequence[ProfileConfig]) -> dict[str, dict[str, str]]:
    """model -> attribute name -> data type."""
    out: dict[str, dict[str, str]] = {"contact": {}, "company": {}}
    for kind, model in MODELS.items():
        for profile in profiles:
            for metric in METRICS_FOR_KIND[kind]:
                out[model][intercom_attribute(kind, profile.score_name, metric)] = DATA_TYPES[metric]
    return out


def check_cap(profiles: Sequence[ProfileConfig], existing_custom: int = 0) -> None:
    """Fail before anything is created when the configured profiles cannot fit Intercom's cap."""
    wanted = sum(len(v) for v in needed(profiles).values())
    if wanted > MAX_CUSTOM_ATTRIBUTES:
        raise DestinationUnavailable(
            f"{len(profiles)} score profiles need {wanted} Intercom data attributes (contacts and companies); "
            f"a workspace holds at most {MAX_CUSTOM_ATTRIBUTES}. Sync fewer profiles to Intercom."
        )


class IntercomSchema:
    def __init__(
        self,
        transport: Transport,
        sdk: Any,
        profiles: Sequence[ProfileConfig],
        cache: Path,
        ttl_seconds: float = 86_400.0,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.transport = transport
        self.sdk = sdk  # python-intercom's AsyncIntercom on the transport's client
        self.profiles = profiles
        self.cache = cache
        self.created: list[str] = []

    def _cached(self) -> dict[str, list[str]]:
        try:
            if time.time() - self.cache.stat().st_mtime > self.ttl_seconds:
                return {}  # old enough that someone may have archived an attribute: list again
            data = json.loads(self.cache.read_text())
            return {m: list(v) for m, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def forget(self) -> None:
        """Called when Intercom says an attribute we thought existed does not (archived by someone)."""
        self.cache.unlink(missing_ok=True)

    async def _exists_as(self, model: str, name: str, data_type: str) -> bool:
        listed = await self.transport.call(partial(self.sdk.data_attributes.list, model=model))
        for attr in listed.data or []:
            if str(attr.name) == name:
                have = str(attr.data_type or "")
                return have == data_type or (data_type, have) in _COMPATIBLE
        return False

    async def ensure(self) -> None:
        check_cap(self.profiles)
        want = needed(self.profiles)
        cached = self._cached()
        if all(set(names) <= set(cached.get(model, [])) for model, names in want.items()):
            return  # known to exist from an earlier run: no listing
        existing: dict[str, dict[str, str]] = {"contact": {}, "company": {}}
        custom = 0
        for model in existing:
            listed = await self.transport.call(partial(self.sdk.data_attributes.list, model=model))
            for attr in listed.data or []:
                existing[model][str(attr.name)] = str(attr.data_type or "")
                custom += bool(attr.custom)
        missing = [(m, n, t) for m, names in want.items() for n, t in names.items() if n not in existing[m]]
        if custom + len(missing) > MAX_CUSTOM_ATTRIBUTES:
            raise DestinationUnavailable(
                f"Intercom holds {custom} custom data attributes; accoil-sync needs {len(missing)} more and the "
                f"workspace cap is {MAX_CUSTOM_ATTRIBUTES}. Archive unused attributes or sync fewer profiles."
            )
        for model, names in want.items():
            for name, data_type in names.items():
                have = existing[model].get(name)
                if have and have != data_type and (data_type, have) not in _COMPATIBLE:
                    raise DestinationUnavailable(
                        f"Intercom {model} attribute {name!r} exists as {have}; accoil-sync writes a {data_type}. "
                        "Archive or rename it in Intercom (its type cannot change)."
                    )
        for model, name, data_type in missing:
            request = CreateDataAttributeRequestOne(
                name=name,
                model=model,
                data_type=data_type,
                description="Set by accoil-sync (Accoil engagement metrics)",
            )
            try:
                await self.transport.call(partial(self.sdk.data_attributes.create, request=request))
                self.created.append(f"{model}.{name}")
            except PermanentError as exc:
                if await self._exists_as(model, name, data_type):
                    # An earlier attempt was created but its answer was lost (a dropped connection): the
                    # retry hears "you already have it", which is the outcome we wanted.
                    continue
                raise DestinationUnavailable(
                    f"Intercom would not create {model} attribute {name!r}: {exc.vendor_reason or exc}"
                ) from exc
        if missing:
            log.info("intercom: created %d data attributes", len(missing))
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        self.cache.write_text(json.dumps({m: sorted(set(n) | set(existing[m])) for m, n in want.items()}))
