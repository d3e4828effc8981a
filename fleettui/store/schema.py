"""The store's schema, as an ordered list of migrations.

Each migration runs once, in order, inside a transaction; ``PRAGMA
user_version`` records how many have run. Never edit a migration that has
shipped: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the engine's tables
    """
    CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        timezone TEXT NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        removed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        serial TEXT NOT NULL,
        site_id TEXT NOT NULL REFERENCES sites(id),
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        transport TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        removed INTEGER NOT NULL DEFAULT 0,
        model TEXT, firmware TEXT, platform TEXT, mac TEXT,
        status TEXT NOT NULL DEFAULT 'unknown',
        status_reason TEXT NOT NULL DEFAULT '',
        status_since TEXT,
        last_seen TEXT,
        users INTEGER, users_cap INTEGER, records INTEGER, records_cap INTEGER,
        clock_drift_s REAL, clock_checked_at TEXT,
        last_sync_at TEXT, last_punch_at TEXT,
        -- sync cursor: records already stored, and the last of them as read
        synced_records INTEGER NOT NULL DEFAULT 0,
        synced_tail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE status_history (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX status_history_device_at ON status_history(device_id, at);
    CREATE TABLE punches (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        local_time TEXT NOT NULL,
        timezone TEXT NOT NULL,
        utc_time TEXT NOT NULL,
        tz_flag TEXT NOT NULL,
        state INTEGER NOT NULL,
        verify INTEGER NOT NULL,
        clock_drift_s REAL,
        source TEXT NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (device_id, user_id, local_time, state, verify)
    );
    CREATE INDEX punches_utc ON punches(utc_time);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        device_id TEXT,
        site_id TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE command_requests (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        target TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        command TEXT NOT NULL,
        params TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES command_requests(id),
        device_id TEXT NOT NULL,
        command TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX commands_device_state ON commands(device_id, state, id);
    CREATE INDEX commands_request ON commands(request_id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        target_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        site_id TEXT,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open',
        reason TEXT NOT NULL DEFAULT '',
        since TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        resolved_at TEXT,
        escalated_at TEXT,
        acknowledged_at TEXT,
        acknowledged_by TEXT NOT NULL DEFAULT '',
        notified INTEGER NOT NULL DEFAULT 0,
        last_notified_at TEXT,
        notifications INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX alerts_one_open ON alerts(target_kind, target, kind)
        WHERE state = 'open';
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        until TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE TABLE flap_state (
        device_id TEXT PRIMARY KEY,
        history TEXT NOT NULL DEFAULT '',
        flapping INTEGER NOT NULL DEFAULT 0,
        percent REAL NOT NULL DEFAULT 0,
        changed_at TEXT
    );
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY,  -- also the event's stable id (webhook-id)
        event_type TEXT NOT NULL,
        device_id TEXT,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX webhook_outbox_state ON webhook_outbox(state, id);
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE webhook_cursors (
        endpoint TEXT PRIMARY KEY,
        last_outbox_id INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE webhook_deliveries (
        endpoint TEXT NOT NULL,
        outbox_id INTEGER NOT NULL,
        device_id TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        latency_ms REAL,
        delivered_at TEXT,
        PRIMARY KEY (endpoint, outbox_id)
    );
    CREATE INDEX webhook_deliveries_pending
        ON webhook_deliveries(endpoint, state, device_id, outbox_id);
    """,
    # 2: webhook endpoints known to the store (config ones mirrored, API ones owned),
    # and sites created through the API (kept when the config is synced)
    """
    CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,          -- 'config' (mirrored at start) or 'api'
        delivery_key TEXT NOT NULL UNIQUE,  -- webhook_deliveries.endpoint of its queue
        url TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '["*"]',
        secret TEXT NOT NULL DEFAULT '',    -- API endpoints only: a config secret stays in the file
        enabled INTEGER NOT NULL DEFAULT 1,
        hex_signature_header TEXT,
        timeout_s REAL NOT NULL DEFAULT 10.0,
        created_at TEXT NOT NULL
    );
    ALTER TABLE sites ADD COLUMN origin TEXT NOT NULL DEFAULT 'config';
    """,
    # 3: dead letters are few among millions of deliveries: a partial index lets the
    # control room count and list them every second without scanning the table
    """
    CREATE INDEX webhook_deliveries_dead ON webhook_deliveries(outbox_id)
        WHERE state = 'dead';
    """,
    # 4: devices registered through the API (polled without a restart, kept when the
    # config is synced), and a webhook secret being rotated: the previous secret
    # still signs, next to the new one, until previous_secret_until
    """
    ALTER TABLE devices ADD COLUMN origin TEXT NOT NULL DEFAULT 'config';
    ALTER TABLE devices ADD COLUMN comm_key INTEGER NOT NULL DEFAULT 0;  -- API devices only
    ALTER TABLE devices ADD COLUMN live_capture INTEGER;  -- API devices, NULL: as [poll] says
    ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
    ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_until TEXT;
    """,
    # 5: UDP sessions a poller opened on its devices and has not closed yet: a UDP
    # session ends only with CMD_EXIT, so a poller killed without one holds the
    # terminal's few session slots; the next poller says the goodbyes at start
    """
    CREATE TABLE device_sessions (
        device_id TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        opened_at TEXT NOT NULL,
        PRIMARY KEY (device_id, session_id)
    );
    """,
    # 6: push devices (ADMS / iclock: they dial in). The lines sent to a device for
    # each queued command, whose ids are the C:<id> it answers with; the upload stamps
    # it last sent (echoed in the next handshake); and serials that called without
    # being known, held until an operator approves them onto a site
    """
    ALTER TABLE devices ADD COLUMN push_address TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN push_version TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN push_attlog_stamp TEXT NOT NULL DEFAULT '0';
    ALTER TABLE devices ADD COLUMN push_operlog_stamp TEXT NOT NULL DEFAULT '0';
    CREATE TABLE push_lines (
        id INTEGER PRIMARY KEY,
        command_id INTEGER NOT NULL REFERENCES commands(id),
        device_id TEXT NOT NULL,
        text TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',  -- queued, sent, done, failed
        return_code INTEGER,
        result TEXT NOT NULL DEFAULT '{}',
        sent_at TEXT,
        answered_at TEXT
    );
    CREATE INDEX push_lines_open ON push_lines(device_id, state, id);
    -- what a push command will report when its lines are answered (counts, names)
    ALTER TABLE commands ADD COLUMN push_plan TEXT;
    -- which devices have work waiting: read every second by the push gateway
    CREATE INDEX commands_queued ON commands(device_id) WHERE state = 'queued';
    -- the users a push device holds, as its OPERLOG uploads and our syncs said
    CREATE TABLE push_users (
        device_id TEXT NOT NULL,
        pin TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        privilege INTEGER NOT NULL DEFAULT 0,
        card TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (device_id, pin)
    );
    CREATE INDEX push_lines_of_command ON push_lines(command_id);
    CREATE TABLE push_pending (
        serial TEXT PRIMARY KEY,
        address TEXT NOT NULL DEFAULT '',
        firmware TEXT NOT NULL DEFAULT '',
        push_version TEXT NOT NULL DEFAULT '',
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 1
    );
    """,
    # 7: pollers and site leases (the tables of several pollers on one database; a SQLite
    # file has one poller, by its lock, which keeps no lease: ``fleettui pollers`` reads
    # them the same way on both backends)
    """
    CREATE TABLE pollers (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        mode TEXT NOT NULL,
        started_at TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE site_leases (
        site_id TEXT PRIMARY KEY,
        poller_id TEXT NOT NULL,
        since TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX site_leases_poller ON site_leases(poller_id);
    """,
]
