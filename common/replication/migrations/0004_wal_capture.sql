-- Capture from the write-ahead log (logical decoding). A replicated table
-- is in its scope's publication; each peer's link streams its own logical
-- slot with the pgoutput plugin (wal_reader.h). What stays in SQL:
--  * the BEFORE ROW trigger stamping _hlc and _origin (repl_stamp);
--  * tombstones, as sets (AFTER STATEMENT triggers): a delete travels to the
--    peers as the tombstone it leaves (repl_tombstone is published), and a
--    key written again after a delete is stamped above its tombstone.
-- The trigger log (repl_log) is no longer written; what it holds is read
-- once by a link being upgraded (link_session.cc) and pruned.
-- Publications carry inserts and updates only: deletes are tombstones,
-- and a truncate of a replicated table never replicated.

CREATE PUBLICATION strata_global WITH (publish = 'insert, update');
CREATE PUBLICATION strata_global_proxy WITH (publish = 'insert, update');
CREATE PUBLICATION strata_site WITH (publish = 'insert, update');
CREATE PUBLICATION strata_site_proxy WITH (publish = 'insert, update');
CREATE PUBLICATION strata_tombstones FOR TABLE repl_tombstone WITH (publish = 'insert, update');

-- AFTER INSERT, for each statement (new_rows). TG_ARGV: the key columns.
CREATE FUNCTION repl_tomb_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  keys text[] := TG_ARGV[0:];
  prev text := current_setting('strata.applying', true);
BEGIN
  IF NOT EXISTS (SELECT 1 FROM repl_tombstone WHERE tbl = TG_TABLE_NAME) THEN RETURN NULL; END IF;
  -- A key deleted before must come back with a later clock than its
  -- delete, or last-writer-wins would keep it deleted at the peers. The
  -- correcting update is not stamped again (strata.applying).
  PERFORM set_config('strata.applying', 'on', true);
  EXECUTE format(
    'UPDATE %1$I t SET _hlc = tb.hlc + 1 FROM new_rows n JOIN repl_tombstone tb'
    '  ON tb.tbl = %2$L AND tb.key = %3$s AND tb.hlc >= n._hlc WHERE %4$s',
    TG_TABLE_NAME, TG_TABLE_NAME, repl_key_sql(keys, 'n'), repl_key_match_sql(keys, 't', 'n'));
  PERFORM set_config('strata.applying', coalesce(prev, ''), true);
  RETURN NULL;
END $$;

-- The tombstones of keys that went away; `gone` is a query over old_rows.
CREATE FUNCTION repl_tomb_sql(tbl text, keys text[], gone text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT format(
    'INSERT INTO repl_tombstone AS t (tbl, key, hlc, origin) '
    'SELECT %1$L, %2$s, greatest(repl_hlc_now(), o._hlc + 1), %3$L FROM (%4$s) o '
    'ON CONFLICT (tbl, key) DO UPDATE SET hlc = EXCLUDED.hlc, origin = EXCLUDED.origin, '
    'deleted_at = now()',
    tbl, repl_key_sql(keys, 'o'), repl_require_site_code(tbl), gone)
$$;

-- AFTER UPDATE, for each statement: a row moved to another key deleted the old one.
CREATE FUNCTION repl_tomb_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE keys text[] := TG_ARGV[0:];
BEGIN
  EXECUTE repl_tomb_sql(TG_TABLE_NAME, keys,
    format('SELECT * FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE %s)',
           repl_key_match_sql(keys, 'o', 'n')));
  RETURN NULL;
END $$;

-- AFTER DELETE, for each statement.
CREATE FUNCTION repl_tomb_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE repl_tomb_sql(TG_TABLE_NAME, TG_ARGV[0:], 'SELECT * FROM old_rows');
  RETURN NULL;
END $$;

-- The capture of one table: its publication and its tombstone triggers
-- (also converts the trigger log's capture).
CREATE OR REPLACE FUNCTION repl_create_capture(table_name text, table_scope text, keys text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  args text;
  skip text := 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'')';
BEGIN
  SELECT string_agg(quote_literal(k), ', ') INTO args FROM unnest(keys) AS k;
  EXECUTE format('DROP TRIGGER IF EXISTS repl_capture_insert ON %I', table_name);
  EXECUTE format('DROP TRIGGER IF EXISTS repl_capture_update ON %I', table_name);
  EXECUTE format('DROP TRIGGER IF EXISTS repl_capture_delete ON %I', table_name);
  EXECUTE format('CREATE TRIGGER repl_tomb_insert AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_tomb_insert(%s)', table_name, skip, args);
  EXECUTE format('CREATE TRIGGER repl_tomb_update AFTER UPDATE ON %I '
                 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_tomb_update(%s)', table_name, skip, args);
  EXECUTE format('CREATE TRIGGER repl_tomb_delete AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_tomb_delete(%s)', table_name, skip, args);
  EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I', 'strata_' || table_scope, table_name);
END $$;

SELECT repl_create_capture(tbl, scope, key_columns) FROM repl_scope;

DROP FUNCTION repl_capture_insert();
DROP FUNCTION repl_capture_update();
DROP FUNCTION repl_capture_delete();
DROP FUNCTION repl_gone_sql(text, text, text[], text);

-- Positions in the WAL are not positions in the trigger log: a new epoch
-- makes every peer re-initialize once (a snapshot), so nothing the trigger
-- log still held for a peer is lost.
UPDATE repl_identity SET log_epoch = gen_random_uuid();
