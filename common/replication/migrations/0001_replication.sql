-- Replication machinery. All of it is local data: it never replicates.
--
-- Change capture: every replicated table carries _hlc (hybrid logical clock
-- of its last write) and _origin (the site that wrote it). A BEFORE trigger
-- stamps both on local writes; an AFTER trigger appends the change to
-- repl_log in the same transaction (contract item 1).
--
-- No gaps (item 3): log rows do not get their position when they are
-- written but when their transaction commits. The first log row of each
-- transaction queues a deferred trigger; at commit it takes the row lock on
-- repl_counter, numbers the transaction (lsn) and records it in repl_commit.
-- The lock is held until the commit is visible, so lsn order is commit order
-- and a reader that has seen lsn N has seen every lsn below it.

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
  first_in_tx boolean NOT NULL DEFAULT false,
  tbl text NOT NULL,
  scope text NOT NULL,
  op "char" NOT NULL,          -- 'U' upsert, 'D' delete
  key text NOT NULL,           -- JSON array of the key values
  row_data jsonb,              -- the whole row, for upserts
  hlc bigint NOT NULL,
  origin text NOT NULL,
  origin_seq bigint,           -- NULL: authored here, the sequence is id
  received_from text           -- NULL: authored here
);
CREATE INDEX repl_log_xid ON repl_log (xid, id);

CREATE TABLE repl_commit (
  lsn bigint PRIMARY KEY,
  xid xid8 NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE repl_counter (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  lsn bigint NOT NULL DEFAULT 0,
  pruned_through bigint NOT NULL DEFAULT 0  -- commits up to here are gone from the log
);
INSERT INTO repl_counter DEFAULT VALUES;

-- How far this site has applied each peer's log (receiver watermark).
CREATE TABLE repl_inbound (
  peer text PRIMARY KEY,
  epoch uuid NOT NULL,
  lsn bigint NOT NULL,
  log_id bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- How far each peer has acknowledged this site's log (for pruning and lag).
CREATE TABLE repl_outbound (
  peer text PRIMARY KEY,
  lsn bigint NOT NULL,
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

-- True for the first log row of the current transaction; marks it so the
-- commit trigger fires exactly once per transaction.
CREATE FUNCTION repl_first_in_tx() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE x text := pg_current_xact_id()::text;
BEGIN
  IF coalesce(current_setting('strata.tx_logged', true), '') = x THEN
    RETURN false;
  END IF;
  PERFORM set_config('strata.tx_logged', x, true);
  RETURN true;
END $$;

CREATE FUNCTION repl_assign_lsn() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  UPDATE repl_counter SET lsn = lsn + 1 RETURNING lsn INTO n;
  INSERT INTO repl_commit (lsn, xid) VALUES (n, pg_current_xact_id());
  PERFORM pg_notify('strata_repl', n::text);
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER repl_log_commit AFTER INSERT ON repl_log
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.first_in_tx)
  EXECUTE FUNCTION repl_assign_lsn();

-- BEFORE INSERT OR UPDATE on a replicated table: stamp local writes. The
-- apply path sets strata.applying and brings its own stamps.
CREATE FUNCTION repl_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  h bigint := repl_hlc_now();
  tomb bigint;
BEGIN
  IF current_setting('strata.applying', true) = 'on' THEN
    RETURN NEW;
  END IF;
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
  IF current_setting('strata.applying', true) = 'on' THEN
    RETURN NULL;
  END IF;
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
    INSERT INTO repl_log (first_in_tx, tbl, scope, op, key, row_data, hlc, origin)
      VALUES (repl_first_in_tx(), TG_TABLE_NAME, TG_ARGV[0], 'D', old_k, NULL, h, site);
  END IF;
  IF k IS NOT NULL THEN
    INSERT INTO repl_log (first_in_tx, tbl, scope, op, key, row_data, hlc, origin)
      VALUES (repl_first_in_tx(), TG_TABLE_NAME, TG_ARGV[0], 'U', k, to_jsonb(NEW), NEW._hlc, NEW._origin);
  END IF;
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
  EXECUTE format('CREATE TRIGGER repl_stamp BEFORE INSERT OR UPDATE ON %I FOR EACH ROW '
                 'EXECUTE FUNCTION repl_stamp(%s)', table_name, args);
  EXECUTE format('CREATE TRIGGER repl_capture AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW '
                 'EXECUTE FUNCTION repl_capture(%L, %s)', table_name, table_scope, args);
END $$;
