-- Applications and their deployments (Configuration Manager's application
-- model). Definitions are global data every site holds (management points,
-- at secondaries too, serve them to clients). Which deployments reach which
-- device is resolved at the device's primary from collection membership,
-- with the client settings' mechanism (0004): app_deployment_assignments is
-- that primary's site data, also taken by its secondaries. What each device
-- did with each deployment is site data, up to the CAS, where (as at every
-- site) its counts are kept as the states arrive.
CREATE TABLE applications (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  publisher text NOT NULL DEFAULT '',
  software_version text NOT NULL DEFAULT '',
  -- strata.v1.Application as protobuf JSON (deployment types, detection,
  -- requirements, return codes), checked by the provider.
  definition text NOT NULL,
  depends_on text[] NOT NULL DEFAULT '{}',
  supersedes text[] NOT NULL DEFAULT '{}',
  -- Packages whose content a deployment type names (a package in use is
  -- not deleted).
  packages text[] NOT NULL DEFAULT '{}',
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('applications', 'global_proxy');

CREATE TABLE app_deployments (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  application text NOT NULL,
  collection text NOT NULL,
  action text NOT NULL CHECK (action IN ('install', 'uninstall')),
  purpose text NOT NULL CHECK (purpose IN ('required', 'available')),
  available_at timestamptz NOT NULL,
  deadline timestamptz NOT NULL,
  max_retries integer NOT NULL CHECK (max_retries BETWEEN 0 AND 100),
  retry_seconds integer NOT NULL CHECK (retry_seconds BETWEEN 10 AND 86400),
  rerun_interrupted boolean NOT NULL DEFAULT false,
  ignore_maintenance_windows boolean NOT NULL DEFAULT false,
  -- A device that learns of the deployment only after its deadline (it was
  -- off) waits this long before enforcing it.
  grace_minutes integer NOT NULL DEFAULT 0 CHECK (grace_minutes BETWEEN 0 AND 10080),
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (deadline >= available_at)
);
CREATE INDEX app_deployments_collection ON app_deployments (collection);
CREATE INDEX app_deployments_application ON app_deployments (application);
SELECT repl_enable('app_deployments', 'global_proxy');

CREATE TABLE app_deployment_assignments (
  device_id uuid NOT NULL,
  deployment text NOT NULL,
  site_code text NOT NULL,
  PRIMARY KEY (device_id, deployment)
);
CREATE INDEX app_deployment_assignments_deployment ON app_deployment_assignments (deployment);
SELECT repl_enable('app_deployment_assignments', 'site_proxy');

-- Maintenance windows of collections: when required installs may run on
-- their members (strata.v1.MaintenanceWindow; checked by the provider).
-- Which windows reach which device is resolved as deployments are.
CREATE TABLE maintenance_windows (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  collection text NOT NULL,
  start text NOT NULL,            -- civil time, "2026-12-01T22:00"
  utc boolean NOT NULL DEFAULT false,
  duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 1440),
  recurrence text NOT NULL
    CHECK (recurrence IN ('none', 'daily', 'weekly', 'monthly_day', 'monthly_weekday')),
  created_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX maintenance_windows_collection ON maintenance_windows (collection);
SELECT repl_enable('maintenance_windows', 'global_proxy');

CREATE TABLE maintenance_window_assignments (
  device_id uuid NOT NULL,
  maintenance_window text NOT NULL,
  site_code text NOT NULL,
  PRIMARY KEY (device_id, maintenance_window)
);
SELECT repl_enable('maintenance_window_assignments', 'site_proxy');
CREATE TRIGGER maintenance_windows_changed AFTER INSERT OR UPDATE OR DELETE
  ON maintenance_windows FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
CREATE TRIGGER maintenance_window_assignment_insert AFTER INSERT ON maintenance_window_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER maintenance_window_assignment_update AFTER UPDATE ON maintenance_window_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER maintenance_window_assignment_delete AFTER DELETE ON maintenance_window_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();

-- Membership of a collection with an application deployment or a
-- maintenance window changed: the device is resolved again (the client
-- settings' queue, one queue for all three).
CREATE OR REPLACE FUNCTION client_setting_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT enabled FROM collection_evaluation) THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT o.device_id FROM old_rows o
      WHERE EXISTS (SELECT 1 FROM client_setting_deployments d WHERE d.collection = o.collection)
         OR EXISTS (SELECT 1 FROM app_deployments d WHERE d.collection = o.collection)
         OR EXISTS (SELECT 1 FROM maintenance_windows d WHERE d.collection = o.collection)
      ON CONFLICT DO NOTHING;
  ELSE
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT n.device_id FROM new_rows n
      WHERE EXISTS (SELECT 1 FROM client_setting_deployments d WHERE d.collection = n.collection)
         OR EXISTS (SELECT 1 FROM app_deployments d WHERE d.collection = n.collection)
         OR EXISTS (SELECT 1 FROM maintenance_windows d WHERE d.collection = n.collection)
      ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER app_deployments_changed AFTER INSERT OR UPDATE OR DELETE
  ON app_deployments FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
-- A changed assignment is told to the management points as a custom
-- setting's is (client_setting_changed).
CREATE TRIGGER app_deployment_assignment_insert AFTER INSERT ON app_deployment_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER app_deployment_assignment_update AFTER UPDATE ON app_deployment_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER app_deployment_assignment_delete AFTER DELETE ON app_deployment_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();

-- Each device's state of each deployment that reached it (the newest its
-- agent reported).
CREATE TABLE deployment_states (
  device_id uuid NOT NULL,
  deployment text NOT NULL,
  site_code text NOT NULL,        -- the device's primary
  state text NOT NULL,            -- waiting, downloading, installing, installed, failed, ...
  deployment_type text NOT NULL DEFAULT '',
  revision text NOT NULL DEFAULT '',
  exit_code integer NOT NULL DEFAULT 0,
  detail text NOT NULL DEFAULT '',
  bytes_done bigint NOT NULL DEFAULT 0,
  bytes_total bigint NOT NULL DEFAULT 0,
  attempt integer NOT NULL DEFAULT 0,
  reported_at timestamptz NOT NULL,
  PRIMARY KEY (device_id, deployment)
);
CREATE INDEX deployment_states_deployment ON deployment_states (deployment, state);
SELECT repl_enable('deployment_states', 'site');

-- Local at every site: devices per deployment, site and state, kept by the
-- trigger below as states are written here or replicated in (never
-- recounted on a timer): the CAS's numbers are as fresh as replication.
CREATE TABLE deployment_state_counts (
  deployment text NOT NULL,
  site_code text NOT NULL,
  state text NOT NULL,
  devices bigint NOT NULL,
  PRIMARY KEY (deployment, site_code, state)
);
CREATE FUNCTION deployment_states_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- One statement, in key order: concurrent writers lock count rows in the
  -- same order (no deadlock).
  IF TG_OP = 'INSERT' THEN
    INSERT INTO deployment_state_counts AS c (deployment, site_code, state, devices)
      SELECT deployment, site_code, state, count(*) FROM new_rows
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
      ON CONFLICT (deployment, site_code, state) DO UPDATE SET devices = c.devices + EXCLUDED.devices;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO deployment_state_counts AS c (deployment, site_code, state, devices)
      SELECT deployment, site_code, state, -count(*) FROM old_rows
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
      ON CONFLICT (deployment, site_code, state) DO UPDATE SET devices = c.devices + EXCLUDED.devices;
  ELSE
    INSERT INTO deployment_state_counts AS c (deployment, site_code, state, devices)
      SELECT deployment, site_code, state, sum(n) FROM (
        SELECT deployment, site_code, state, 1 AS n FROM new_rows
        UNION ALL SELECT deployment, site_code, state, -1 FROM old_rows) x
      GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3
      ON CONFLICT (deployment, site_code, state) DO UPDATE SET devices = c.devices + EXCLUDED.devices;
  END IF;
  DELETE FROM deployment_state_counts WHERE devices = 0;
  RETURN NULL;
END $$;
CREATE TRIGGER deployment_states_count_insert AFTER INSERT ON deployment_states
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deployment_states_count();
CREATE TRIGGER deployment_states_count_update AFTER UPDATE ON deployment_states
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION deployment_states_count();
CREATE TRIGGER deployment_states_count_delete AFTER DELETE ON deployment_states
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deployment_states_count();

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{application.read,deployment.read,window.read}'
  WHERE name = 'Read-only Analyst' AND builtin;
UPDATE security_roles SET permissions = permissions ||
    '{application.read,application.update,deployment.read,deployment.update,window.read,window.update}'
  WHERE name IN ('Operations Administrator', 'Application Administrator') AND builtin;
SELECT set_config('strata.applying', '', true);
