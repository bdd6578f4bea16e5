"""What HubSpot's answers mean for one record: a report for a key with nothing to write to, a stale id,
a property or option that is gone (schema drift), and the notes ``plan --resolve`` adds."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from accoil_sync.connectors.base import Outcome
from accoil_sync.connectors.hubspot_identity import Match, normalise_email
from accoil_sync.errors import PermanentError

CONFLICT_HINT = "nothing was written (see docs/IDENTITY.md)"


def reported(key: str, match: Match, create_missing: bool) -> Outcome:
    """The rejection for a key whose lookup found nothing to write to."""
    if match.verdict == "conflict":
        return Outcome.reject(key, f"conflict: {match.detail}; {CONFLICT_HINT}", "conflict")
    if match.verdict == "ambiguous":
        return Outcome.reject(key, match.detail, "ambiguous")
    if match.verdict == "invalid":
        return Outcome.reject(key, match.detail, "invalid")
    hint = "" if create_missing else "; not created because destinations.hubspot.create_missing is off"
    return Outcome.reject(key, f"not found: {match.detail}{hint}", "not_found")


def email_moved(email: str | None, props: dict[str, Any]) -> list[str]:
    """A note when the source's email is no longer the contact's: the object keeps its record anyway."""
    wanted = normalise_email(email)
    there = normalise_email(props.get("email"))
    extra = str(props.get("hs_additional_emails") or "").lower().split(";")
    if not wanted or wanted == there or wanted in extra:
        return []
    return [
        f"the source's email is now {wanted!r}, the contact's is {there!r}: it keeps this contact (identity is "
        "the key; docs/IDENTITY.md says how to re-match)"
    ]


def verdict(outcome: Outcome | None) -> Any:
    cls = outcome.reason_class if outcome else None
    return cls if cls in ("conflict", "ambiguous") else "not_found"


DRIFT = re.compile(r"PROPERTY_DOESNT_EXIST|does not exist|INVALID_OPTION|was not one of the allowed options")


def missing_ids(reason: str, ids: Iterable[str]) -> set[str]:
    """The batch's record ids a whole-batch OBJECT_NOT_FOUND answer names."""
    if "OBJECT_NOT_FOUND" not in reason and "not found" not in reason.lower():
        return set()
    named = set(re.findall(r"\d+", reason))
    return {i for i in ids if i in named}


def drifted(outcome: Outcome) -> bool:
    """HubSpot refused a write because a property or option accoil-sync knew of is gone."""
    return outcome.reason_class == "invalid" and bool(DRIFT.search(outcome.reason or ""))


def reason_class(text: str, mode: str) -> Any:
    """HubSpot's word for an id it does not know, on a write by id, means the stored id went stale."""
    if mode == "update" and ("OBJECT_NOT_FOUND" in text or "Object not found" in text):
        return "not_found"
    return "invalid"


def reason_text(exc: PermanentError) -> str:
    return (exc.vendor_reason or str(exc))[:600]
