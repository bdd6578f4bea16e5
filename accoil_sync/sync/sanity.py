"""Sanity warnings: valid data that looks unlike what it claims to be. Never an error (each value passes
validation); always shown in plan and sync output, because a silent wrong value is worse than a loud one.
"""

from __future__ import annotations

from collections.abc import Sequence

from accoil_sync.config.models import ProfileConfig
from accoil_sync.sources.stage import Stage
from accoil_sync.sources.validate import COUNTS, NUMBERS_0_100
from accoil_sync.traits.names import ObjectKind

MIN_ROWS = 5  # below this, "all values alike" is more likely chance than a broken export


def sanity_warnings(stage: Stage, profiles: Sequence[ProfileConfig]) -> list[str]:
    out: list[str] = []
    frequency_seen = False
    for kind in ObjectKind:
        table = f"final_{kind.value}"
        columns = stage.columns(kind)
        if "score" not in columns:
            continue  # nothing staged for this kind
        rows = int(stage.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        if not rows:
            continue
        label = f"{kind.value}s"
        numeric = [*NUMBERS_0_100, "frequency"] + (list(COUNTS[1:]) if kind is ObjectKind.ACCOUNT else [])
        for col in numeric:
            if col not in columns:
                continue
            count, low, high, distinct = stage.con.execute(
                f"SELECT count({col}), min({col}), max({col}), count(DISTINCT {col}) FROM {table}"
            ).fetchall()[0]
            if col == "frequency" and count:
                frequency_seen = True
            if col in NUMBERS_0_100 and count >= MIN_ROWS and 0 < high <= 1:
                out.append(
                    f"every {col} of the {label} is between 0 and 1 ({low:g} to {high:g}, {count} rows): "
                    f"fractions? {col} is a percentage from 0 to 100 (write 80, not 0.8)"
                )
            elif count >= MIN_ROWS and count == rows and distinct == 1:
                out.append(
                    f"{col} is {low:g} in all {rows} {label} rows: a constant metric usually means a broken "
                    "export (a default filled in, a join that lost its data)"
                )
        future = int(
            stage.con.execute(
                f"SELECT count(*) FROM {table} WHERE CAST(last_active AS TIMESTAMPTZ) > "
                f"TIMESTAMPTZ '{stage.now_iso}'"
            ).fetchall()[0][0]
        )
        if future:
            out.append(
                f"{future} {label} row(s) have a last_active date in the future (within "
                "source.max_future_skew_hours): a clock or time-zone problem upstream?"
            )
    if frequency_seen:
        for profile in profiles:
            if "window_days" not in profile.model_fields_set:
                out.append(
                    f"profile {profile.name!r} has no window_days set, so frequency is read as 'active N of "
                    f"the last {profile.window_days} days' (the default); set [[profiles]] window_days to the "
                    "window your scores use"
                )
    return out
