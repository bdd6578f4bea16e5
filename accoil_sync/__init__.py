"""accoil-sync: push engagement metrics (Accoil_* traits) to Segment, Intercom and HubSpot."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accoil-sync")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
