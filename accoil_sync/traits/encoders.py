"""Per-destination encoding of canonical traits into the field names and value formats each vendor wants.

An encoder is pure: record in, ``{field name: value}`` out. The planner diffs these encoded values against
what was last delivered, so anything that changes an encoding must change ``signature`` -- the state store
keeps the signature per destination and re-plans every object when it changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import TRAIT_SUFFIX, Metric, ObjectKind, trait_name

FieldValue = Any  # JSON-compatible: str, int, float, bool, list[str] or None


class Encoder(Protocol):
    """Turns a record into destination fields."""

    @property
    def signature(self) -> str: ...

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]: ...

    def cleared(self, field: str) -> FieldValue:
        """The value that clears ``field`` at the destination."""
        ...


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class TraitsEncoder:
    """Trait names as the contract writes them; numbers as numbers, segments as a list, dates as ISO-8601.

    Used by Segment (identify/group traits) and the ``jsonl`` audit destination.
    """

    signature = "traits/1"

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]:
        return {
            name: list(value) if type(value) is tuple else value for name, value in record.traits().items()
        }

    def cleared(self, field: str) -> FieldValue:
        return None


# ---------------------------------------------------------------------------------------------- Intercom


def intercom_attribute(kind: ObjectKind, score_name: str, metric: Metric) -> str:
    """Contact attributes keep the trait name; company attributes insert ``Account``.

    Intercom refuses one attribute name on both contacts and companies. Sanitised score names contain
    only letters and digits, and no contact suffix starts with ``Account_``, so
    ``Accoil_{scoreName}_Account_{Suffix}`` can never equal a contact attribute name.
    """
    if kind is ObjectKind.USER:
        return trait_name(score_name, metric)
    return f"Accoil_{score_name}_Account_{TRAIT_SUFFIX[metric]}"


INTERCOM_MAX_STRING = 255  # Intercom stores at most 255 characters in a string attribute


class IntercomEncoder:
    """Custom attributes in Intercom's formats; segments also as a ``tags`` field the connector diffs.

    Dates are Unix seconds, segments are a comma-separated string (filterable with "contains", cut to
    Intercom's 255 characters), and the ``tags`` pseudo-field holds the tag names the object should carry:
    ``{tag_prefix}{segment}``, or ``{tag_prefix}{scoreName}: {segment}`` when several profiles are synced
    (two profiles may name a segment alike). The prefix makes every tag accoil-sync manages recognisable;
    the connector removes only tags it applied (the previous value of ``tags``).
    """

    TAGS_FIELD = "tags"
    COMPANY_FIELD = "company"  # users: the account to attach the contact to

    def __init__(
        self, tag_prefix: str = "Accoil: ", attach_companies: bool = False, per_profile_tags: bool = False
    ) -> None:
        self.tag_prefix = tag_prefix
        self.attach_companies = attach_companies
        self.per_profile_tags = per_profile_tags

    @property
    def signature(self) -> str:
        return f"intercom/2/{self.tag_prefix}/{int(self.attach_companies)}/{int(self.per_profile_tags)}"

    def tag(self, score_name: str, segment: str) -> str:
        scoped = f"{score_name}: {segment}" if self.per_profile_tags else segment
        return f"{self.tag_prefix}{scoped}"

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]:
        out: dict[str, FieldValue] = {}
        tags: set[str] = set()
        for score_name in sorted(record.metrics):
            for metric, value in record.metrics[score_name].items():
                name = intercom_attribute(record.kind, score_name, metric)
                if metric is Metric.SEGMENTS:
                    assert isinstance(value, tuple)
                    out[name] = ", ".join(value)[:INTERCOM_MAX_STRING]
                    tags.update(self.tag(score_name, segment) for segment in value)
                elif metric is Metric.LAST_ACTIVE:
                    assert isinstance(value, str)
                    out[name] = int(parse_iso(value).timestamp())
                else:
                    out[name] = value
        out[self.TAGS_FIELD] = sorted(tags)
        if self.attach_companies and record.kind is ObjectKind.USER and record.account_id:
            out[self.COMPANY_FIELD] = record.account_id
        return out

    def cleared(self, field: str) -> FieldValue:
        # Intercom documents null as an attribute's "unknown" and refuses "" for numbers and dates, so
        # null clears every attribute type; no tags and no company clear the two pseudo-fields.
        if field == self.TAGS_FIELD:
            return []
        return None


# ----------------------------------------------------------------------------------------------- HubSpot

_OPTION_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$")


def hubspot_property(score_name: str, metric: Metric) -> str:
    """HubSpot internal names must be lower case and under 100 characters; the label keeps the trait name."""
    return trait_name(score_name, metric).lower()


def hubspot_option_value(segment: str) -> str:
    """A segment name as a multi-checkbox option value.

    Names made of letters, digits, spaces, ``_ . -`` are used as they are; anything else (a ``;`` would
    split the value HubSpot stores) gets a stable slug with a short hash so two names never share a value.
    """
    if _OPTION_SAFE.match(segment) and segment == segment.strip() and len(segment) <= 200:
        return segment
    slug = re.sub(r"[^a-z0-9]+", "_", segment.lower()).strip("_")[:60] or "segment"
    digest = hashlib.sha256(segment.encode()).hexdigest()[:8]
    return f"{slug}_{digest}"


def hubspot_date(value: str) -> str:
    """Date properties take midnight UTC in epoch milliseconds; anything else is a 400 INVALID_DATE."""
    day = parse_iso(value).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return str(int(midnight.timestamp()) * 1000)


def hubspot_number(value: int | float) -> str:
    return str(value)


class HubSpotEncoder:
    """Property values as HubSpot's API expects them: every value a string."""

    signature = "hubspot/1"

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]:
        out: dict[str, FieldValue] = {}
        for score_name in sorted(record.metrics):
            for metric, value in record.metrics[score_name].items():
                name = hubspot_property(score_name, metric)
                if metric is Metric.SEGMENTS:
                    assert isinstance(value, tuple)
                    out[name] = ";".join(hubspot_option_value(s) for s in value)
                elif metric is Metric.LAST_ACTIVE:
                    assert isinstance(value, str)
                    out[name] = hubspot_date(value)
                else:
                    assert isinstance(value, int | float)
                    out[name] = hubspot_number(value)
        return out

    def cleared(self, field: str) -> FieldValue:
        return ""


def diff_fields(
    desired: Mapping[str, FieldValue], delivered: Mapping[str, FieldValue], encoder: Encoder
) -> dict[str, FieldValue]:
    """Fields whose value differs; fields delivered before and now absent are cleared."""
    changed = {k: v for k, v in desired.items() if delivered.get(k, _MISSING) != v}
    for k in delivered:
        if k not in desired and delivered[k] != encoder.cleared(k):
            changed[k] = encoder.cleared(k)
    return dict(sorted(changed.items()))


_MISSING = object()
