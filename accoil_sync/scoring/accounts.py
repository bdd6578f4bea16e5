"""Account details for an events source: the name and domain of each account, from ``source.accounts``.

Events carry an account id and nothing else, yet HubSpot matches companies by domain by default and creates
one only with a name (docs/IDENTITY.md). So an events source may name a second input -- a file or glob
beside the events, or a query on the same database -- with ``account_id``, ``name`` and ``domain`` columns
(mapped like a metrics source's, through ``[source.columns]``); the scored accounts carry them from there.
For Segment or RudderStack warehouses that is the latest ``groups`` row's traits (docs/SCORING.md).
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.scoring.db import do
from accoil_sync.scoring.events import FileInfo, files_sql, sqlalchemy_chunks
from accoil_sync.sources.files import expand

TABLE = "account_details"
LABEL = "source.accounts"

log = logging.getLogger(__name__)


def load_account_details(con: duckdb.DuckDBPyConnection, cfg: SourceConfig) -> int:
    """Create ``account_details(account_id, name, domain)``, one row per account (empty without
    ``source.accounts``); returns its number of accounts. An unreadable input or a missing key column is a
    ``SourceError``: metrics without their companies' names would be matched differently, not worse, but
    a broken details input must not pass unnoticed."""
    if not cfg.accounts:
        do(con, f"CREATE OR REPLACE TEMP TABLE {TABLE} (account_id VARCHAR, name VARCHAR, domain VARCHAR)")
        return 0
    relation = _relation(con, cfg)
    try:
        described = do(con, f"DESCRIBE SELECT * FROM ({relation}) LIMIT 0")
        lower = {str(row[0]).lower(): str(row[0]) for row in described}
        columns = cfg.columns
        wanted = {"account_id": columns.account_id, "name": columns.name, "domain": columns.domain}
        found = {canon: lower.get(source.lower()) for canon, source in wanted.items()}
        for canon in ("name", "domain"):
            if found[canon] is None and found["account_id"] is not None:
                # Half the details still help (a name creates, a domain matches), but a renamed column
                # must not pass unnoticed.
                log.warning(
                    "%s has no %s column (looked for %r, mapped with [source.columns]); accounts go without it",
                    LABEL,
                    canon,
                    wanted[canon],
                )
        if found["account_id"] is None or (found["name"] is None and found["domain"] is None):
            missing = "account_id" if found["account_id"] is None else "name or domain"
            raise SourceError(
                f"{LABEL}: no {missing} column (looked for {[wanted[c] for c in wanted]}, the input has "
                f"{list(lower.values())[:12]}); map it with [source.columns]"
            )

        def text(canon: str) -> str:
            column = found[canon]
            if column is None:
                return "NULL::VARCHAR"
            return 'NULLIF(trim(CAST("' + column.replace('"', '""') + "\" AS VARCHAR)), '')"

        # One row per account; where an export repeats one, its non-empty values win (max: deterministic).
        do(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE {TABLE} AS
            SELECT account_id, max(name) AS name, max(domain) AS domain FROM (
              SELECT {text("account_id")} AS account_id, {text("name")} AS name, {text("domain")} AS domain
              FROM ({relation}))
            WHERE account_id IS NOT NULL GROUP BY account_id
            """,
        )
    except duckdb.Error as exc:
        raise SourceError(f"{LABEL}: cannot read the account details: {str(exc).splitlines()[0]}") from None
    finally:
        if cfg.events_from == "sqlalchemy":
            con.unregister("account_details_input")
        if cfg.events_from == "duckdb":
            do(con, "USE memory")
    count = int(do(con, f"SELECT count(*) FROM {TABLE}")[0][0])
    if count == 0:
        log.warning("%s holds no account with an id: no account gets a name or domain this run", LABEL)
    return count


def _relation(con: duckdb.DuckDBPyConnection, cfg: SourceConfig) -> str:
    """SQL over the details input: files, a query on the DuckDB source, or a SQLAlchemy query's rows."""
    assert cfg.accounts is not None
    if cfg.events_from == "files":
        try:
            paths = expand(cfg.accounts)
        except SourceError as exc:
            raise SourceError(f"{LABEL}: {exc}") from None
        return files_sql([FileInfo(str(p), 0, 0) for p in paths], cfg)
    if cfg.events_from == "duckdb":
        do(con, "USE src" if cfg.database else "USE memory")
        return cfg.accounts
    chunks = list(sqlalchemy_chunks(cfg, cfg.accounts, cfg.chunk_size))
    table = pa.concat_tables(chunks) if chunks else pa.table({})
    con.register("account_details_input", table)
    return "SELECT * FROM account_details_input"
