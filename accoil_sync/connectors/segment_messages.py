"""Segment messages and their ids: ``identify``, the synthetic ``group`` and a member's ``group``, as the
bytes of Segment's JSON, and the encoder that decides what a user or account carries (docs/TRAITS.md).

Message ids are deterministic (Segment de-duplicates on ``messageId`` for about 24 hours): a batch re-sent
after Segment acknowledged it and before the state commit repeats its ids, and Segment drops the copies.
"""

from __future__ import annotations

import hashlib
import math

import orjson

from accoil_sync.connectors.base import Change
from accoil_sync.traits.encoders import FieldValue, TraitsEncoder
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind

GROUP_FIELD = "groupId"  # members mode, users: the account the user is linked to (state only, never a trait)


def message_id(change: Change) -> str:
    """Deterministic per (object, delivery version, values): a re-send of an acknowledged but uncommitted
    batch repeats its ids and Segment drops the copy; A -> B -> A within Segment's 24 h de-duplication
    window still delivers the second A, because the delivery version moved on. 45 characters (< 100)."""
    fields = orjson.dumps(change.fields, option=orjson.OPT_SORT_KEYS)
    return _message_id(change, orjson.dumps(change.key), fields).decode()


def _message_id(change: Change, key: bytes, traits: bytes) -> bytes:
    # The bytes of orjson.dumps([kind, key, version, fields], OPT_SORT_KEYS), assembled from the key and
    # traits already encoded for the message so the hot path serialises them once.
    body = b"[%b,%b,%d,%b]" % (_KIND_JSON[change.kind], key, change.version, traits)
    return _digest(body + change.salt.encode())


def _digest(body: bytes) -> bytes:
    return b"accoil-" + hashlib.sha256(body).hexdigest()[:38].encode()


_KIND_JSON = {kind: orjson.dumps(kind.value) for kind in ObjectKind}


def member_message_id(
    account: str, user: str, version: int, traits: dict[str, FieldValue], salt: str = ""
) -> str:
    """A member's group call for an account change: per (account, member, account version, values), so a
    re-sent batch is de-duplicated member by member. Five elements where ``message_id`` hashes four, so
    the two can never coincide."""
    body = orjson.dumps(["account", account, user, version, traits], option=orjson.OPT_SORT_KEYS)
    return _digest(body + salt.encode()).decode()


def link_message_id(
    user: str, account: str, version: int, traits: dict[str, FieldValue], salt: str = ""
) -> str:
    """A user's group call to its (new) account: per (user, account, user version, account values)."""
    body = orjson.dumps(["link", user, account, version, traits], option=orjson.OPT_SORT_KEYS)
    return _digest(body + salt.encode()).decode()


def traits_json(fields: dict[str, FieldValue]) -> bytes:
    """Raises ``ValueError`` for a value Segment's JSON cannot carry: NaN and infinities are not numbers
    there (orjson would quietly write null)."""
    traits = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    if b"null" in traits:  # a cleared trait, or a NaN that orjson wrote as null
        for value in fields.values():
            if type(value) is float and not math.isfinite(value):
                raise ValueError(f"{value} is not a JSON number")
    return traits


def timestamp_json(record: ObjectRecord | None, now: bytes) -> bytes:
    computed_at = record.computed_at if record is not None else None
    return orjson.dumps(computed_at) if computed_at else now


def encode_message(change: Change, now: bytes, fields: dict[str, FieldValue] | None = None) -> bytes:
    """The identify (user) or synthetic group (account) message as Segment's JSON; ``now`` is the JSON
    string of the timestamp for messages whose record has no computed-at time; ``fields`` the traits when
    they are not all of the change's fields (members mode keeps ``groupId`` out of a user's traits).

    Raises ``ValueError`` for a value Segment's JSON cannot carry.
    """
    traits = traits_json(change.fields if fields is None else fields)
    key = orjson.dumps(change.key)
    tail = b'"messageId":"%b","timestamp":%b,"traits":%b}' % (
        _message_id(change, key, traits),
        timestamp_json(change.record, now),
        traits,
    )
    if change.kind is ObjectKind.USER:
        return b'{"type":"identify","userId":%b,%b' % (key, tail)
    anonymous = orjson.dumps(anonymous_group_id(change.key))
    return b'{"type":"group","groupId":%b,"anonymousId":%b,%b' % (key, anonymous, tail)


def encode_group(group_id: str, user_id: str, message_id: str, timestamp: bytes, traits: bytes) -> bytes:
    """A group call from a known user: Segment's spec for associating a user with a group."""
    return b'{"type":"group","groupId":%b,"userId":%b,"messageId":"%b","timestamp":%b,"traits":%b}' % (
        orjson.dumps(group_id),
        orjson.dumps(user_id),
        message_id.encode(),
        timestamp,
        traits,
    )


def anonymous_group_id(account_id: str) -> str:
    """``group`` needs a userId or anonymousId; a stable one derived from the account (docs/TRAITS.md)."""
    return "accoil-account-" + hashlib.sha256(account_id.encode()).hexdigest()[:24]


class SegmentEncoder:
    """The contract's traits; in members mode users also carry ``groupId`` (their account), so a user who
    joins or moves to an account is planned and linked even when no trait of theirs changed. The signature
    differs per mode: switching modes re-plans every object once (and links every user once)."""

    def __init__(self, link_users: bool) -> None:
        self.link_users = link_users
        self._traits = TraitsEncoder()

    @property
    def signature(self) -> str:
        # The synthetic mode keeps the signature of earlier releases: upgrading with it re-sends nothing.
        return self._traits.signature + ("/members" if self.link_users else "")

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]:
        out = self._traits.encode(record)
        if self.link_users and record.kind is ObjectKind.USER and record.account_id:
            out[GROUP_FIELD] = record.account_id
        return out

    def cleared(self, field: str) -> FieldValue:
        return None
