"""The state store's schema, versioned with ``PRAGMA user_version``: each entry migrates one version forward,
in order, in one transaction (sync/state.py)."""

MIGRATIONS: list[str] = [
    # 1: records per (destination, kind, key) and the run ledger
    """
    CREATE TABLE records (
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT,              -- of the source values last acknowledged (NULL: never delivered)
        fields TEXT NOT NULL DEFAULT '{}',   -- JSON: encoded field -> value last acknowledged
        dest_id TEXT,                  -- the destination's own id (Intercom contact id, HubSpot object id)
        version INTEGER NOT NULL DEFAULT 0,  -- acknowledged deliveries so far
        status TEXT NOT NULL DEFAULT 'ok',   -- ok | retryable | rejected
        failed_fingerprint TEXT,       -- the source values a rejection was for
        last_error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (destination, kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,          -- running | ok | partial | failed | interrupted
        exit_code INTEGER,
        invalid_rows INTEGER NOT NULL DEFAULT 0,
        message TEXT
    );
    CREATE TABLE run_counts (
        run_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, destination, outcome)
    );
    CREATE TABLE run_failures (
        run_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, destination, reason)
    );
    """,
    # 2: what the HubSpot card shows (latest metrics per object, and their history), the scheduler's lease
    # and small key/value facts that must survive restarts (alert state)
    """
    CREATE TABLE card_objects (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        email TEXT,                    -- lower-cased, for lookups by the card's email query parameter
        domain TEXT,                   -- lower-cased
        record TEXT NOT NULL,          -- JSON: name, computed_at and metrics per score profile
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE INDEX card_objects_email ON card_objects (email) WHERE email IS NOT NULL;
    CREATE INDEX card_objects_domain ON card_objects (domain) WHERE domain IS NOT NULL;
    CREATE TABLE card_history (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,      -- the delivery version: a repeated batch rewrites, never duplicates
        run_id TEXT NOT NULL,
        at TEXT NOT NULL,
        record TEXT,                   -- NULL: the object left the source and was cleared
        PRIMARY KEY (kind, key, version)
    ) WITHOUT ROWID;
    CREATE INDEX records_dest_id ON records (destination, kind, dest_id) WHERE dest_id IS NOT NULL;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL       -- Unix seconds: an expired lease may be taken over
    );
    CREATE TABLE facts (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: ownership (docs/IDENTITY.md): a vendor record belongs to at most one key per destination and kind.
    # Stores written before this rule may hold one id under two keys; neither can be trusted, so both are
    # forgotten and resolved again. The failure's stable class sits beside its text.
    """
    ALTER TABLE records ADD COLUMN reason_class TEXT;
    DROP INDEX records_dest_id;
    UPDATE records SET dest_id = NULL WHERE dest_id IS NOT NULL AND (destination, kind, dest_id) IN (
        SELECT destination, kind, dest_id FROM records WHERE dest_id IS NOT NULL
        GROUP BY destination, kind, dest_id HAVING count(*) > 1);
    CREATE UNIQUE INDEX records_dest_id ON records (destination, kind, dest_id) WHERE dest_id IS NOT NULL;
    """,
    # 4: write-ahead notes (sync/pending.py): what a batch sent but not yet acknowledged may have written
    """
    CREATE TABLE pending (
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        note TEXT NOT NULL,            -- JSON: field -> every value a write of ours may have left there
        PRIMARY KEY (destination, kind, key)
    ) WITHOUT ROWID;
    """,
]
