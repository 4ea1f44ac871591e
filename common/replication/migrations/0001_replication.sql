-- Replication machinery. All of it is local data: it never replicates.
--
-- Change capture: every replicated table carries _hlc (hybrid logical clock
-- of its last write) and _origin (the site that wrote it). A BEFORE trigger
-- stamps both on local writes; an AFTER trigger appends the change to
-- repl_log in the same transaction (contract item 1).
--
-- No gaps (item 3): each log row records the top-level transaction id that
-- wrote it (xid8, never wraps). Readers take only rows whose xid is below
-- the xmin of their snapshot: those transactions have all finished, so that
-- set of rows is final and a cursor over (xid, id) never skips a change that
-- commits late. Nothing serializes writers. Order inside that set does not
-- matter for correctness: a write always stamps a clock above the version it
-- replaced, and appliers keep the highest (hlc, origin).

CREATE TABLE repl_identity (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  site_code text NOT NULL,
  log_epoch uuid NOT NULL DEFAULT gen_random_uuid()
);

-- Which tables replicate, and how far: 'global' (CAS and primaries),
-- 'global_proxy' (also secondaries), 'site' (up to the CAS only).
CREATE TABLE repl_scope (
  tbl text PRIMARY KEY,
  scope text NOT NULL CHECK (scope IN ('global', 'global_proxy', 'site')),
  key_columns text[] NOT NULL
);

CREATE TABLE repl_log (
  id bigserial PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  logged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  tbl text NOT NULL,
  scope text NOT NULL,
  op "char" NOT NULL,          -- 'U' upsert, 'D' delete
  key text NOT NULL,           -- JSON array of the key values
  row_data json,               -- the whole row, for upserts (json: read back as is)
  hlc bigint NOT NULL,
  origin text NOT NULL,
  origin_seq bigint,           -- NULL: authored here, the sequence is id
  received_from text           -- NULL: authored here
);
CREATE INDEX repl_log_xid ON repl_log (xid, id);

CREATE TABLE repl_state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  -- Log rows of transactions below this xid may have been pruned.
  pruned_through xid8 NOT NULL DEFAULT '0'
);
INSERT INTO repl_state DEFAULT VALUES;

-- How far this site has applied each peer's log (receiver watermark).
CREATE TABLE repl_inbound (
  peer text PRIMARY KEY,
  epoch uuid NOT NULL,
  xid bigint NOT NULL,
  log_id bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- How far each peer has acknowledged this site's log (for pruning and lag).
CREATE TABLE repl_outbound (
  peer text PRIMARY KEY,
  xid bigint NOT NULL,
  log_id bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Deleted rows' last version, so that an older write arriving late cannot
-- resurrect them (last writer wins needs to remember deletes).
CREATE TABLE repl_tombstone (
  tbl text NOT NULL,
  key text NOT NULL,
  hlc bigint NOT NULL,
  origin text NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tbl, key)
);

CREATE FUNCTION repl_site_code() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT site_code FROM repl_identity $$;

CREATE FUNCTION repl_hlc_now() RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) << 16 $$;

CREATE FUNCTION repl_key(row_json jsonb, key_columns text[]) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT jsonb_agg(row_json -> k ORDER BY o)::text FROM unnest(key_columns) WITH ORDINALITY AS u(k, o) $$;

-- Wakes the site server's senders when the transaction commits (once per
-- transaction; notifications are delivered at commit).
CREATE FUNCTION repl_notify_once() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE x text := pg_current_xact_id()::text;
BEGIN
  IF coalesce(current_setting('strata.tx_notified', true), '') <> x THEN
    PERFORM set_config('strata.tx_notified', x, true);
    PERFORM pg_notify('strata_repl', '');
  END IF;
END $$;

-- BEFORE INSERT OR UPDATE on a replicated table: stamp local writes. The
-- apply path sets strata.applying and brings its own stamps; the triggers'
-- WHEN clause (repl_enable) then keeps them from firing at all.
CREATE FUNCTION repl_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  h bigint := repl_hlc_now();
  tomb bigint;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    h := greatest(h, OLD._hlc + 1);
  ELSE
    SELECT t.hlc INTO tomb FROM repl_tombstone t
     WHERE t.tbl = TG_TABLE_NAME AND t.key = repl_key(to_jsonb(NEW), TG_ARGV);
    IF FOUND THEN h := greatest(h, tomb + 1); END IF;
  END IF;
  NEW._hlc := h;
  NEW._origin := repl_site_code();
  RETURN NEW;
END $$;

-- AFTER INSERT OR UPDATE OR DELETE: append the change to the log.
-- TG_ARGV[0] is the scope, the rest are the key columns.
CREATE FUNCTION repl_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  keys text[] := TG_ARGV[1:];
  k text;
  old_k text;
  h bigint;
  site text;
BEGIN
  site := repl_site_code();
  IF site IS NULL THEN
    RAISE EXCEPTION 'replicated table % written before this database was given a site code', TG_TABLE_NAME;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    old_k := repl_key(to_jsonb(OLD), keys);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    k := repl_key(to_jsonb(NEW), keys);
  END IF;
  -- A delete, or an update that moved the row to another key.
  IF old_k IS NOT NULL AND old_k IS DISTINCT FROM k THEN
    h := greatest(repl_hlc_now(), OLD._hlc + 1);
    INSERT INTO repl_tombstone AS t (tbl, key, hlc, origin) VALUES (TG_TABLE_NAME, old_k, h, site)
      ON CONFLICT (tbl, key) DO UPDATE SET hlc = EXCLUDED.hlc, origin = EXCLUDED.origin, deleted_at = now();
    INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin)
      VALUES (TG_TABLE_NAME, TG_ARGV[0], 'D', old_k, NULL, h, site);
  END IF;
  IF k IS NOT NULL THEN
    INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin)
      VALUES (TG_TABLE_NAME, TG_ARGV[0], 'U', k, to_json(NEW), NEW._hlc, NEW._origin);
  END IF;
  PERFORM repl_notify_once();
  RETURN NULL;
END $$;

-- Makes a table replicated: the one call a migration needs. The table must
-- have a primary key; _hlc and _origin are added here.
CREATE FUNCTION repl_enable(table_name text, table_scope text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  keys text[];
  args text;
BEGIN
  SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
    INTO keys
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
   WHERE i.indrelid = table_name::regclass AND i.indisprimary;
  IF keys IS NULL THEN
    RAISE EXCEPTION 'replicated table % needs a primary key', table_name;
  END IF;
  EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS _hlc bigint NOT NULL DEFAULT 0, '
                 'ADD COLUMN IF NOT EXISTS _origin text NOT NULL DEFAULT %L', table_name, '');
  INSERT INTO repl_scope (tbl, scope, key_columns) VALUES (table_name, table_scope, keys);
  SELECT string_agg(quote_literal(k), ', ') INTO args FROM unnest(keys) AS k;
  -- Applying a peer's changes (strata.applying = on) must not be captured as
  -- local writes; WHEN skips the call and the after-trigger queue entry.
  EXECUTE format('CREATE TRIGGER repl_stamp BEFORE INSERT OR UPDATE ON %I FOR EACH ROW '
                 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'') '
                 'EXECUTE FUNCTION repl_stamp(%s)', table_name, args);
  EXECUTE format('CREATE TRIGGER repl_capture AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW '
                 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'') '
                 'EXECUTE FUNCTION repl_capture(%L, %s)', table_name, table_scope, args);
END $$;
