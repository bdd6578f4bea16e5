"""The connector protocol: one narrow surface, capabilities as data.

The delivery engine batches, bounds concurrency and commits state; a connector only makes sure the
destination's schema exists and turns one batch of changes into one outcome per record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from accoil_sync.traits.encoders import Encoder, FieldValue
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind

Operation = Literal["upsert", "clear", "refresh"]

# Why a record failed, as a stable class (the reason text carries the details: keys, the vendor's words).
# ``HEALABLE`` classes can turn into a success without the source changing (the record gets created in the
# CRM, a duplicate gets merged), so they are worth checking again on later runs.
ReasonClass = Literal[
    "invalid",  # the vendor refused the values (a validation error)
    "not_found",  # no vendor record to write to, and creating is off or impossible
    "conflict",  # the vendor record belongs to another source key (docs/IDENTITY.md)
    "ambiguous",  # more than one vendor record matches; we do not guess
    "vendor_error",  # retries exhausted, or an answer we could not read
]
HEALABLE: frozenset[str] = frozenset({"not_found", "conflict", "ambiguous"})


@dataclass(slots=True)  # not frozen: one per planned object, and a frozen init costs twice as much
class Change:
    """One object's planned write to one destination: only the fields that differ from what was acked."""

    destination: str
    kind: ObjectKind
    key: str
    op: Operation
    fields: dict[str, FieldValue]  # field -> new value (the destination's clear value when clearing)
    # field -> value last acknowledged, for the same fields; for a key with a leftover write-ahead note, what
    # the destination may hold there instead (sync/pending.py: for tags, those that may be there unwanted)
    previous: dict[str, FieldValue]
    record: ObjectRecord | None  # None when the object left the source
    fingerprint: str  # stored on acknowledgement
    dest_id: str | None = None
    version: int = 0  # acknowledged deliveries so far (Segment derives its messageId from it)
    is_new: bool = False
    # Set when a lost write may have left other values (sync/pending.py ``salt``): mixed into ids that are
    # otherwise derived from the version and values, so this write is not taken for a copy of that one.
    salt: str = ""


@dataclass(slots=True)  # not frozen, for the same reason as Change
class Outcome:
    """What the destination said about one record of a batch."""

    key: str
    status: Literal["ok", "retryable", "rejected"]
    dest_id: str | None = None
    reason: str | None = None
    fields: dict[str, FieldValue] | None = None  # what was actually written, when it differs from the plan
    reason_class: ReasonClass | None = None

    @classmethod
    def ok(cls, key: str, dest_id: str | None = None) -> Outcome:
        return cls(key, "ok", dest_id)

    @classmethod
    def retry(cls, key: str, reason: str) -> Outcome:
        return cls(key, "retryable", reason=reason, reason_class="vendor_error")

    @classmethod
    def reject(cls, key: str, reason: str, reason_class: ReasonClass = "invalid") -> Outcome:
        return cls(key, "rejected", reason=reason, reason_class=reason_class)

    @classmethod
    def conflict(cls, key: str, owner: str, dest_id: str, vendor: str) -> Outcome:
        """The record ``key`` resolved to already belongs to ``owner``: reported, never written."""
        return cls.reject(
            key,
            f"conflict: the {vendor} record {dest_id} this key matches belongs to key {owner!r}; "
            "nothing was written (see docs/IDENTITY.md)",
            "conflict",
        )


Verdict = Literal["update", "create", "not_found", "ambiguous", "conflict"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a read-only lookup (``plan --resolve``) says a key's delivery would do, before anything is
    written: update an existing record, create one, or be reported (not found, ambiguous, conflict)."""

    key: str
    verdict: Verdict
    dest_id: str | None = None
    detail: str | None = None  # e.g. the other key of a conflict, the candidate ids of an ambiguity


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_batch: int
    max_concurrency: int
    kinds: frozenset[ObjectKind] = field(default_factory=lambda: frozenset(ObjectKind))
    # The connector has ``async resolve(kind, batch) -> list[Resolution]``: read-only identity lookups.
    resolves: bool = False


class Connector(Protocol):
    name: str
    capabilities: Capabilities
    encoder: Encoder

    async def ensure_schema(self) -> None:
        """Create what must exist before the first write (properties, attributes); idempotent."""
        ...

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        """Write one batch; return one outcome per change. Raise ``DestinationUnavailable`` to stop."""
        ...

    async def aclose(self) -> None: ...


class SourceView(Protocol):
    """A read-only view of this run's validated source, handed to a connector whose messages for one object
    depend on others (Segment's member group calls: an account's members, a user's account traits)."""

    def members(self, accounts: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(account key, user key) for each source user whose ``account_id`` names one of ``accounts``,
        ordered by account, then user."""
        ...

    def records(self, kind: ObjectKind, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        """The source's current records for ``keys`` (absent keys are left out)."""
        ...


@runtime_checkable
class UsesSourceView(Protocol):
    """A connector that wants a ``SourceView``; the runner binds one before the first delivery."""

    def bind_source(self, view: SourceView) -> None: ...
