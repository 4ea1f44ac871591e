-- Live queries (Configuration Manager's CMPivot): a query of the collection
-- query language with the columns to return, asked of a collection's
-- members (or one device) and answered by each client from its live state.
-- A query is global data every site holds (management points, at
-- secondaries too, serve it); which devices it reaches is resolved at their
-- primary as script runs are (live_query_assignments); the answers are site
-- data, up to the CAS, kept a day.
CREATE TABLE live_queries (
  id uuid PRIMARY KEY,
  query text NOT NULL CHECK (octet_length(query) BETWEEN 1 AND 4096),
  select_fields text[] NOT NULL CHECK (cardinality(select_fields) BETWEEN 1 AND 16),
  collection text NOT NULL,
  device_id uuid,
  max_rows integer NOT NULL CHECK (max_rows BETWEEN 1 AND 1000),
  time_limit_ms integer NOT NULL CHECK (time_limit_ms BETWEEN 100 AND 60000),
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX live_queries_collection ON live_queries (collection);
CREATE INDEX live_queries_created ON live_queries (created_at);
SELECT repl_enable('live_queries', 'global_proxy');

CREATE TABLE live_query_assignments (
  device_id uuid NOT NULL,
  query uuid NOT NULL,
  site_code text NOT NULL,
  PRIMARY KEY (device_id, query)
);
CREATE INDEX live_query_assignments_query ON live_query_assignments (query);
SELECT repl_enable('live_query_assignments', 'site_proxy');
CREATE TRIGGER live_queries_changed AFTER INSERT OR UPDATE OR DELETE
  ON live_queries FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
CREATE TRIGGER live_query_assignment_insert AFTER INSERT ON live_query_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER live_query_assignment_update AFTER UPDATE ON live_query_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER live_query_assignment_delete AFTER DELETE ON live_query_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE OR REPLACE VIEW per_device_collections AS
  SELECT collection FROM client_setting_deployments
  UNION ALL SELECT collection FROM app_deployments
  UNION ALL SELECT collection FROM maintenance_windows
  UNION ALL SELECT collection FROM script_runs
  UNION ALL SELECT collection FROM live_queries;

-- Each device's answer: its rows (a JSON array of arrays of text, in the
-- order of the query's select), or why there are none.
CREATE TABLE live_query_results (
  query uuid NOT NULL,
  device_id uuid NOT NULL,
  site_code text NOT NULL,        -- the device's primary
  state text NOT NULL CHECK (state IN ('answered', 'failed', 'too_costly')),
  rows jsonb NOT NULL DEFAULT '[]',
  row_count integer NOT NULL DEFAULT 0,
  truncated boolean NOT NULL DEFAULT false,
  detail text NOT NULL DEFAULT '',
  elapsed_ms bigint NOT NULL DEFAULT 0,
  reported_at timestamptz NOT NULL,
  PRIMARY KEY (query, device_id)
);
CREATE INDEX live_query_results_reported ON live_query_results (query, reported_at);
SELECT repl_enable('live_query_results', 'site');

-- Which clients hold a channel to a management point now (the MPs say so
-- with their status), so that a live query can count who is offline.
CREATE TABLE client_presence (
  device_id uuid PRIMARY KEY,
  site_code text NOT NULL,        -- where the MP is (the device's primary, or its secondary)
  mp text NOT NULL,
  online boolean NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_presence_mp ON client_presence (mp);
SELECT repl_enable('client_presence', 'site');

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{query.read}'
  WHERE name IN ('Read-only Analyst', 'Operations Administrator') AND builtin;
UPDATE security_roles SET permissions = permissions || '{query.read,query.run}'
  WHERE name = 'Script Runner' AND builtin;
SELECT set_config('strata.applying', '', true);
