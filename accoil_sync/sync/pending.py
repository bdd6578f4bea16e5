"""Write-ahead notes: what a batch may leave at the destination, recorded before it is sent.

State holds only what a destination acknowledged. A run killed between sending a batch and committing it --
or a record that failed after part of its writes landed (an Intercom tag added in bulk, then the contact's
update refused) -- leaves values at the vendor that state never heard of. When the source then moves on, or
back to the acknowledged values, a diff against state alone would leave them there: a segment tag the user
has left, a score the source reverted that is never written back.

So before a batch goes out, each of its keys gets a note of the fields it writes and the values they may now
hold. An acknowledgement resolves the fields it wrote, in the transaction that records them (a note with no
field left is deleted); a failure resolves none. A key still noted when it is next planned is planned even
if its values look unchanged, each noted field is written again with the source's value, and the
``previous`` values a connector diffs against (tags to remove, a company to leave) include the noted ones.

What a note keeps per field is bounded, because a key that fails every run is noted again every run: for a
list (tags) the union of the elements written, for a single value the last two distinct values (enough to
know whether the destination may hold one other than the value to write).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping

import orjson

from accoil_sync.traits.encoders import Encoder, FieldValue

# field -> the values a write of ours may have left in it since the last acknowledgement of that field
Note = dict[str, list[FieldValue]]


def merge(note: Note | None, fields: Mapping[str, FieldValue]) -> Note:
    """``note`` with the values of one more write."""
    if not note:
        # A key's first note, the common case and on the hot path: one value per field, nothing to combine.
        return {name: [value] for name, value in fields.items()}
    out: Note = {name: list(values) for name, values in note.items()}
    for name, value in fields.items():
        values = out.get(name, [])
        if isinstance(value, list) or any(isinstance(v, list) for v in values):
            out[name] = [sorted(_elements([*values, value]))]
        else:
            out[name] = [*(v for v in values if v != value), value][-2:]
    return out


def replan(
    note: Note,
    fields: MutableMapping[str, FieldValue],
    previous: MutableMapping[str, FieldValue],
    desired: Mapping[str, FieldValue],
    delivered: Mapping[str, FieldValue],
    encoder: Encoder,
    *,
    held: bool = False,
) -> bool:
    """Fold a leftover ``note`` into one object's planned change, in place; True when the destination may
    hold a value other than the one now written (then an id derived from the values alone could repeat the
    lost write's: see ``salt``).

    Every noted field is written again: ``desired``'s value, or the clear value when the source has none.
    An object with an invalid row (``held``) clears nothing and keeps every list element delivered, as its
    plan without a note does. ``previous`` -- what the destination may hold -- becomes, for a list (tags),
    every element delivered or noted that is not wanted (so that the wanted ones are all added again and the
    others removed: removing an absent tag is a no-op at the vendor); for a single value (a company), a
    noted value other than the one to write when there is one, so that a connector acting on a change
    (leaving a company) does. For a list, ``previous`` is then what may be there and is not wanted rather
    than what was acknowledged."""
    other = False
    for name, values in note.items():
        if name in desired:
            want = desired[name]
            if held and isinstance(want, list):
                want = sorted(set(want) | _elements([delivered.get(name)]))
        elif held:
            continue
        else:
            want = encoder.cleared(name)
        fields.setdefault(name, want)
        want = fields[name]
        if isinstance(want, list) or any(isinstance(v, list) for v in values):
            wanted = set(want) if isinstance(want, list) else set()
            maybe = _elements([*values, delivered.get(name)])
            previous[name] = sorted(maybe - wanted)
            other = other or bool(_elements(values) - wanted)
        else:
            others = [v for v in values if v != want and v is not None]
            if others:
                previous[name] = others[-1]
                other = True
            elif name in delivered:
                previous[name] = delivered[name]
    return other


def salt(note: Note) -> str:
    """What makes an idempotency id (Segment's messageId, the jsonl delivery id) differ from a lost write's
    at the same delivery version: a digest of the note. Without it, A acknowledged, B sent and lost, A sent
    and lost, then B again would repeat the first B's id, and Segment would drop it as a copy."""
    return hashlib.sha256(orjson.dumps(note, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _elements(values: list[FieldValue]) -> set[str]:
    out: set[str] = set()
    for value in values:
        if isinstance(value, list):
            out.update(str(v) for v in value)
    return out
