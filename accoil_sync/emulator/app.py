"""The emulator: the three vendor look-alikes under one ASGI app, plus inspection and fault control.

/segment/v1/...        Segment HTTP Tracking API   (base_url = http://host:port/segment)
/intercom/...          Intercom REST API           (base_url = http://host:port/intercom)
/hubspot/crm/v3/...    HubSpot CRM v3              (base_url = http://host:port/hubspot)
GET  /_emulator/state              what each vendor now holds, and request counters
GET  /_emulator/requests           requests per vendor and operation (and status): the benchmarks' request mix
POST /_emulator/reset              forget everything
POST /_emulator/messy              a portal that already holds data, made from source rows (see seed_messy)
GET|POST /_emulator/faults/{vendor}  read or replace a vendor's injected faults (JSON)
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from accoil_sync.emulator.common import Faults, Vendor
from accoil_sync.emulator.hubspot import HubSpot
from accoil_sync.emulator.intercom import Intercom
from accoil_sync.emulator.segment import Segment


@dataclass(frozen=True)
class Profile:
    """A named set of limits and faults; ``--profile`` picks one."""

    limits: bool = True
    faults: dict[str, Faults] = field(default_factory=dict)


_VENDORS = ("segment", "intercom", "hubspot")

PROFILES: dict[str, Profile] = {
    "clean": Profile(),
    "unlimited": Profile(limits=False),
    "flaky": Profile(
        faults={
            v: Faults(error_rate=0.05, throttle_rate=0.02, drop_rate=0.01, latency_ms=(2, 20))
            for v in _VENDORS
        }
    ),
    # A 429 storm as each vendor deals it: Segment says "retry in 1 s" to 30% of requests; Intercom and
    # HubSpot answer a burst of 429s whose rate-limit headers point at the end of a 10-second window.
    "storm": Profile(
        limits=False,
        faults={
            "segment": Faults(throttle_rate=0.3),
            "intercom": Faults(fail_next=[429] * 3),
            "hubspot": Faults(fail_next=[429] * 3),
        },
    ),
    "errors": Profile(limits=False, faults={v: Faults(error_rate=0.15) for v in _VENDORS}),
    "drops": Profile(limits=False, faults={v: Faults(drop_rate=0.05) for v in _VENDORS}),
    "slow": Profile(
        limits=False,
        faults={v: Faults(latency_ms=(2, 15), slow_rate=0.03, slow_seconds=3) for v in _VENDORS},
    ),
}


class Emulator:
    def __init__(
        self,
        profile: str = "clean",
        seed: int = 0,
        *,
        hubspot_tier: str = "professional",
        intercom_per_10s: int = 1666,
        segment_per_second: int = 1000,
        intercom_search_lag: float = 60.0,
        persist: Path | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown emulator profile {profile!r} (choose from {', '.join(PROFILES)})")
        chosen = PROFILES[profile]
        # Copies: a vendor consumes its scripted statuses, and the profile must stay as declared.
        faults = {name: Faults.from_dict(asdict(f)) for name, f in chosen.faults.items()}
        self.segment = Segment(seed, faults.get("segment"), segment_per_second if chosen.limits else None)
        self.intercom = Intercom(
            seed + 1,
            faults.get("intercom"),
            intercom_per_10s if chosen.limits else None,
            search_lag_seconds=intercom_search_lag,
        )
        self.hubspot = HubSpot(seed + 2, faults.get("hubspot"), hubspot_tier if chosen.limits else None)
        self.profile = profile
        self.persist = persist
        if persist is not None and persist.exists():
            self.load(persist)

    @property
    def vendors(self) -> dict[str, Vendor]:
        return {"segment": self.segment, "intercom": self.intercom, "hubspot": self.hubspot}

    def state(self) -> dict[str, Any]:
        return {name: vendor.state() for name, vendor in self.vendors.items()}  # type: ignore[attr-defined]

    def reset(self) -> None:
        for vendor in self.vendors.values():
            vendor.reset()

    def save(self, path: Path | None = None) -> None:
        """Write every vendor's holdings to a SQLite file (one JSON document per vendor)."""
        path = path or self.persist
        if path is None:
            return
        db = sqlite3.connect(path)
        with db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS vendor_state (vendor TEXT PRIMARY KEY, data TEXT NOT NULL)"
            )
            db.executemany(
                "INSERT OR REPLACE INTO vendor_state VALUES (?, ?)",
                [(n, json.dumps(v.snapshot())) for n, v in self.vendors.items()],
            )
        db.close()

    def load(self, path: Path) -> None:
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT vendor, data FROM vendor_state").fetchall()
        finally:
            db.close()
        for name, data in rows:
            if name in self.vendors:
                self.vendors[name].restore(json.loads(data))

    def seed_messy(self, users: list[dict[str, Any]], accounts: list[dict[str, Any]]) -> dict[str, Any]:
        """Make the CRM vendors look like real portals before a first sync: from the source's own rows, each
        vendor that has a ``seed_messy(users, accounts)`` pre-creates records without our keys, with the
        traps its documentation describes (case-variant and additional emails, two companies on one
        domain, merged and deleted records). Returns each vendor's manifest of what it made, so a test can
        check every object's record afterwards."""
        made: dict[str, Any] = {}
        for name, vendor in self.vendors.items():
            seed = getattr(vendor, "seed_messy", None)
            if seed is not None:
                made[name] = seed(users, accounts)
        return made

    def set_faults(self, vendor: str, faults: Faults) -> None:
        self.vendors[vendor].faults = faults

    def app(self) -> Starlette:
        async def state(request: Request) -> Response:
            return JSONResponse(self.state())

        async def requests(request: Request) -> Response:
            return JSONResponse({name: vendor.counters() for name, vendor in self.vendors.items()})

        async def reset(request: Request) -> Response:
            self.reset()
            return JSONResponse({"reset": True})

        async def faults(request: Request) -> Response:
            name = request.path_params["vendor"]
            if name not in self.vendors:
                return JSONResponse({"error": f"unknown vendor {name}"}, status_code=404)
            if request.method == "POST":
                try:
                    self.set_faults(name, Faults.from_dict(await request.json()))
                except (TypeError, ValueError) as exc:
                    return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(self.vendors[name].faults_dict())

        async def messy(request: Request) -> Response:
            body = await request.json()
            if not isinstance(body, dict):
                return JSONResponse(
                    {"error": 'expected {"users": [...], "accounts": [...]}'}, status_code=400
                )
            return JSONResponse(self.seed_messy(list(body.get("users", [])), list(body.get("accounts", []))))

        async def save(request: Request) -> Response:
            if self.persist is None:
                return JSONResponse({"error": "started without --persist"}, status_code=400)
            self.save()
            return JSONResponse({"saved": str(self.persist)})

        async def healthz(request: Request) -> Response:
            return JSONResponse({"ok": True, "profile": self.profile})

        return Starlette(
            routes=[
                Mount("/segment", routes=self.segment.routes()),
                Mount("/intercom", routes=self.intercom.routes()),
                Mount("/hubspot", routes=self.hubspot.routes()),
                Route("/_emulator/state", state, methods=["GET"]),
                Route("/_emulator/requests", requests, methods=["GET"]),
                Route("/_emulator/reset", reset, methods=["POST"]),
                Route("/_emulator/save", save, methods=["POST"]),
                Route("/_emulator/messy", messy, methods=["POST"]),
                Route("/_emulator/faults/{vendor}", faults, methods=["GET", "POST"]),
                Route("/healthz", healthz, methods=["GET"]),
            ]
        )
