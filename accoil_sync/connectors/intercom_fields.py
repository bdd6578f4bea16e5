"""How one planned change maps onto Intercom's calls: custom attributes, the tag changes, the company field;
and a vendor error as that record's outcome. Shared by the contact and the company writers."""

from __future__ import annotations

from accoil_sync.connectors.base import Change, Outcome
from accoil_sync.connectors.intercom_tags import Retag
from accoil_sync.errors import DestinationError, RetryableError
from accoil_sync.traits.encoders import FieldValue, IntercomEncoder

TAGS, COMPANY = IntercomEncoder.TAGS_FIELD, IntercomEncoder.COMPANY_FIELD


def outcome_of(key: str, exc: DestinationError) -> Outcome:
    if isinstance(exc, RetryableError):
        return Outcome.retry(key, str(exc))
    return Outcome.reject(key, (exc.vendor_reason or str(exc))[:600])


def custom_attributes(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    """The custom attributes of a change: every field but the tags and the company."""
    return {k: v for k, v in fields.items() if k not in (TAGS, COMPANY)}


def tag_changes(change: Change, object_id: str) -> Retag | None:
    if TAGS not in change.fields:
        return None
    new = set(change.fields[TAGS] or [])
    old = set(change.previous.get(TAGS) or [])  # only tags we applied are ever removed
    return Retag(object_id, new - old, old - new) if new != old else None
