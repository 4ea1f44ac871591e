-- Set-based change capture. 0001 captured row by row (a plpgsql AFTER ROW
-- trigger computing the key, a tombstone lookup per inserted row, one
-- INSERT into repl_log per row): about 0.6 ms per row on a 60,000-row
-- statement, which made bulk intake (a batch of inventories) crawl. Now:
--  * a small BEFORE ROW trigger only stamps _hlc and _origin;
--  * AFTER STATEMENT triggers with transition tables append a whole
--    statement's changes to repl_log in one INSERT ... SELECT, and handle
--    tombstones (deletes, re-inserted keys) as sets.
-- The log's content is unchanged (same keys, row images, clocks), so peers
-- and the apply path are unaffected. Transition tables allow one event per
-- trigger: hence three capture triggers per table.

-- The site code, cached for the session once known (it never changes).
CREATE OR REPLACE FUNCTION repl_site_code() RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE s text := nullif(current_setting('strata.site_code_cache', true), '');
BEGIN
  IF s IS NULL THEN
    SELECT site_code INTO s FROM repl_identity;
    IF s IS NOT NULL THEN PERFORM set_config('strata.site_code_cache', s, false); END IF;
  END IF;
  RETURN s;
END $$;

-- The key of alias's row as text, as repl_key() computes it
-- (jsonb_build_array(alias.k1, ...)::text), for dynamic SQL.
CREATE FUNCTION repl_key_sql(keys text[], alias text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'jsonb_build_array(' || string_agg(alias || '.' || quote_ident(k), ', ' ORDER BY o) || ')::text'
    FROM unnest(keys) WITH ORDINALITY AS u(k, o)
$$;

-- a.k1 = b.k1 AND ... for dynamic SQL.
CREATE FUNCTION repl_key_match_sql(keys text[], a text, b text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(format('%s.%I = %s.%I', a, k, b, k), ' AND ') FROM unnest(keys) AS k
$$;

CREATE FUNCTION repl_require_site_code(tbl text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE s text := repl_site_code();
BEGIN
  IF s IS NULL THEN
    RAISE EXCEPTION 'replicated table % written before this database was given a site code', tbl;
  END IF;
  RETURN s;
END $$;

-- BEFORE INSERT OR UPDATE, for each row: stamp the local write.
CREATE OR REPLACE FUNCTION repl_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE h bigint := (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) << 16;
BEGIN
  IF TG_OP = 'UPDATE' AND h <= OLD._hlc THEN h := OLD._hlc + 1; END IF;
  NEW._hlc := h;
  NEW._origin := coalesce(nullif(current_setting('strata.site_code_cache', true), ''),
                          repl_require_site_code(TG_TABLE_NAME));
  RETURN NEW;
END $$;

-- AFTER INSERT, for each statement (new_rows). TG_ARGV: scope, key columns.
CREATE FUNCTION repl_capture_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  keys text[] := TG_ARGV[1:];
  kn text := repl_key_sql(keys, 'n');
  prev text := current_setting('strata.applying', true);
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
  IF EXISTS (SELECT 1 FROM repl_tombstone WHERE tbl = TG_TABLE_NAME) THEN
    -- A key deleted before must come back with a later clock than its
    -- delete, or last-writer-wins would keep it deleted at the peers. The
    -- correcting update is not itself captured (strata.applying).
    PERFORM set_config('strata.applying', 'on', true);
    EXECUTE format(
      'WITH bumped AS (UPDATE %1$I t SET _hlc = tb.hlc + 1 FROM new_rows n JOIN repl_tombstone tb'
      '   ON tb.tbl = %2$L AND tb.key = %3$s AND tb.hlc >= n._hlc WHERE %4$s RETURNING t.*) '
      'INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin) '
      'SELECT %2$L, %5$L, ''U'', %6$s, to_json(b.*), b._hlc, b._origin FROM bumped b '
      'UNION ALL '
      'SELECT %2$L, %5$L, ''U'', %3$s, to_json(n.*), n._hlc, n._origin FROM new_rows n '
      ' WHERE NOT EXISTS (SELECT 1 FROM bumped b WHERE %7$s)',
      TG_TABLE_NAME, TG_TABLE_NAME, kn, repl_key_match_sql(keys, 't', 'n'), TG_ARGV[0],
      repl_key_sql(keys, 'b'), repl_key_match_sql(keys, 'b', 'n'));
    PERFORM set_config('strata.applying', coalesce(prev, ''), true);
  ELSE
    EXECUTE format(
      'INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin) '
      'SELECT %L, %L, ''U'', %s, to_json(n.*), n._hlc, n._origin FROM new_rows n',
      TG_TABLE_NAME, TG_ARGV[0], kn);
  END IF;
  PERFORM repl_notify_once();
  RETURN NULL;
END $$;

-- The statement recording deletes of the old rows' keys: tombstones and 'D'
-- log entries. `gone` is a query over old_rows yielding the rows whose key
-- went away. (Transition tables are visible only to the trigger function's
-- own statements: this builds the SQL, the trigger runs it.)
CREATE FUNCTION repl_gone_sql(tbl text, scope text, keys text[], gone text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT format(
    'WITH d AS (SELECT %1$s AS key, greatest(repl_hlc_now(), o._hlc + 1) AS hlc FROM (%2$s) o), '
    't AS (INSERT INTO repl_tombstone AS t (tbl, key, hlc, origin) SELECT %3$L, key, hlc, %4$L FROM d '
    '      ON CONFLICT (tbl, key) DO UPDATE SET hlc = EXCLUDED.hlc, origin = EXCLUDED.origin, '
    '      deleted_at = now()) '
    'INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin) '
    'SELECT %3$L, %5$L, ''D'', key, NULL, hlc, %4$L FROM d',
    repl_key_sql(keys, 'o'), gone, tbl, repl_require_site_code(tbl), scope)
$$;

-- AFTER UPDATE, for each statement (old_rows, new_rows).
CREATE FUNCTION repl_capture_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  keys text[] := TG_ARGV[1:];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
  -- An update that moved a row to another key deleted the old key.
  EXECUTE repl_gone_sql(TG_TABLE_NAME, TG_ARGV[0], keys,
    format('SELECT * FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE %s)',
           repl_key_match_sql(keys, 'o', 'n')));
  EXECUTE format(
    'INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin) '
    'SELECT %L, %L, ''U'', %s, to_json(n.*), n._hlc, n._origin FROM new_rows n',
    TG_TABLE_NAME, TG_ARGV[0], repl_key_sql(keys, 'n'));
  PERFORM repl_notify_once();
  RETURN NULL;
END $$;

-- AFTER DELETE, for each statement (old_rows).
CREATE FUNCTION repl_capture_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
  EXECUTE repl_gone_sql(TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1:], 'SELECT * FROM old_rows');
  PERFORM repl_notify_once();
  RETURN NULL;
END $$;

-- The capture triggers of one table (also used to convert 0001's).
CREATE FUNCTION repl_create_capture(table_name text, table_scope text, keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  args text;
  skip text := 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'')';
BEGIN
  SELECT string_agg(quote_literal(k), ', ') INTO args FROM unnest(array_prepend(table_scope, keys)) AS k;
  EXECUTE format('DROP TRIGGER IF EXISTS repl_capture ON %I', table_name);
  EXECUTE format('CREATE TRIGGER repl_capture_insert AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_capture_insert(%s)', table_name, skip, args);
  EXECUTE format('CREATE TRIGGER repl_capture_update AFTER UPDATE ON %I '
                 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_capture_update(%s)', table_name, skip, args);
  EXECUTE format('CREATE TRIGGER repl_capture_delete AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                 'FOR EACH STATEMENT %s EXECUTE FUNCTION repl_capture_delete(%s)', table_name, skip, args);
END $$;

CREATE OR REPLACE FUNCTION repl_enable(table_name text, table_scope text) RETURNS void LANGUAGE plpgsql AS $$
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
  -- local writes; WHEN skips the triggers.
  EXECUTE format('CREATE TRIGGER repl_stamp BEFORE INSERT OR UPDATE ON %I FOR EACH ROW '
                 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'') '
                 'EXECUTE FUNCTION repl_stamp(%s)', table_name, args);
  PERFORM repl_create_capture(table_name, table_scope, keys);
END $$;

-- Tables enabled under 0001 get the new capture.
SELECT repl_create_capture(tbl, scope, key_columns) FROM repl_scope;

DROP FUNCTION repl_capture();
