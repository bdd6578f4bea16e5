"""Destinations. Each connector implements ``Connector`` from ``base``."""

from __future__ import annotations

from accoil_sync.config.settings import Settings
from accoil_sync.connectors.base import Capabilities, Change, Connector, Outcome
from accoil_sync.connectors.jsonl import JsonlConnector
from accoil_sync.errors import ConfigError
from accoil_sync.sync.identity import Ownership

AVAILABLE = ("jsonl", "card", "segment", "intercom", "hubspot")


def build_connector(name: str, settings: Settings, run_id: str) -> Connector:
    if name == "jsonl":
        return JsonlConnector(settings.destinations.jsonl, run_id)
    if name == "card":
        from accoil_sync.connectors.card import CardStoreConnector

        return CardStoreConnector(settings.destinations.card, settings.state.path, run_id)
    if name == "segment":
        from accoil_sync.connectors.segment import SegmentConnector

        return SegmentConnector(settings.destinations.segment)
    if name == "intercom":
        from accoil_sync.connectors.intercom import IntercomConnector

        return IntercomConnector(
            settings.destinations.intercom,
            settings.profiles,
            settings.state.directory,
            ownership=Ownership("intercom", settings.state.path),
        )
    if name == "hubspot":
        from accoil_sync.connectors.hubspot import HubSpotConnector

        return HubSpotConnector(
            settings.destinations.hubspot,
            settings.profiles,
            ownership=Ownership("hubspot", settings.state.path),
            schema_cache=settings.state.directory / "hubspot-schema.json",
        )
    raise ConfigError(
        [
            (
                f"destinations.{name}.enabled",
                f"the {name} connector is not available in this version (available: {', '.join(AVAILABLE)})",
            )
        ]
    )


__all__ = ["AVAILABLE", "Capabilities", "Change", "Connector", "Outcome", "build_connector"]
