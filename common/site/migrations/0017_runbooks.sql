-- Runbooks (System Center Service Management Automation): automation jobs
-- stored in the hierarchy and run by workers.
--
-- runbooks, runbook_versions: the definitions, global data at the CAS and
--   primaries (the provider's). Editing makes a draft version; a job runs
--   the published one; publishing a draft or rolling back to an earlier
--   version moves runbooks.published_version.
-- runbook_worker_groups: global data every site holds. A group names a
--   collection whose members are its workers and the site that dispatches
--   its jobs (its workers are that site's clients, through its management
--   points). Which devices are workers of which group is resolved at their
--   primary as script runs are (runbook_worker_assignments, down to the
--   primary's secondaries too).
-- runbook_jobs: a job as the admin started it, carrying its own copy of the
--   published body (immutable but for a stop request), global data every
--   site holds.
-- runbook_job_runs, runbook_job_attempts, runbook_job_output: what the
--   dispatching site made of each job (its state, the worker holding it
--   under a lease, each attempt, the streams), site data up to the CAS.
CREATE TABLE runbooks (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  tags text[] NOT NULL DEFAULT '{}',
  scopes text[] NOT NULL DEFAULT '{Default}',
  published_version integer NOT NULL DEFAULT 0,  -- 0: never published
  draft_version integer NOT NULL DEFAULT 0,      -- 0: no draft
  latest_version integer NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('runbooks', 'global');

CREATE TABLE runbook_versions (
  runbook text NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  interpreter text NOT NULL CHECK (interpreter IN ('bash', 'sh', 'python3')),
  body text NOT NULL CHECK (octet_length(body) BETWEEN 1 AND 262144),
  sha256 text NOT NULL,
  -- strata.v1.ScriptParameter list as protobuf JSON, checked by the provider.
  parameters text NOT NULL DEFAULT '{}',
  timeout_seconds integer NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 604800),
  run_as text NOT NULL DEFAULT '',
  -- A job whose worker is lost (its lease lapsed): run again on another
  -- worker (up to max_attempts in all), or fail.
  on_worker_lost text NOT NULL CHECK (on_worker_lost IN ('retry', 'fail')),
  max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 10),
  assets text[] NOT NULL DEFAULT '{}',  -- the assets its jobs receive (names)
  author text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_by text NOT NULL DEFAULT '',
  published_at timestamptz,
  PRIMARY KEY (runbook, version)
);
SELECT repl_enable('runbook_versions', 'global');

CREATE TABLE runbook_worker_groups (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  site_code text NOT NULL,
  collection text NOT NULL,
  max_jobs_per_worker integer NOT NULL CHECK (max_jobs_per_worker BETWEEN 1 AND 1000),
  max_jobs integer NOT NULL CHECK (max_jobs >= 0),  -- at once in the group; 0: no limit
  lease_seconds integer NOT NULL CHECK (lease_seconds BETWEEN 10 AND 3600),
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runbook_worker_groups_collection ON runbook_worker_groups (collection);
SELECT repl_enable('runbook_worker_groups', 'global_proxy');

CREATE TABLE runbook_worker_assignments (
  device_id uuid NOT NULL,
  worker_group text NOT NULL,
  site_code text NOT NULL,
  PRIMARY KEY (device_id, worker_group)
);
CREATE INDEX runbook_worker_assignments_group ON runbook_worker_assignments (worker_group);
SELECT repl_enable('runbook_worker_assignments', 'site_proxy');
CREATE TRIGGER runbook_worker_groups_changed AFTER INSERT OR UPDATE OR DELETE
  ON runbook_worker_groups FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
CREATE TRIGGER runbook_worker_assignment_insert AFTER INSERT ON runbook_worker_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER runbook_worker_assignment_update AFTER UPDATE ON runbook_worker_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER runbook_worker_assignment_delete AFTER DELETE ON runbook_worker_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE OR REPLACE VIEW per_device_collections AS
  SELECT collection FROM client_setting_deployments
  UNION ALL SELECT collection FROM app_deployments
  UNION ALL SELECT collection FROM maintenance_windows
  UNION ALL SELECT collection FROM script_runs
  UNION ALL SELECT collection FROM live_queries
  UNION ALL SELECT collection FROM runbook_worker_groups;

CREATE TABLE runbook_jobs (
  id uuid PRIMARY KEY,
  runbook text NOT NULL,
  version integer NOT NULL,
  interpreter text NOT NULL,
  body text NOT NULL,
  sha256 text NOT NULL,
  -- strata.v1.ScriptArgument list as protobuf JSON: every parameter's value.
  arguments text NOT NULL DEFAULT '{}',
  timeout_seconds integer NOT NULL,
  run_as text NOT NULL DEFAULT '',
  on_worker_lost text NOT NULL,
  max_attempts integer NOT NULL,
  assets text[] NOT NULL DEFAULT '{}',  -- names: their values reach the worker, never this row
  worker_group text NOT NULL,
  site_code text NOT NULL,        -- the group's site when it started: it dispatches the job
  scopes text[] NOT NULL,         -- the runbook's, when it started (who may read the job)
  created_by text NOT NULL,
  schedule text NOT NULL DEFAULT '',  -- the schedule that started it ('': an administrator)
  created_at timestamptz NOT NULL DEFAULT now(),
  stop_requested_by text NOT NULL DEFAULT '',
  stop_requested_at timestamptz
);
CREATE INDEX runbook_jobs_runbook ON runbook_jobs (runbook, created_at);
CREATE INDEX runbook_jobs_created ON runbook_jobs (created_at);
SELECT repl_enable('runbook_jobs', 'global_proxy');

-- Local: jobs of this site's groups that arrived or were asked to stop
-- (here or by replication) and that the dispatcher has not taken in yet.
CREATE TABLE runbook_intake (
  job_id uuid PRIMARY KEY
);
CREATE FUNCTION runbook_job_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO runbook_intake (job_id) SELECT id FROM new_rows
    WHERE site_code = repl_site_code() ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER runbook_job_insert AFTER INSERT ON runbook_jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION runbook_job_arrived();
CREATE TRIGGER runbook_job_update AFTER UPDATE ON runbook_jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION runbook_job_arrived();

-- Local: workers to nudge (WORK_WAITING) because work waits for them.
CREATE TABLE runbook_wake (
  device_id uuid PRIMARY KEY
);

CREATE TABLE runbook_job_runs (
  job_id uuid PRIMARY KEY,
  site_code text NOT NULL,        -- the dispatching site
  worker_group text NOT NULL,
  runbook text NOT NULL,
  state text NOT NULL CHECK (state IN ('queued', 'dispatched', 'running', 'completed',
                                       'failed', 'stopped')),
  attempt integer NOT NULL DEFAULT 0,
  device_id uuid,                 -- the worker holding it (or that last held it)
  worker_name text NOT NULL DEFAULT '',
  lease_expires_at timestamptz,
  queued_at timestamptz NOT NULL,
  dispatched_at timestamptz,
  started_at timestamptz,
  ended_at timestamptz,
  exit_code integer,
  detail text NOT NULL DEFAULT ''
);
CREATE INDEX runbook_job_runs_queued ON runbook_job_runs (worker_group, runbook, queued_at)
  WHERE state = 'queued';
CREATE INDEX runbook_job_runs_held ON runbook_job_runs (device_id)
  WHERE state IN ('dispatched', 'running');
-- The jobs under way in a group, per worker: counted at every claim (the
-- limits) whatever the history holds.
CREATE INDEX runbook_job_runs_busy ON runbook_job_runs (worker_group, device_id)
  WHERE state IN ('dispatched', 'running');
CREATE INDEX runbook_job_runs_lease ON runbook_job_runs (lease_expires_at)
  WHERE state IN ('dispatched', 'running');
SELECT repl_enable('runbook_job_runs', 'site');

CREATE TABLE runbook_job_attempts (
  job_id uuid NOT NULL,
  attempt integer NOT NULL,
  site_code text NOT NULL,
  device_id uuid NOT NULL,
  worker_name text NOT NULL DEFAULT '',
  dispatched_at timestamptz NOT NULL,
  started_at timestamptz,
  ended_at timestamptz,
  outcome text NOT NULL DEFAULT '',  -- '' while held; completed, failed, stopped, lost
  detail text NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, attempt)
);
SELECT repl_enable('runbook_job_attempts', 'site');

-- The streams, in chunks as the worker sent them: a chunk is named by its
-- byte offset in its stream, so a chunk sent again (after a lost answer or
-- a restarted agent) changes nothing.
CREATE TABLE runbook_job_output (
  job_id uuid NOT NULL,
  attempt integer NOT NULL,
  stream text NOT NULL CHECK (stream IN ('output', 'error', 'verbose')),
  byte_offset bigint NOT NULL CHECK (byte_offset >= 0),
  site_code text NOT NULL,
  text text NOT NULL,
  at timestamptz NOT NULL,
  PRIMARY KEY (job_id, attempt, stream, byte_offset)
);
SELECT repl_enable('runbook_job_output', 'site');

-- Assets: variables (plain or encrypted), credentials (a user and a secret)
-- and certificates (a PEM certificate and its key), global data every site
-- holds (the dispatching site hands them to the worker with the job). What
-- is secret is sealed with the hierarchy's asset key (AES-256-GCM,
-- common/net/asset_key.h), which no database holds; the provider never
-- returns it in plain form.
CREATE TABLE runbook_assets (
  name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
  kind text NOT NULL CHECK (kind IN ('variable', 'credential', 'certificate')),
  description text NOT NULL DEFAULT '',
  encrypted boolean NOT NULL,
  value text NOT NULL DEFAULT '',        -- a plain variable's value
  user_name text NOT NULL DEFAULT '',    -- a credential's user
  certificate text NOT NULL DEFAULT '',  -- a certificate's PEM
  sealed text NOT NULL DEFAULT '',       -- encrypted value, secret or private key
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('runbook_assets', 'global_proxy');

-- Schedules: global data at the CAS and primaries; the site that made one
-- fires it (runbook_schedule_runs, local: when it runs next).
CREATE TABLE runbook_schedules (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  runbook text NOT NULL,
  worker_group text NOT NULL,
  -- The rule (kind, start, interval, at, days, time zone, missed) as a
  -- strata.v1.RunbookSchedule in protobuf JSON, checked by the provider.
  rule text NOT NULL,
  parameters text NOT NULL DEFAULT '{}',  -- strata.v1.ScriptArgument list as protobuf JSON
  disabled boolean NOT NULL DEFAULT false,
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('runbook_schedules', 'global');
CREATE TABLE runbook_schedule_runs (
  name text PRIMARY KEY,
  rule_updated_at timestamptz NOT NULL,  -- the schedule's version next_run_at was computed for
  next_run_at timestamptz,               -- NULL: none (a one-time schedule that ran)
  last_run_at timestamptz,
  last_job uuid,
  last_error text NOT NULL DEFAULT ''
);

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{runbook.read,runbook.read-jobs}'
  WHERE name IN ('Read-only Analyst', 'Operations Administrator') AND builtin;
INSERT INTO security_roles (name, description, builtin, permissions, _hlc, _origin) VALUES
  ('Runbook Author', 'Writes runbooks and drafts of them (publishes none, runs none)', true,
   '{runbook.read,runbook.author}', 1, '000'),
  ('Runbook Operator',
   'Publishes runbooks, makes worker groups and assets, runs runbooks and reads their jobs',
   true, '{runbook.read,runbook.publish,runbook.run,runbook.read-jobs,runbook.workers,runbook.assets,collection.read}', 1,
   '000');
SELECT set_config('strata.applying', '', true);
