"""Numbered schema migrations, tracked with ``PRAGMA user_version``.

Each migration runs once, inside one transaction with the version bump, so a crash
mid-migration leaves the previous version intact. Never edit a released migration:
append a new one, then run ``python -m memory.schema_gen``: a new database is created
from the one script it writes (``memory/fresh_schema.py``, ~3 ms instead of every
migration in turn), and a test fails until the script matches the migrations.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the event log, inbound messages, tasks, outbox, notes.
    """
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY,
        ts         TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        actor      TEXT    NOT NULL,
        subject    TEXT    NOT NULL,
        payload    TEXT    NOT NULL,
        prev_hash  TEXT    NOT NULL,
        hash       TEXT    NOT NULL
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_kind ON events(kind);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

    CREATE TABLE inbound (
        id           INTEGER PRIMARY KEY,
        platform     TEXT NOT NULL,
        message_id   TEXT NOT NULL,
        chat_id      TEXT NOT NULL,
        thread_id    TEXT,
        user_id      TEXT NOT NULL,
        text         TEXT NOT NULL,
        received_at  TEXT NOT NULL,
        event_seq    INTEGER NOT NULL,
        UNIQUE (platform, message_id)
    );

    CREATE TABLE tasks (
        id               INTEGER PRIMARY KEY,
        idempotency_key  TEXT NOT NULL UNIQUE,
        kind             TEXT NOT NULL,
        agent            TEXT NOT NULL,
        lane             TEXT NOT NULL,
        state            TEXT NOT NULL,
        intent           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        next_attempt_at  TEXT,
        checkpoint       TEXT
    );
    CREATE INDEX tasks_state ON tasks(state, id);

    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY,
        platform         TEXT NOT NULL,
        chat_id          TEXT NOT NULL,
        thread_id        TEXT,
        reply_to         TEXT,
        body             TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT NOT NULL,
        last_error       TEXT,
        task_id          INTEGER REFERENCES tasks(id),
        created_at       TEXT NOT NULL,
        sent_at          TEXT
    );
    CREATE INDEX outbox_pending ON outbox(state, platform, next_attempt_at);

    CREATE TABLE notes (
        id          INTEGER PRIMARY KEY,
        text        TEXT NOT NULL,
        source_key  TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE notes_fts USING fts5(
        text, content='notes', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
        INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
    # 2: approvals, buttons, and the outbox learning which platform message it sent
    # (so a card can be edited after a decision).
    """
    CREATE TABLE approvals (
        id              INTEGER PRIMARY KEY,
        code            TEXT NOT NULL UNIQUE,
        task_id         INTEGER NOT NULL REFERENCES tasks(id),
        agent           TEXT NOT NULL,
        summary         TEXT NOT NULL,
        action          TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        conversation    TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        created_at      TEXT NOT NULL,
        expires_at      TEXT NOT NULL,
        decided_at      TEXT,
        decided_by      TEXT,
        card_outbox_id  INTEGER REFERENCES outbox(id),
        purpose         TEXT NOT NULL DEFAULT 'action',
        labels          TEXT NOT NULL DEFAULT '["Approve", "Reject"]'
    );
    CREATE INDEX approvals_pending ON approvals(state, expires_at);

    CREATE TABLE buttons (
        token       TEXT PRIMARY KEY,
        approval_id INTEGER REFERENCES approvals(id),
        decision    TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );

    ALTER TABLE outbox ADD COLUMN sent_ref TEXT;
    ALTER TABLE outbox ADD COLUMN replaces_outbox_id INTEGER REFERENCES outbox(id);
    """,
    # 3: durable actions, policy changes made from chat, agent lifecycle, model spend.
    """
    CREATE TABLE actions (
        id               INTEGER PRIMARY KEY,
        task_id          INTEGER NOT NULL REFERENCES tasks(id),
        agent            TEXT NOT NULL,
        name             TEXT NOT NULL,
        connector        TEXT NOT NULL,
        operation        TEXT NOT NULL,
        params           TEXT NOT NULL,
        summary          TEXT NOT NULL,
        risk             TEXT NOT NULL,
        compensation     TEXT,
        idempotency_key  TEXT NOT NULL UNIQUE,
        fingerprint      TEXT NOT NULL,
        gate             TEXT NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        result           TEXT,
        error            TEXT,
        undo_of          INTEGER REFERENCES actions(id),
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX actions_state ON actions(state);
    CREATE INDEX actions_agent_day ON actions(agent, created_at);

    CREATE TABLE policy_overrides (
        key         TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        updated_by  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );

    CREATE TABLE agent_state (
        agent          TEXT PRIMARY KEY,
        state          TEXT NOT NULL,
        reason         TEXT,
        updated_at     TEXT NOT NULL,
        extended_day   TEXT,
        extra_actions  INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE spend (
        id          INTEGER PRIMARY KEY,
        agent       TEXT NOT NULL,
        model       TEXT NOT NULL,
        tokens_in   INTEGER NOT NULL,
        tokens_out  INTEGER NOT NULL,
        cost        REAL NOT NULL,
        at          TEXT NOT NULL
    );
    CREATE INDEX spend_agent_day ON spend(agent, at);
    """,
    # 4: semantic memory. One table holds every stored memory (the notes of migration 1
    # become durable memories of the "notes" namespace, keeping their ids, so "#12" still
    # means the same note). Vectors live here too: the FAISS index is derived from them.
    """
    CREATE TABLE memories (
        id            INTEGER PRIMARY KEY,
        namespace     TEXT NOT NULL,
        tier          TEXT NOT NULL CHECK (tier IN ('working', 'durable')),
        text          TEXT NOT NULL,
        source_key    TEXT NOT NULL UNIQUE,
        source_event  INTEGER,
        created_at    TEXT NOT NULL,
        last_used_at  TEXT NOT NULL,
        expires_at    TEXT,
        model_id      TEXT,
        embedding     BLOB
    );
    CREATE INDEX memories_namespace ON memories(namespace, id);
    CREATE INDEX memories_expiry ON memories(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX memories_model ON memories(model_id);
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        text, content='memories', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;

    INSERT INTO memories (id, namespace, tier, text, source_key, created_at, last_used_at)
        SELECT id, 'notes', 'durable', text, source_key, created_at, created_at FROM notes;
    DROP TRIGGER notes_ai;
    DROP TRIGGER notes_ad;
    DROP TABLE notes_fts;
    DROP TABLE notes;
    """,
    # 5 (issue 14): contacts and leads with their history, invoices with gap-free
    # per-year numbers (the counter row and the invoice row commit together).
    """
    CREATE TABLE contacts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        email       TEXT UNIQUE COLLATE NOCASE,
        company     TEXT,
        created_at  TEXT NOT NULL
    );

    CREATE TABLE leads (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        contact_id      INTEGER NOT NULL REFERENCES contacts(id),
        stage           TEXT NOT NULL
            CHECK (stage IN ('new', 'contacted', 'proposal', 'won', 'lost')),
        source          TEXT NOT NULL,
        value_amount    TEXT,
        value_currency  TEXT,
        note            TEXT NOT NULL DEFAULT '',
        source_key      TEXT NOT NULL UNIQUE,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX leads_stage ON leads(stage, id);
    CREATE INDEX leads_contact ON leads(contact_id);

    CREATE TABLE lead_history (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        lead_id  INTEGER NOT NULL REFERENCES leads(id),
        at       TEXT NOT NULL,
        kind     TEXT NOT NULL,
        detail   TEXT NOT NULL
    );
    CREATE INDEX lead_history_lead ON lead_history(lead_id, id);

    CREATE TABLE invoice_counters (
        year  INTEGER PRIMARY KEY,
        last  INTEGER NOT NULL
    );

    CREATE TABLE invoices (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        number           TEXT NOT NULL UNIQUE,
        year             INTEGER NOT NULL,
        seq              INTEGER NOT NULL,
        client           TEXT NOT NULL,
        recipient        TEXT,
        currency         TEXT NOT NULL,
        lines            TEXT NOT NULL,
        subtotal         TEXT NOT NULL,
        vat              TEXT NOT NULL,
        total            TEXT NOT NULL,
        vat_rate         TEXT,
        issue_date       TEXT NOT NULL,
        due_date         TEXT NOT NULL,
        state            TEXT NOT NULL
            CHECK (state IN ('draft', 'proposed', 'sent', 'paid', 'void')),
        paid_at          TEXT,
        pdf_sha256       TEXT,
        idempotency_key  TEXT NOT NULL UNIQUE,
        recurrence       TEXT,
        reminders_sent   INTEGER NOT NULL DEFAULT 0,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        UNIQUE (year, seq)
    );
    CREATE INDEX invoices_state ON invoices(state, due_date);
    CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices
        BEGIN SELECT RAISE(ABORT, 'invoice numbers are never reused: void it instead'); END;
    CREATE TRIGGER invoices_number_fixed BEFORE UPDATE OF number, year, seq ON invoices
        BEGIN SELECT RAISE(ABORT, 'an invoice keeps its number'); END;
    """,
    # 6 (scheduler): jobs (the truth; APScheduler is only the timer) and one row per
    # scheduled instant handled, so a run is recorded once and submitted once.
    """
    CREATE TABLE jobs (
        id           TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        intent_kind  TEXT NOT NULL,
        payload      TEXT NOT NULL,
        schedule     TEXT NOT NULL,
        compiled     TEXT NOT NULL,
        timezone     TEXT NOT NULL,
        misfire      TEXT NOT NULL,
        state        TEXT NOT NULL
                     CHECK (state IN ('active', 'paused', 'cancelled', 'done')),
        next_run_at  TEXT,
        last_run_at  TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX jobs_due ON jobs(state, next_run_at);
    CREATE INDEX jobs_owner ON jobs(owner, id);

    CREATE TABLE job_runs (
        id               INTEGER PRIMARY KEY,
        job_id           TEXT NOT NULL REFERENCES jobs(id),
        scheduled_at     TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'skipped')),
        late             INTEGER NOT NULL DEFAULT 0,
        missed_since     TEXT,
        coalesced        INTEGER NOT NULL DEFAULT 0,
        reason           TEXT,
        idempotency_key  TEXT,
        at               TEXT NOT NULL,
        submitted_at     TEXT,
        UNIQUE (job_id, scheduled_at)
    );
    CREATE INDEX job_runs_pending ON job_runs(status) WHERE status = 'pending';
    """,
    # 7 (issue 10.6): memory ids are never reused. Without AUTOINCREMENT SQLite hands the
    # id of a deleted newest row to the next insert, so an old "/forget 5" would delete a
    # different note. Rebuild ``memories`` with AUTOINCREMENT (its high-water mark lives in
    # sqlite_sequence), keeping every row, id and vector; the FTS table keeps its rowids.
    # (Tasks, approvals, actions and events are never deleted, so their ids cannot recur.)
    """
    CREATE TABLE memories_v5 (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace     TEXT NOT NULL,
        tier          TEXT NOT NULL CHECK (tier IN ('working', 'durable')),
        text          TEXT NOT NULL,
        source_key    TEXT NOT NULL UNIQUE,
        source_event  INTEGER,
        created_at    TEXT NOT NULL,
        last_used_at  TEXT NOT NULL,
        expires_at    TEXT,
        model_id      TEXT,
        embedding     BLOB
    );
    INSERT INTO memories_v5 (id, namespace, tier, text, source_key, source_event, created_at,
                             last_used_at, expires_at, model_id, embedding)
        SELECT id, namespace, tier, text, source_key, source_event, created_at,
               last_used_at, expires_at, model_id, embedding FROM memories;
    DROP TABLE memories;
    ALTER TABLE memories_v5 RENAME TO memories;
    CREATE INDEX memories_namespace ON memories(namespace, id);
    CREATE INDEX memories_expiry ON memories(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX memories_model ON memories(model_id);
    CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
    END;
    """,
    # 8 (issue 11): state counters for /status, kept by triggers in the same transactions that
    # change states, so /status reads a handful of rows whatever the history size.
    """
    CREATE INDEX outbox_conversation ON outbox(platform, chat_id, thread_id, id);
    CREATE TABLE state_counts (
        tbl   TEXT    NOT NULL,
        state TEXT    NOT NULL,
        n     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tbl, state)
    ) WITHOUT ROWID;
    INSERT INTO state_counts (tbl, state, n)
        SELECT 'tasks', state, COUNT(*) FROM tasks GROUP BY state;
    INSERT INTO state_counts (tbl, state, n)
        SELECT 'outbox', state, COUNT(*) FROM outbox GROUP BY state;
    CREATE TRIGGER tasks_count_ai AFTER INSERT ON tasks BEGIN
        INSERT INTO state_counts (tbl, state, n) VALUES ('tasks', new.state, 1)
            ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER tasks_count_au AFTER UPDATE OF state ON tasks
        WHEN old.state IS NOT new.state BEGIN
        UPDATE state_counts SET n = n - 1 WHERE tbl = 'tasks' AND state = old.state;
        INSERT INTO state_counts (tbl, state, n) VALUES ('tasks', new.state, 1)
            ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER tasks_count_ad AFTER DELETE ON tasks BEGIN
        UPDATE state_counts SET n = n - 1 WHERE tbl = 'tasks' AND state = old.state;
    END;
    CREATE TRIGGER outbox_count_ai AFTER INSERT ON outbox BEGIN
        INSERT INTO state_counts (tbl, state, n) VALUES ('outbox', new.state, 1)
            ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER outbox_count_au AFTER UPDATE OF state ON outbox
        WHEN old.state IS NOT new.state BEGIN
        UPDATE state_counts SET n = n - 1 WHERE tbl = 'outbox' AND state = old.state;
        INSERT INTO state_counts (tbl, state, n) VALUES ('outbox', new.state, 1)
            ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER outbox_count_ad AFTER DELETE ON outbox BEGIN
        UPDATE state_counts SET n = n - 1 WHERE tbl = 'outbox' AND state = old.state;
    END;
    """,
    # 9 (issue 15, /edit): an action may name the one parameter the operator can replace
    # before approving (the text of an email); NULL for every action before this.
    """
    ALTER TABLE actions ADD COLUMN editable TEXT;
    """,
    # 10 (issue 15): circuit breakers per (connector, endpoint) that survive a restart;
    # how many pieces of a long reply went out (a retry sends only the rest); the
    # display name of whoever decided a card.
    """
    CREATE TABLE breakers (
        connector  TEXT    NOT NULL,
        endpoint   TEXT    NOT NULL,
        failures   INTEGER NOT NULL DEFAULT 0,
        opened_at  TEXT,
        updated_at TEXT    NOT NULL,
        PRIMARY KEY (connector, endpoint)
    );
    ALTER TABLE outbox ADD COLUMN pieces_sent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE approvals ADD COLUMN decided_name TEXT;
    """,
    # 11 (issue 11): a long reply body is stored once however often it is sent (a /help is
    # 3.7 KB), the outbox row points at it; retention clears old delivered bodies and
    # deletes the shared ones no row points at any more.
    """
    CREATE TABLE reply_bodies (
        id    INTEGER PRIMARY KEY,
        sha   TEXT NOT NULL UNIQUE,
        body  TEXT NOT NULL
    );
    ALTER TABLE outbox ADD COLUMN body_id INTEGER REFERENCES reply_bodies(id);
    CREATE INDEX outbox_body ON outbox(body_id) WHERE body_id IS NOT NULL;
    -- Nothing on the serving path reads events by kind (reports filter ts, then +kind;
    -- a kind filter scans), so this index only cost every event commit a page (~1/3 of
    -- an EventLog.record) and ~115 B per message. 'soloops events --kind' scans instead.
    DROP INDEX events_kind;
    """,
    # 12 (issue 15, forum topics): a conversation (a Telegram topic, a chat, a Slack
    # channel) bound to a feature; plain text there is that feature's command. The
    # thread is '' for a conversation without one, so the key is one plain primary key.
    """
    CREATE TABLE bindings (
        platform   TEXT NOT NULL,
        chat_id    TEXT NOT NULL,
        thread_id  TEXT NOT NULL DEFAULT '',
        feature    TEXT NOT NULL,
        bound_by   TEXT NOT NULL,
        bound_at   TEXT NOT NULL,
        PRIMARY KEY (platform, chat_id, thread_id)
    ) WITHOUT ROWID;
    """,
    # 13 (issue 11, database growth): events stop storing prev_hash (it is the previous
    # row's hash; memory/events.py derives it) and new rows store their hash as 32 raw
    # bytes (old rows keep hex text: SQLite 3.40 has no unhex(), and the chain is the
    # same either way). The ts index goes: time filters ride the rowid through
    # event_days, the first seq written on each UTC day (memory/events.py since_sql).
    # DROP COLUMN rewrites the rows without firing the append-only triggers.
    """
    CREATE TABLE event_days (
        day        TEXT    PRIMARY KEY,
        first_seq  INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO event_days (day, first_seq)
        SELECT substr(ts, 1, 10), MIN(seq) FROM events GROUP BY substr(ts, 1, 10);
    DROP INDEX events_ts;
    ALTER TABLE events DROP COLUMN prev_hash;
    """,
)

SCHEMA_VERSION: Final[int] = len(MIGRATIONS)
