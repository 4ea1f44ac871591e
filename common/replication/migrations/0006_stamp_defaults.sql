-- Cheaper stamping of local writes (issue 15).
--  * A local INSERT is stamped by the columns' defaults (_hlc: the clock
--    now; _origin: this site), evaluated without a trigger call per row;
--    only an UPDATE still needs the BEFORE ROW trigger, whose clock must
--    pass the old row's. A key written again after its delete is still
--    lifted above its tombstone by repl_tomb_insert. Local writers never set
--    _hlc or _origin themselves (applying a peer's rows, and built-in rows
--    written by migrations, set strata.applying and bring their own).
--    (A NOTIFY from a statement trigger was tried to wake the site server on
--    local writes: NOTIFY takes a database-wide lock from pre-commit to the
--    end of the commit, fsync included, and held bench/replication's CAS
--    to 452 of the 1,000 transactions/s asked. The site server watches the
--    WAL's flush position instead.)

CREATE FUNCTION repl_local_origin(tbl text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('strata.site_code_cache', true), ''),
                  repl_require_site_code(tbl))
$$;

-- The stamping of one replicated table.
CREATE FUNCTION repl_create_stamp(table_name text, keys text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  args text;
  skip text := 'WHEN (current_setting(''strata.applying'', true) IS DISTINCT FROM ''on'')';
BEGIN
  SELECT string_agg(quote_literal(k), ', ') INTO args FROM unnest(keys) AS k;
  EXECUTE format('ALTER TABLE %I ALTER COLUMN _hlc SET DEFAULT repl_hlc_now(), '
                 'ALTER COLUMN _origin SET DEFAULT repl_local_origin(%L)', table_name, table_name);
  EXECUTE format('DROP TRIGGER IF EXISTS repl_stamp ON %I', table_name);
  EXECUTE format('CREATE TRIGGER repl_stamp BEFORE UPDATE ON %I FOR EACH ROW %s '
                 'EXECUTE FUNCTION repl_stamp(%s)', table_name, skip, args);
END $$;

CREATE OR REPLACE FUNCTION repl_enable(table_name text, table_scope text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  keys text[];
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
  PERFORM repl_create_stamp(table_name, keys);
  PERFORM repl_create_capture(table_name, table_scope, keys);
END $$;

SELECT repl_create_stamp(tbl, key_columns) FROM repl_scope;
