"""Write-ahead notes: what a batch may leave at the destination, recorded before it is sent.

State holds only what a destination acknowledged. A run killed between sending a batch and committing it --
or a record that failed after part of its writes landed (an Intercom tag added in bulk, then the contact's
update refused) -- leaves values at the vendor that state never heard of. When the source then moves on, or
back to the acknowledged values, a diff against state alone would leave them there: a segment tag the user
has left, a score the source reverted that is never written back.

So before a batch goes out, each of its keys gets a note: per field it writes, every value it may have left
there (a field written by several interrupted runs may hold any of theirs). The acknowledgement deletes the
note in the transaction that records the values; a failure keeps it. A key still noted when it is next
planned is planned even if its values look unchanged, each noted field is written again with the source's
value, and the ``previous`` values a connector diffs against (tags to remove, a company to leave) include
every noted one.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from accoil_sync.traits.encoders import Encoder, FieldValue

# field -> every value a write of ours may have left in it since the last acknowledgement
Note = dict[str, list[FieldValue]]


def merge(note: Note | None, fields: Mapping[str, FieldValue]) -> Note:
    """``note`` with the values of one more write: a value already noted is not repeated."""
    out: Note = {name: list(values) for name, values in (note or {}).items()}
    for name, value in fields.items():
        values = out.setdefault(name, [])
        if value not in values:
            values.append(value)
    return out


def replan(
    note: Note,
    fields: MutableMapping[str, FieldValue],
    previous: MutableMapping[str, FieldValue],
    desired: Mapping[str, FieldValue],
    delivered: Mapping[str, FieldValue],
    encoder: Encoder,
    *,
    clear_absent: bool = True,
) -> None:
    """Fold a leftover ``note`` into one object's planned change, in place.

    Every noted field is written again: ``desired``'s value, or the clear value when the source has none
    (unless ``clear_absent`` is off: an object with an invalid row clears nothing). ``previous`` -- what the
    destination may hold -- becomes, for a list (tags), every element delivered or noted but not wanted, so
    that the wanted ones are all added again; for a single value
    (a company), a noted value other than the one to write when there is one, so that a connector that acts
    on a change (leaving a company) does. For a list, ``previous`` is then no longer what was acknowledged
    but what may be there and is not wanted."""
    for name, values in note.items():
        if name in desired:
            want = desired[name]
        elif clear_absent:
            want = encoder.cleared(name)
        else:
            continue
        fields.setdefault(name, want)
        want = fields[name]
        held = delivered.get(name, previous.get(name))
        if isinstance(want, list) or any(isinstance(v, list) for v in values):
            # A noted write may have added any of its elements, or removed any it left out: every element
            # wanted is added again, every other one delivered or noted is removed (removing an absent tag
            # is a no-op at the vendor).
            elements = set(held) if isinstance(held, list) else set()
            for value in values:
                elements.update(value if isinstance(value, list) else [])
            previous[name] = sorted(elements - set(want if isinstance(want, list) else []))
        else:
            other = [v for v in values if v != want and v is not None]
            if other:
                previous[name] = other[-1]
            elif name in delivered:
                previous[name] = delivered[name]
