"""The sealer, revised: the chain head in one query (and a head that starts at (-1, -1) on an empty
chain), and the transactions of other databases placed by their full 64-bit xids, so that a
remembered one can never be confused with a later transaction after xid wraparound."""

from django.db import migrations

SEALER_SQL = r"""
CREATE OR REPLACE FUNCTION audit_seal_pending(batch_size integer, max_batches integer, wait boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash bytea;
    head_event bigint;
    head_xact bigint;
    head_id bigint;
    batch_ids bigint[];
    batch_xacts bigint[];
    batch_canonicals text[];
    seqs bigint[];
    prev_hashes bytea[];
    digests bytea[];
    hashes bytea[];
    digest bytea;
    n integer;
    sealed integer := 0;
    horizon_xid bigint;
    blocker bigint;
    -- Per session: xids known to run in other databases, and ones known (or taken) to be ours.
    elsewhere bigint[] := coalesce(nullif(current_setting('arbiter.sealer_xids_elsewhere', true), ''), '{}')::bigint[];
    here bigint[] := coalesce(nullif(current_setting('arbiter.sealer_xids_here', true), ''), '{}')::bigint[];
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(7021802772598108721);
    ELSIF NOT pg_try_advisory_xact_lock(7021802772598108721) THEN
        RETURN -1;
    END IF;
    -- Seals can be lost in a crash without harm: they are a deterministic function of the events
    -- (same order, same hashes), so the sealer simply seals them again. A checkpoint's commit
    -- flushes the WAL, and with it every seal it signs. Only when this transaction wrote nothing
    -- else: a caller's own writes keep their durability.
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    SELECT s.seq, s.hash, s.event_id, e.xact_id, e.id INTO head_seq, head_hash, head_event, head_xact, head_id
        FROM (SELECT * FROM audit_ledgerseal ORDER BY seq DESC LIMIT 1) s
        LEFT JOIN audit_ledgerevent e ON e.id = s.event_id;
    IF FOUND THEN
        IF head_id IS NULL THEN
            RAISE EXCEPTION 'arbiter ledger: the event sealed at seq % is missing; run manage.py ledger_verify',
                head_seq;
        END IF;
    ELSE
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
        head_xact := -1;
        head_id := -1;
    END IF;

    FOR batch IN 1..max_batches LOOP
        FOR attempt IN 1..2 LOOP
            -- One statement, one snapshot: the horizon and the rows read come from the same snapshot.
            -- The horizon is the oldest transaction still running (leaving out those known to run
            -- in other databases: they cannot write here), else the next xid to be assigned.
            WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
            horizon AS MATERIALIZED (
                SELECT coalesce(
                    (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
                      WHERE x::text::bigint <> ALL (elsewhere)),
                    (SELECT pg_snapshot_xmax(snap.s)::text::bigint FROM snap)) AS h
            ),
            pending AS (
                SELECT e.id, e.xact_id, e.canonical FROM audit_ledgerevent e
                 WHERE e.xact_id >= head_xact AND (e.xact_id, e.id) > (head_xact, head_id)
                   AND e.xact_id < (SELECT h FROM horizon)
                 ORDER BY e.xact_id, e.id
                 LIMIT batch_size
            )
            SELECT array_agg(p.id ORDER BY p.xact_id, p.id), array_agg(p.xact_id ORDER BY p.xact_id, p.id),
                   array_agg(p.canonical ORDER BY p.xact_id, p.id), (SELECT h FROM horizon)
              INTO batch_ids, batch_xacts, batch_canonicals, horizon_xid
              FROM pending p;
            blocker := horizon_xid;
            -- Nothing to seal. If events wait behind a transaction this session has not placed yet,
            -- find out (once per such transaction) which running transactions belong to other
            -- databases. One that cannot be placed (prepared, or hidden from this role) is taken
            -- as ours and keeps holding the horizon.
            EXIT WHEN batch_ids IS NOT NULL OR attempt = 2 OR blocker = ANY (here) OR NOT EXISTS (
                SELECT 1 FROM audit_ledgerevent e
                 WHERE e.xact_id >= head_xact AND (e.xact_id, e.id) > (head_xact, head_id));
            WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
            running AS (SELECT x::text::bigint AS xid FROM snap, pg_snapshot_xip(snap.s) AS x),
            backends AS (
                SELECT a.backend_xid::text::bigint AS xid32,
                       a.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AS ours
                  FROM pg_stat_get_activity(NULL) AS a
                 WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL
            )
            -- Full 64-bit xids (a backend shows 32 bits; the snapshot has the epoch): no wraparound.
            SELECT coalesce(array_agg(r.xid) FILTER (WHERE NOT b.ours), '{}'),
                   coalesce(array_agg(r.xid) FILTER (WHERE b.ours), '{}')
              INTO elsewhere, here
              FROM running r JOIN backends b ON b.xid32 = r.xid % 4294967296;
            IF NOT blocker = ANY (elsewhere) THEN
                here := here || blocker;
            END IF;
            PERFORM set_config('arbiter.sealer_xids_elsewhere', elsewhere::text, false),
                    set_config('arbiter.sealer_xids_here', here::text, false);
        END LOOP;
        n := coalesce(array_length(batch_ids, 1), 0);
        EXIT WHEN n = 0;

        FOR i IN 1..n LOOP
            head_seq := head_seq + 1;
            digest := sha256(convert_to('{"event":' || batch_canonicals[i] || ',"seq":' || head_seq || '}', 'UTF8'));
            seqs[i] := head_seq;
            prev_hashes[i] := head_hash;
            digests[i] := digest;
            head_hash := sha256(head_hash || digest);
            hashes[i] := head_hash;
        END LOOP;
        INSERT INTO audit_ledgerseal (seq, event_id, prev_hash, event_digest, hash, sealed_at)
            SELECT u.seq, u.event_id, u.prev_hash, u.event_digest, u.hash, clock_timestamp()
              FROM unnest(seqs[1:n], batch_ids, prev_hashes[1:n], digests[1:n], hashes[1:n])
                   AS u(seq, event_id, prev_hash, event_digest, hash);
        head_xact := batch_xacts[n];
        head_id := batch_ids[n];
        sealed := sealed + n;
        EXIT WHEN n < batch_size;
    END LOOP;
    RETURN sealed;
END $$;
"""

PREVIOUS_SEALER_SQL = r"""
CREATE OR REPLACE FUNCTION audit_seal_pending(batch_size integer, max_batches integer, wait boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    our_db oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    head_seq bigint;
    head_hash bytea;
    head_event bigint;
    head_xact bigint := -1;
    head_id bigint := -1;
    batch_ids bigint[];
    batch_xacts bigint[];
    batch_canonicals text[];
    seqs bigint[];
    prev_hashes bytea[];
    digests bytea[];
    hashes bytea[];
    digest bytea;
    n integer;
    sealed integer := 0;
    horizon_xid bigint;
    blocker bigint;
    -- Per session: 32-bit xids known to run in other databases, and ones known (or taken) to be ours.
    elsewhere bigint[] := coalesce(nullif(current_setting('arbiter.sealer_xids_elsewhere', true), ''), '{}')::bigint[];
    here bigint[] := coalesce(nullif(current_setting('arbiter.sealer_xids_here', true), ''), '{}')::bigint[];
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(7021802772598108721);
    ELSIF NOT pg_try_advisory_xact_lock(7021802772598108721) THEN
        RETURN -1;
    END IF;
    -- Seals can be lost in a crash without harm: they are a deterministic function of the events
    -- (same order, same hashes), so the sealer simply seals them again. A checkpoint's commit
    -- flushes the WAL, and with it every seal it signs. Only when this transaction wrote nothing
    -- else: a caller's own writes keep their durability.
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    SELECT s.seq, s.hash, s.event_id INTO head_seq, head_hash, head_event
        FROM audit_ledgerseal s ORDER BY s.seq DESC LIMIT 1;
    IF FOUND THEN
        SELECT e.xact_id, e.id INTO head_xact, head_id FROM audit_ledgerevent e WHERE e.id = head_event;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'arbiter ledger: the event sealed at seq % is missing; run manage.py ledger_verify',
                head_seq;
        END IF;
    ELSE
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;

    FOR batch IN 1..max_batches LOOP
        FOR attempt IN 1..2 LOOP
            -- One statement, one snapshot: the horizon and the rows read come from the same snapshot.
            -- The horizon is the oldest transaction still running (leaving out those known to run
            -- in other databases: they cannot write here), else the next xid to be assigned.
            WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
            horizon AS MATERIALIZED (
                SELECT coalesce(
                    (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
                      WHERE x::text::bigint % 4294967296 <> ALL (elsewhere)),
                    (SELECT pg_snapshot_xmax(snap.s)::text::bigint FROM snap)) AS h
            ),
            pending AS (
                SELECT e.id, e.xact_id, e.canonical FROM audit_ledgerevent e
                 WHERE e.xact_id >= head_xact AND (e.xact_id, e.id) > (head_xact, head_id)
                   AND e.xact_id < (SELECT h FROM horizon)
                 ORDER BY e.xact_id, e.id
                 LIMIT batch_size
            )
            SELECT array_agg(p.id ORDER BY p.xact_id, p.id), array_agg(p.xact_id ORDER BY p.xact_id, p.id),
                   array_agg(p.canonical ORDER BY p.xact_id, p.id), (SELECT h FROM horizon)
              INTO batch_ids, batch_xacts, batch_canonicals, horizon_xid
              FROM pending p;
            blocker := horizon_xid % 4294967296;
            -- Nothing to seal. If events wait behind a transaction this session has not placed yet,
            -- find out (once per such transaction) which running transactions belong to other
            -- databases. One that cannot be placed (prepared, or hidden from this role) is taken
            -- as ours and keeps holding the horizon.
            EXIT WHEN batch_ids IS NOT NULL OR attempt = 2 OR blocker = ANY (here) OR NOT EXISTS (
                SELECT 1 FROM audit_ledgerevent e
                 WHERE e.xact_id >= head_xact AND (e.xact_id, e.id) > (head_xact, head_id));
            SELECT coalesce(array_agg(a.backend_xid::text::bigint) FILTER (WHERE a.datid <> our_db), '{}'),
                   coalesce(array_agg(a.backend_xid::text::bigint) FILTER (WHERE a.datid = our_db), '{}')
              INTO elsewhere, here
              FROM pg_stat_get_activity(NULL) AS a
             WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL;
            IF NOT blocker = ANY (elsewhere) THEN
                here := here || blocker;
            END IF;
            PERFORM set_config('arbiter.sealer_xids_elsewhere', elsewhere::text, false),
                    set_config('arbiter.sealer_xids_here', here::text, false);
        END LOOP;
        n := coalesce(array_length(batch_ids, 1), 0);
        EXIT WHEN n = 0;

        FOR i IN 1..n LOOP
            head_seq := head_seq + 1;
            digest := sha256(convert_to('{"event":' || batch_canonicals[i] || ',"seq":' || head_seq || '}', 'UTF8'));
            seqs[i] := head_seq;
            prev_hashes[i] := head_hash;
            digests[i] := digest;
            head_hash := sha256(head_hash || digest);
            hashes[i] := head_hash;
        END LOOP;
        INSERT INTO audit_ledgerseal (seq, event_id, prev_hash, event_digest, hash, sealed_at)
            SELECT u.seq, u.event_id, u.prev_hash, u.event_digest, u.hash, clock_timestamp()
              FROM unnest(seqs[1:n], batch_ids, prev_hashes[1:n], digests[1:n], hashes[1:n])
                   AS u(seq, event_id, prev_hash, event_digest, hash);
        head_xact := batch_xacts[n];
        head_id := batch_ids[n];
        sealed := sealed + n;
        EXIT WHEN n < batch_size;
    END LOOP;
    RETURN sealed;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(SEALER_SQL, PREVIOUS_SEALER_SQL)]
