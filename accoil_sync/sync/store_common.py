"""What the state store's parts share: record statuses, timestamps, and SQLite errors as sentences."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from accoil_sync.errors import StateStoreError

STATUS_OK = "ok"
STATUS_RETRYABLE = "retryable"
STATUS_REJECTED = "rejected"
CLEARED = "cleared"  # fingerprint of an object whose traits were cleared by the removal policy


def reason_class_of(status: str, reason_class: str | None = None) -> str:
    """A failure's class, for rows written before classes existed: a retryable failure is a vendor error,
    a rejection the vendor refusing the values."""
    return reason_class or ("vendor_error" if status == STATUS_RETRYABLE else "invalid")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BUSY_SECONDS = 30  # how long a write waits for another process's transaction before giving up


def explain(path: Path, action: str, exc: BaseException) -> StateStoreError:
    """A state store failure as a sentence: the path, what went wrong, and what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered:
        advice = (
            f"another process kept it locked for more than {BUSY_SECONDS}s (a sqlite3 shell or a backup "
            "holding a transaction?); close it and run again"
        )
    elif "readonly" in lowered or "read-only" in lowered or isinstance(exc, PermissionError):
        advice = "it is read-only for this user: accoil-sync must write it (fix the permissions or the mount)"
    elif "full" in lowered or getattr(exc, "errno", None) == 28:
        advice = (
            "the disk is full: free space and run again; nothing acknowledged is lost, the batches that "
            "could not be recorded are planned again"
        )
    elif "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
        advice = (
            "the file is damaged (truncated or overwritten): restore it from a backup (docs/DEPLOY.md); "
            "moving it aside starts from an empty state, and the next sync then explains that it would "
            "re-send everything"
        )
    elif "unable to open" in lowered or isinstance(exc, OSError):
        advice = (
            "the file or its directory cannot be opened or created: check that state.path is right, that "
            "its directory exists or can be created, and that this user may write there"
        )
    else:
        advice = "see the SQLite error above; back the file up before changing anything"
    return StateStoreError(f"state store {path}: cannot {action}: {text}. {advice}")


class Located(Protocol):
    path: Path


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=Located)


def guarded(action: str) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Turn SQLite and file-system errors of a state store method into a ``StateStoreError``."""

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        def checked(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                raise explain(self.path, action, exc) from exc

        checked.__name__, checked.__doc__ = method.__name__, method.__doc__
        return checked

    return wrap
