"""``accoil-sync emulate --messy``: the configured source's rows, in the shape ``seed_messy`` takes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from accoil_sync.config.settings import Settings
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits.names import ObjectKind

KEY_COLUMN = {ObjectKind.USER: "user_id", ObjectKind.ACCOUNT: "account_id"}


def source_rows(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(users, accounts): each object's key, email, domain and name, validated as a sync would."""
    out: dict[ObjectKind, list[dict[str, Any]]] = {kind: [] for kind in ObjectKind}
    with tempfile.TemporaryDirectory(prefix="accoil-messy-") as tmp:
        stage = load_stage(Stage(Path(tmp), settings.profiles, "messy"), settings.source)
        try:
            for kind in stage.stats.by_kind:
                keys = [
                    str(r[0])
                    for r in stage.con.execute(
                        f"SELECT DISTINCT key FROM final_{kind.value} ORDER BY key"
                    ).fetchall()
                ]
                for key, record in stage.records(kind, keys).items():
                    out[kind].append(
                        {
                            KEY_COLUMN[kind]: key,
                            "email": record.email,
                            "domain": record.domain,
                            "name": record.name,
                        }
                    )
        finally:
            stage.close()
    return out[ObjectKind.USER], out[ObjectKind.ACCOUNT]
