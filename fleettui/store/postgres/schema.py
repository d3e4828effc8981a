"""The PostgreSQL store's schema, as an ordered list of migrations.

Each migration runs once, in order, in one transaction, under an advisory
lock (two pollers starting on a new database never run one twice);
``schema_migrations`` records which have run. Never edit a migration that
has shipped: add a new one.

The same tables as SQLite's schema, natively typed: times are
``timestamptz`` (a device's local time ``timestamp``), flags ``boolean``,
structured columns ``jsonb``. Webhook payloads stay ``text``: they are the
signed bytes, sent as stored.

Punches are partitioned by month of the device's local time, the one time in
their unique key: a year of 2,000 devices is a few hundred million rows, and
a month is a table of its own to index, vacuum or detach. Partitions are made
by the store before a month's first punch is written (``partitions.py``);
``punches_other`` takes what has no month yet (a clock set to 2099).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the tables of SQLite's migrations 1-6, as they stand
    """
    CREATE TABLE sites (
        id text PRIMARY KEY,
        name text NOT NULL,
        timezone text NOT NULL,
        address text NOT NULL DEFAULT '',
        removed boolean NOT NULL DEFAULT false,
        origin text NOT NULL DEFAULT 'config'
    );
    CREATE TABLE devices (
        id text PRIMARY KEY,
        serial text NOT NULL,
        site_id text NOT NULL REFERENCES sites(id),
        host text NOT NULL,
        port integer NOT NULL,
        transport text NOT NULL,
        name text NOT NULL DEFAULT '',
        enabled boolean NOT NULL DEFAULT true,
        removed boolean NOT NULL DEFAULT false,
        model text, firmware text, platform text, mac text,
        status text NOT NULL DEFAULT 'unknown',
        status_reason text NOT NULL DEFAULT '',
        status_since timestamptz,
        last_seen timestamptz,
        users integer, users_cap integer, records integer, records_cap integer,
        clock_drift_s double precision, clock_checked_at timestamptz,
        last_sync_at timestamptz, last_punch_at timestamptz,
        -- sync cursor: records already stored, and the last of them as read
        synced_records bigint NOT NULL DEFAULT 0,
        synced_tail text NOT NULL DEFAULT '',
        origin text NOT NULL DEFAULT 'config',
        comm_key bigint NOT NULL DEFAULT 0,     -- API devices only
        live_capture boolean,                   -- API devices; NULL: as [poll] says
        push_address text NOT NULL DEFAULT '',
        push_version text NOT NULL DEFAULT '',
        push_attlog_stamp text NOT NULL DEFAULT '0',
        push_operlog_stamp text NOT NULL DEFAULT '0'
    );
    CREATE INDEX devices_site ON devices(site_id, id);
    CREATE TABLE status_history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        device_id text NOT NULL,
        status text NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL
    );
    CREATE INDEX status_history_device_at ON status_history(device_id, at);
    CREATE SEQUENCE punches_id_seq AS bigint;
    CREATE TABLE punches (
        id bigint NOT NULL DEFAULT nextval('punches_id_seq'),
        device_id text NOT NULL,
        user_id text NOT NULL,
        local_time timestamp NOT NULL,
        timezone text NOT NULL,
        utc_time timestamptz NOT NULL,
        tz_flag text NOT NULL,
        state integer NOT NULL,
        verify integer NOT NULL,
        clock_drift_s double precision,
        source text NOT NULL,
        received_at timestamptz NOT NULL,
        UNIQUE (device_id, user_id, local_time, state, verify)
    ) PARTITION BY RANGE (local_time);
    ALTER SEQUENCE punches_id_seq OWNED BY punches.id;
    CREATE TABLE punches_other PARTITION OF punches DEFAULT;
    CREATE INDEX punches_id ON punches(id);
    -- local_time included: a query by UTC range also bounds local time (what prunes the
    -- months), and the panel's counts are then answered from the index alone
    CREATE INDEX punches_utc ON punches(utc_time, id) INCLUDE (local_time, device_id);
    CREATE INDEX punches_device_utc ON punches(device_id, utc_time, id) INCLUDE (local_time);
    CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        device_id text,
        site_id text,
        message text NOT NULL,
        data jsonb NOT NULL DEFAULT '{}'
    );
    CREATE TABLE command_requests (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        idempotency_key text UNIQUE,
        target text NOT NULL,
        target_kind text NOT NULL,
        command text NOT NULL,
        params jsonb NOT NULL,
        fingerprint text NOT NULL,
        source text NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE TABLE commands (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id bigint NOT NULL REFERENCES command_requests(id),
        device_id text NOT NULL,
        command text NOT NULL,
        params jsonb NOT NULL DEFAULT '{}',
        state text NOT NULL DEFAULT 'queued',
        attempts integer NOT NULL DEFAULT 0,
        result jsonb,
        error text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        expires_at timestamptz,
        -- what a push command will report when its lines are answered
        push_plan jsonb
    );
    CREATE INDEX commands_device_state ON commands(device_id, state, id);
    CREATE INDEX commands_request ON commands(request_id);
    CREATE INDEX commands_queued ON commands(device_id) WHERE state = 'queued';
    CREATE TABLE alerts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        target_kind text NOT NULL,
        target text NOT NULL,
        site_id text,
        kind text NOT NULL,
        severity text NOT NULL,
        state text NOT NULL DEFAULT 'open',
        reason text NOT NULL DEFAULT '',
        since timestamptz NOT NULL,
        opened_at timestamptz NOT NULL,
        resolved_at timestamptz,
        escalated_at timestamptz,
        acknowledged_at timestamptz,
        acknowledged_by text NOT NULL DEFAULT '',
        notified boolean NOT NULL DEFAULT false,
        last_notified_at timestamptz,
        notifications integer NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX alerts_one_open ON alerts(target_kind, target, kind)
        WHERE state = 'open';
    CREATE TABLE silences (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        target text NOT NULL,
        until timestamptz NOT NULL,
        reason text NOT NULL DEFAULT '',
        created_by text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        ended_at timestamptz
    );
    CREATE TABLE flap_state (
        device_id text PRIMARY KEY,
        history text NOT NULL DEFAULT '',
        flapping boolean NOT NULL DEFAULT false,
        percent double precision NOT NULL DEFAULT 0,
        changed_at timestamptz
    );
    CREATE TABLE webhook_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- also the webhook-id
        event_type text NOT NULL,
        device_id text,
        payload text NOT NULL,   -- the signed body, byte for byte
        created_at timestamptz NOT NULL,
        state text NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX webhook_outbox_state ON webhook_outbox(state, id);
    CREATE TABLE api_keys (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text NOT NULL DEFAULT '',
        role text NOT NULL,
        prefix text NOT NULL,
        hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL,
        last_used_at timestamptz,
        revoked_at timestamptz
    );
    CREATE TABLE webhook_cursors (
        endpoint text PRIMARY KEY,
        last_outbox_id bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE webhook_deliveries (
        endpoint text NOT NULL,
        outbox_id bigint NOT NULL,
        device_id text,
        state text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        last_error text NOT NULL DEFAULT '',
        latency_ms double precision,
        delivered_at timestamptz,
        PRIMARY KEY (endpoint, outbox_id)
    );
    CREATE INDEX webhook_deliveries_pending
        ON webhook_deliveries(endpoint, state, device_id, outbox_id);
    CREATE INDEX webhook_deliveries_dead ON webhook_deliveries(outbox_id)
        WHERE state = 'dead';
    CREATE TABLE webhook_endpoints (
        id text PRIMARY KEY,
        origin text NOT NULL,               -- 'config' (mirrored at start) or 'api'
        delivery_key text NOT NULL UNIQUE,  -- webhook_deliveries.endpoint of its queue
        url text NOT NULL,
        events jsonb NOT NULL DEFAULT '["*"]',
        secret text NOT NULL DEFAULT '',    -- API endpoints only: a config secret stays in the file
        enabled boolean NOT NULL DEFAULT true,
        hex_signature_header text,
        timeout_s double precision NOT NULL DEFAULT 10.0,
        created_at timestamptz NOT NULL,
        previous_secret text NOT NULL DEFAULT '',
        previous_secret_until timestamptz
    );
    CREATE TABLE device_sessions (
        device_id text NOT NULL,
        session_id bigint NOT NULL,
        opened_at timestamptz NOT NULL,
        PRIMARY KEY (device_id, session_id)
    );
    CREATE TABLE push_lines (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        command_id bigint NOT NULL REFERENCES commands(id),
        device_id text NOT NULL,
        text text NOT NULL,
        state text NOT NULL DEFAULT 'queued',  -- queued, sent, done, failed
        return_code integer,
        result jsonb NOT NULL DEFAULT '{}',
        sent_at timestamptz,
        answered_at timestamptz
    );
    CREATE INDEX push_lines_open ON push_lines(device_id, state, id);
    CREATE INDEX push_lines_of_command ON push_lines(command_id);
    -- the lines awaiting a result, by when they were sent (expire_push_lines, each minute)
    CREATE INDEX push_lines_sent ON push_lines(sent_at) WHERE state = 'sent';
    CREATE TABLE push_users (
        device_id text NOT NULL,
        pin text NOT NULL,
        name text NOT NULL DEFAULT '',
        privilege integer NOT NULL DEFAULT 0,
        card text NOT NULL DEFAULT '',
        PRIMARY KEY (device_id, pin)
    );
    CREATE TABLE push_pending (
        serial text PRIMARY KEY,
        address text NOT NULL DEFAULT '',
        firmware text NOT NULL DEFAULT '',
        push_version text NOT NULL DEFAULT '',
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        requests integer NOT NULL DEFAULT 1
    );
    """,
    # 2: several pollers on one database: who is alive, and which sites each holds
    # (lease rows; "*" is the lease of the work of no site)
    """
    CREATE TABLE pollers (
        id text PRIMARY KEY,
        pid integer NOT NULL,
        host text NOT NULL,
        mode text NOT NULL,
        started_at timestamptz NOT NULL,
        seen_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE site_leases (
        site_id text PRIMARY KEY,
        poller_id text NOT NULL,
        since timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX site_leases_poller ON site_leases(poller_id);
    """,
]
