-- Scripts and their runs (Configuration Manager's Run Scripts). A script is
-- global data at the CAS and primaries; a run carries its own copy of the
-- approved body (it is immutable: what runs is exactly what was approved,
-- bound to the body's SHA-256) and is global data every site holds
-- (management points, at secondaries too, serve it). Which devices a run
-- reaches is resolved at their primary from collection membership, as
-- deployments are (script_run_assignments, site data its secondaries take
-- too); what each device did is site data, up to the CAS.
CREATE TABLE scripts (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  interpreter text NOT NULL CHECK (interpreter IN ('bash', 'sh', 'python3')),
  body text NOT NULL CHECK (octet_length(body) BETWEEN 1 AND 262144),
  sha256 text NOT NULL,
  -- strata.v1.ScriptParameter list as protobuf JSON, checked by the provider.
  parameters text NOT NULL DEFAULT '{}',
  timeout_seconds integer NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 86400),
  run_as text NOT NULL DEFAULT '',
  scopes text[] NOT NULL DEFAULT '{Default}',
  author text NOT NULL,
  -- The approval, bound to the body it approved; any edit clears it.
  approved_by text NOT NULL DEFAULT '',
  approved_sha256 text NOT NULL DEFAULT '',
  approved_at timestamptz,
  approval_comment text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('scripts', 'global');

CREATE TABLE script_runs (
  id uuid PRIMARY KEY,
  script text NOT NULL,
  interpreter text NOT NULL,
  body text NOT NULL,
  sha256 text NOT NULL,
  -- strata.v1.ScriptArgument list as protobuf JSON: every parameter's value.
  arguments text NOT NULL DEFAULT '{}',
  timeout_seconds integer NOT NULL,
  run_as text NOT NULL DEFAULT '',
  -- The target: a collection's members, or one device of it (a device run
  -- names All Systems and the device).
  collection text NOT NULL,
  device_id uuid,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX script_runs_collection ON script_runs (collection);
CREATE INDEX script_runs_script ON script_runs (script, created_at);
SELECT repl_enable('script_runs', 'global_proxy');

CREATE TABLE script_run_assignments (
  device_id uuid NOT NULL,
  run uuid NOT NULL,
  site_code text NOT NULL,
  PRIMARY KEY (device_id, run)
);
CREATE INDEX script_run_assignments_run ON script_run_assignments (run);
SELECT repl_enable('script_run_assignments', 'site_proxy');
CREATE TRIGGER script_runs_changed AFTER INSERT OR UPDATE OR DELETE
  ON script_runs FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
CREATE TRIGGER script_run_assignment_insert AFTER INSERT ON script_run_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER script_run_assignment_update AFTER UPDATE ON script_run_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER script_run_assignment_delete AFTER DELETE ON script_run_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();

-- The collections anything resolved per device is deployed to (a later
-- kind replaces this view with one more branch), and the trigger on
-- membership that queues a device whose membership of one changed.
CREATE VIEW per_device_collections AS
  SELECT collection FROM client_setting_deployments
  UNION ALL SELECT collection FROM app_deployments
  UNION ALL SELECT collection FROM maintenance_windows
  UNION ALL SELECT collection FROM script_runs;
CREATE OR REPLACE FUNCTION client_setting_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT enabled FROM collection_evaluation) THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT o.device_id FROM old_rows o
      WHERE EXISTS (SELECT 1 FROM per_device_collections d WHERE d.collection = o.collection)
      ON CONFLICT DO NOTHING;
  ELSE
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT n.device_id FROM new_rows n
      WHERE EXISTS (SELECT 1 FROM per_device_collections d WHERE d.collection = n.collection)
      ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$;

-- What each targeted device did with a run (the newest its agent reported).
CREATE TABLE script_results (
  device_id uuid NOT NULL,
  run uuid NOT NULL,
  site_code text NOT NULL,        -- the device's primary
  state text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'expired')),
  exit_code integer NOT NULL DEFAULT 0,
  output text NOT NULL DEFAULT '',
  truncated boolean NOT NULL DEFAULT false,
  detail text NOT NULL DEFAULT '',
  started_at timestamptz,
  finished_at timestamptz,
  reported_at timestamptz NOT NULL,
  PRIMARY KEY (run, device_id)
);
SELECT repl_enable('script_results', 'site');

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{script.read}'
  WHERE name IN ('Read-only Analyst', 'Operations Administrator') AND builtin;
INSERT INTO security_roles (name, description, builtin, permissions, _hlc, _origin) VALUES
  ('Script Author', 'Writes scripts (runs none, approves none)', true,
   '{script.read,script.author}', 1, '000'),
  ('Script Approver', 'Approves scripts others wrote', true,
   '{script.read,script.approve}', 1, '000'),
  ('Script Runner', 'Runs approved scripts on the devices of their collections', true,
   '{script.read,script.run,device.read,collection.read}', 1, '000');
SELECT set_config('strata.applying', '', true);
