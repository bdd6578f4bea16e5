"""A contact missing from HubSpot, created there later, is picked up without --full-refresh: its
``not_found`` rejection is re-checked once its back-off has passed (sync/heal.py)."""

from __future__ import annotations

from pathlib import Path

from accoil_sync.emulator import Emulator
from accoil_sync.sync.state import StateStore
from accoil_sync.traits import ObjectKind
from tests.conftest import WriteConfig
from tests.integration.test_hubspot import hubspot_contact, hubspot_settings, sync, users_csv
from tests.unit.test_heal import age

__all__ = ["hubspot_settings"]  # the fixture, shared with test_hubspot.py


def test_a_contact_created_in_hubspot_later_gets_its_metrics(
    hubspot_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users_csv(tmp_path, ["u1,known@x.io,10,,,", "u2,later@x.io,20,,,"])
    hubspot_contact(emulator, "known@x.io")
    settings = hubspot_settings(create_missing=False)
    first = sync(settings).deliveries["hubspot"]
    assert first.counts == {"ok": 1, "rejected": 1} and dict(first.reasons) == {"not_found": 1}

    # someone creates the contact in HubSpot; our metrics for it do not change
    hubspot_contact(emulator, "later@x.io")
    assert sync(settings).deliveries["hubspot"].counts == {}  # within its first hour: not re-checked yet
    age(settings, 1.5)
    healed = sync(settings)
    assert healed.deliveries["hubspot"].counts == {"ok": 1}
    assert healed.plans["hubspot"].counts[ObjectKind.USER].rechecking == 1
    contacts = {c["email"]: c for c in emulator.hubspot.state()["contacts"].values()}
    assert contacts["later@x.io"].get("accoil_default_score") == "20"
    store = StateStore(settings.state.path)
    assert store.failures() == []
    store.close()
