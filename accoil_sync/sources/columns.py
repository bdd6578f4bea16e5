"""Which source columns a file must have, and the file-level error when one is missing.

A metric column that silently stops being read (renamed upstream, a typo in ``[source.columns]``) would make
every object's value look "emptied" and be cleared at every destination, while the rows still pass
validation. So a column the configuration names, or one the source had at the last accepted run, is
required: a file without it is skipped whole, and the error names the columns it does have and the closest.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from accoil_sync.config.models import SourceConfig
from accoil_sync.sources.base import RowError
from accoil_sync.sources.validate import COUNTS, NUMBERS_0_100, canonical_columns
from accoil_sync.traits.names import ObjectKind

# Canonical columns that carry a metric: configuring one of these explicitly makes it required.
METRIC_COLUMNS = frozenset((*NUMBERS_0_100, *COUNTS, "segments", "last_active"))


def key_column(kind: ObjectKind) -> str:
    return "user_id" if kind is ObjectKind.USER else "account_id"


def required_columns(
    kind: ObjectKind, cfg: SourceConfig, columns: Mapping[str, str], expected: Collection[str] = ()
) -> dict[str, str]:
    """Source column -> why it is required, for this kind.

    ``columns`` maps source -> canonical (``column_map``); ``expected`` holds canonical columns the source
    had at the last accepted run.
    """
    by_canon = {canon: src for src, canon in columns.items()}
    out = {by_canon[key_column(kind)]: "the key column"}
    explicit = cfg.columns.model_fields_set
    for canon, src in by_canon.items():
        if src in out:
            continue
        if canon in explicit and canon in METRIC_COLUMNS:
            out[src] = f"mapped in [source.columns] as {canon} = {src!r}"
        elif canon in expected:
            out[src] = "in this source at the last accepted run"
    return out


def missing_column_error(
    kind: ObjectKind, file: str, present: list[str], required: Mapping[str, str]
) -> RowError | None:
    """The file-level error for the first required column ``present`` lacks, or None."""
    missing = [src for src in required if src not in present]
    if not missing:
        return None
    column = missing[0]
    why = required[column]
    shown = ", ".join(repr(c) for c in present[:20]) + (" ..." if len(present) > 20 else "")
    # A missing canonical column (``score``) was renamed to something the product does not read itself:
    # ``score_name`` beside it is the long format's column, not the renamed one. A mapped name (a typo
    # in ``[source.columns]``) may well be closest to a canonical one, so all columns stay candidates.
    canonical = set(canonical_columns(kind))
    candidates = present
    if column in canonical:
        candidates = [c for c in present if c not in canonical and c not in required] or present
    # A name inside the other (``score`` / ``engagement_score``) beats a similar spelling (``segments``).
    # (Names of two characters or fewer -- the '' of a trailing comma, an ``id`` -- are inside too much.)
    contained = [c for c in candidates if len(c) > 2 and (column in c or c in column)]
    close = difflib.get_close_matches(column, contained, n=1, cutoff=0) or difflib.get_close_matches(
        column, candidates, n=1, cutoff=0.5
    )
    hint = f"; closest match: {close[0]!r}" if close else ""
    others = f" (also missing: {', '.join(repr(c) for c in missing[1:4])})" if len(missing) > 1 else ""
    fix = "map it with [source.columns]"
    if why.startswith("in this source"):
        fix += " or, if it was dropped on purpose, run once with --allow-mass-change (its values are cleared)"
    return RowError(
        kind,
        file,
        None,
        column,
        f"the column {column!r} ({why}) is missing{others}; the file has [{shown or 'no columns'}]{hint}; "
        f"nothing of this file was used -- {fix}",
        scope="file",
    )
