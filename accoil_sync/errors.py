"""The error tree, grouped by the action each error triggers.

- ``UserError``: the user must fix something (config, input files); the CLI exits 2 without a traceback.
- ``DestinationError`` and its subclasses describe a vendor answer and carry it, so that a report can quote
  the vendor's own reason. ``RetryableError`` is tried again (now by the retry policy, or next run),
  ``PermanentError`` is reported until the record's metrics change, and ``DestinationUnavailable`` stops the
  destination for this run (401/403, or an outage that outlived the retry budget).
"""

from __future__ import annotations


class AccoilSyncError(Exception):
    """Root of every error this package raises on purpose."""


class UserError(AccoilSyncError):
    """Something the user has to fix; shown as a one-paragraph message and exit code 2."""


class ConfigError(UserError):
    """The configuration is invalid; ``problems`` lists (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        # A command-line option (``--format``) is not the configuration file's fault.
        what = (
            "invalid option"
            if all(path.startswith("--") for path, _ in problems)
            else "invalid configuration"
        )
        super().__init__(f"{what} ({len(problems)} problem(s)):\n{lines}")


class SourceError(UserError):
    """A metrics source cannot be read at all (missing file, missing key column, bad query)."""


class DestinationError(AccoilSyncError):
    """A destination answered with an error; keeps the status and the vendor's (redacted) reason."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        vendor_reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_reason = vendor_reason
        self.retry_after = retry_after


class RetryableError(DestinationError):
    """429, 5xx, timeouts, dropped connections: worth trying again."""


class PermanentError(DestinationError):
    """A validation error: retrying the same payload cannot succeed."""


class DestinationUnavailable(DestinationError):
    """Stop this destination for the run: bad credentials, missing scopes, or retries exhausted.
    ``before_sending``: raised before any request of the batch went out (its write-ahead notes can go)."""

    before_sending: bool = False


# Exit codes beyond 0-3 (runner.py), from sysexits.h so that they cannot be mistaken for a record outcome.
EXIT_STATE = 74  # EX_IOERR: the state store cannot be opened, read or written
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the state store's lease; try again later


class StateStoreError(AccoilSyncError):
    """The state store cannot be opened, read or written; the message names the path and what to do."""

    exit_code = EXIT_STATE


class SyncBusy(AccoilSyncError):
    """Another run holds the state store's lease and this one was told not to wait (``state.on_busy``)."""

    exit_code = EXIT_BUSY
