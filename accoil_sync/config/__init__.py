"""Configuration: a TOML file with ``ACCOIL_SYNC_*`` environment overrides and secrets from env or files."""

from accoil_sync.config.models import (
    ColumnMap,
    DestinationBase,
    DestinationsConfig,
    HubSpotDestination,
    IntercomDestination,
    JsonlDestination,
    ProfileConfig,
    SegmentDestination,
    SourceConfig,
    StateConfig,
)
from accoil_sync.config.settings import Settings, load_settings, masked_dump, secret_values

__all__ = [
    "ColumnMap",
    "DestinationBase",
    "DestinationsConfig",
    "HubSpotDestination",
    "IntercomDestination",
    "JsonlDestination",
    "ProfileConfig",
    "SegmentDestination",
    "Settings",
    "SourceConfig",
    "StateConfig",
    "load_settings",
    "masked_dump",
    "secret_values",
]
