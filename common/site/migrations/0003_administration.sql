-- Administration: collections, role-based administration, the audit log.
-- Definitions (collections, rules, roles, scopes, administrators) are global
-- data, authored through a provider at the CAS or any primary. Membership and
-- the audit log are site data: each primary evaluates collections for its own
-- clients and audits its own changes, and both reach the CAS.

-- Version order for the query language: numeric runs compare by value
-- ("3.0.9" < "3.0.11"); runs of more than 20 digits compare by their first 20.
CREATE FUNCTION strata_version_key(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT coalesce(string_agg(CASE WHEN m[1] ~ '^[0-9]' THEN lpad(ltrim(m[1], '0'), 20, '0')
                                  ELSE m[1] END, '' ORDER BY o), '')
    FROM regexp_matches(v, '[0-9]+|[^0-9]+', 'g') WITH ORDINALITY AS t(m, o)
$$;

CREATE TABLE collections (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  comment text NOT NULL DEFAULT '',
  -- Members are always a subset of the limiting collection's (NULL only for
  -- All Systems, which holds every device of the site).
  limiting text,
  all_devices boolean NOT NULL DEFAULT false,
  builtin boolean NOT NULL DEFAULT false,
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('collections', 'global');

CREATE TABLE collection_rules (
  collection text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
  kind text NOT NULL CHECK (kind IN ('query', 'direct', 'include', 'exclude')),
  query text,        -- kind query: the query language (common/collections/query.h)
  device_id uuid,    -- kind direct
  ref text,          -- kind include / exclude: another collection
  CHECK ((kind = 'query') = (query IS NOT NULL)),
  CHECK ((kind = 'direct') = (device_id IS NOT NULL)),
  CHECK ((kind IN ('include', 'exclude')) = (ref IS NOT NULL)),
  PRIMARY KEY (collection, name)
);
SELECT repl_enable('collection_rules', 'global');

CREATE TABLE collection_members (
  collection text NOT NULL,
  device_id uuid NOT NULL,
  site_code text NOT NULL,     -- the primary that evaluated it (the device's)
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (collection, device_id)
);
CREATE INDEX collection_members_device ON collection_members (device_id);
SELECT repl_enable('collection_members', 'site');

-- Local: what each collection was last evaluated from, and how it went.
CREATE TABLE collection_eval (
  collection text PRIMARY KEY,
  definition text NOT NULL,    -- md5 of the definition evaluated
  evaluated_at timestamptz NOT NULL DEFAULT now(),
  members integer NOT NULL DEFAULT 0,
  error text
);

-- Local: devices whose data changed since the last incremental evaluation.
-- Filled by triggers (local writes and replicated ones alike, so a
-- secondary's clients count too) only where collections are evaluated.
CREATE TABLE collection_evaluation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  enabled boolean NOT NULL DEFAULT false
);
INSERT INTO collection_evaluation DEFAULT VALUES;
CREATE TABLE collection_dirty (
  device_id uuid PRIMARY KEY,
  since timestamptz NOT NULL DEFAULT now()
);

-- Queued devices are upserted, not skipped when already queued: the row lock
-- this takes makes an evaluator that is draining the queue (FOR UPDATE SKIP
-- LOCKED) leave the device for after this transaction, instead of
-- evaluating it without this transaction's change and dropping it.
CREATE FUNCTION collection_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  upsert text := ' ON CONFLICT (device_id) DO UPDATE SET since = collection_dirty.since';
BEGIN
  IF NOT (SELECT enabled FROM collection_evaluation) THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN
    EXECUTE format('INSERT INTO collection_dirty (device_id) SELECT DISTINCT %I FROM old_rows',
                   TG_ARGV[0]) || upsert;
  ELSIF TG_TABLE_NAME = 'devices' AND TG_OP = 'UPDATE' THEN
    -- Every report updates its device (last seen, sequence numbers): only
    -- the columns a query can name make it worth evaluating again.
    EXECUTE 'INSERT INTO collection_dirty (device_id) SELECT n.id FROM new_rows n JOIN old_rows o '
            'ON o.id = n.id WHERE (n.name, n.site_code, n.active) IS DISTINCT FROM '
            '(o.name, o.site_code, o.active)' || upsert;
  ELSE
    EXECUTE format('INSERT INTO collection_dirty (device_id) SELECT DISTINCT %I FROM new_rows',
                   TG_ARGV[0]) || upsert;
  END IF;
  PERFORM pg_notify('strata_collections', 'devices');
  RETURN NULL;
END $$;

DO $$
DECLARE t text; col text;
BEGIN
  FOR t, col IN SELECT * FROM (VALUES ('devices', 'id'), ('device_os', 'device_id'),
      ('device_system', 'device_id'), ('device_memory', 'device_id'),
      ('device_processor', 'device_id'), ('device_disk', 'device_id'),
      ('device_network', 'device_id'), ('device_software', 'device_id')) AS v(t, col) LOOP
    EXECUTE format('CREATE TRIGGER collection_dirty_insert AFTER INSERT ON %I REFERENCING NEW TABLE '
                   'AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION collection_mark_dirty(%L)', t, col);
    EXECUTE format('CREATE TRIGGER collection_dirty_update AFTER UPDATE ON %I REFERENCING OLD TABLE '
                   'AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION collection_mark_dirty(%L)', t, col);
    EXECUTE format('CREATE TRIGGER collection_dirty_delete AFTER DELETE ON %I REFERENCING OLD TABLE '
                   'AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION collection_mark_dirty(%L)', t, col);
  END LOOP;
END $$;

-- A definition changed (here or replicated in): wake the evaluator.
CREATE FUNCTION collection_definition_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('strata_collections', 'definitions');
  RETURN NULL;
END $$;
CREATE TRIGGER collection_definition_changed AFTER INSERT OR UPDATE OR DELETE ON collections
  FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();
CREATE TRIGGER collection_definition_changed AFTER INSERT OR UPDATE OR DELETE ON collection_rules
  FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();

-- Role-based administration (Configuration Manager's model): a security role
-- is a set of permissions ("collection.create"); an administrator holds
-- roles, security scopes (which objects they see) and collections (which
-- devices they see).
CREATE TABLE security_roles (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  description text NOT NULL DEFAULT '',
  builtin boolean NOT NULL DEFAULT false,
  permissions text[] NOT NULL
);
SELECT repl_enable('security_roles', 'global');

CREATE TABLE security_scopes (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  description text NOT NULL DEFAULT '',
  builtin boolean NOT NULL DEFAULT false
);
SELECT repl_enable('security_scopes', 'global');

CREATE TABLE administrators (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),  -- certificate CN, OU=admin
  roles text[] NOT NULL,
  scopes text[] NOT NULL DEFAULT '{All}',                -- 'All': every scope
  collections text[] NOT NULL DEFAULT '{All Systems}',   -- devices they may see
  created_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('administrators', 'global');

CREATE TABLE audit_log (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  site_code text NOT NULL,
  admin text NOT NULL,
  action text NOT NULL,        -- create, update, delete, ...
  object_type text NOT NULL,
  object_name text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('ok', 'denied')),
  summary text NOT NULL        -- old -> new, or what was missing
);
CREATE INDEX audit_log_at ON audit_log (at);
SELECT repl_enable('audit_log', 'site');

-- Built-in objects exist at every site from the start, identical everywhere:
-- written here without change capture, stamped with clock 1 and the
-- reserved origin "000" (so a snapshot carries them and every peer already
-- holds the same version). They are read-only.
SELECT set_config('strata.applying', 'on', true);

INSERT INTO security_scopes (name, description, builtin, _hlc, _origin) VALUES
  ('Default', 'Objects not assigned to another scope', true, 1, '000');

INSERT INTO security_roles (name, description, builtin, permissions, _hlc, _origin) VALUES
  ('Full Administrator', 'Every permission on every object', true, '{*}', 1, '000'),
  ('Read-only Analyst', 'Sees everything, changes nothing', true,
   '{site.read,link.read,device.read,collection.read,settings.read,boundary.read,report.run,audit.read,role.read,admin.read}', 1, '000'),
  ('Operations Administrator', 'Everything except security administration', true,
   '{site.read,link.read,link.reinit,device.read,device.delete,collection.read,collection.create,collection.update,collection.delete,settings.read,settings.update,boundary.read,boundary.create,boundary.update,boundary.delete,report.run,audit.read,role.read,admin.read}', 1, '000'),
  ('Application Administrator', 'Collections and what is deployed to them', true,
   '{site.read,device.read,collection.read,collection.create,collection.update,collection.delete,settings.read,report.run}', 1, '000'),
  ('Infrastructure Administrator', 'Sites, replication, boundaries and client settings', true,
   '{site.read,link.read,link.reinit,device.read,collection.read,settings.read,settings.update,boundary.read,boundary.create,boundary.update,boundary.delete,report.run,audit.read}', 1, '000');

INSERT INTO collections (name, comment, limiting, all_devices, builtin, _hlc, _origin) VALUES
  ('All Systems', 'Every device of the site', NULL, true, true, 1, '000'),
  ('All Linux Systems', 'Every device reporting a Linux kernel', 'All Systems', false, true, 1, '000');
INSERT INTO collection_rules (collection, name, kind, query, _hlc, _origin) VALUES
  ('All Linux Systems', 'Linux kernel', 'query', 'os.kernel != ""', 1, '000');

SELECT set_config('strata.applying', '', true);
