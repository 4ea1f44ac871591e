-- Client settings (Configuration Manager's model). The built-in "Default
-- Client Settings" apply to every client of the hierarchy; custom client
-- settings are deployed to collections and override, field by field, the
-- default and any custom setting of a lower priority (a larger number).
--
-- Definitions are global data that secondaries take too (a secondary's
-- management points merge them). Which custom settings reach which device
-- is resolved at the device's primary, from its collection membership, into
-- client_setting_assignments: that primary's site data, which its
-- secondaries also take (scope site_proxy), so that every management point
-- of the site answers the same policy.
CREATE TABLE client_settings (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  -- 1 is the highest; the default is 10000, below every custom setting.
  priority integer NOT NULL CHECK (priority BETWEEN 1 AND 10000),
  -- NULL: not set here (a lower priority setting, or the default, decides).
  policy_poll_seconds bigint CHECK (policy_poll_seconds > 0),
  inventory_seconds bigint CHECK (inventory_seconds > 0),
  heartbeat_seconds bigint CHECK (heartbeat_seconds > 0),
  splay_seconds bigint CHECK (splay_seconds >= 0),
  -- Registration (before a client belongs to any collection): the default
  -- only. token: an enrollment token is required; manual: clients without
  -- one wait for an administrator's approval; auto: approved at once.
  approval_mode text CHECK (approval_mode IN ('token', 'manual', 'auto')),
  builtin boolean NOT NULL DEFAULT false,
  scopes text[] NOT NULL DEFAULT '{Default}',
  created_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('client_settings', 'global_proxy');

CREATE TABLE client_setting_deployments (
  setting text NOT NULL,
  collection text NOT NULL,
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (setting, collection)
);
CREATE INDEX client_setting_deployments_collection ON client_setting_deployments (collection);
SELECT repl_enable('client_setting_deployments', 'global');

-- Custom settings deployed to a collection the device is a member of.
CREATE TABLE client_setting_assignments (
  device_id uuid NOT NULL,
  setting text NOT NULL,
  site_code text NOT NULL,     -- the primary that resolved it (the device's)
  PRIMARY KEY (device_id, setting)
);
CREATE INDEX client_setting_assignments_setting ON client_setting_assignments (setting);
SELECT repl_enable('client_setting_assignments', 'site_proxy');

-- Local, at primaries: devices whose assignments may have changed (their
-- membership in a collection with deployments changed). Drained by the
-- collection loop after each evaluation, on the thread that writes
-- membership: nothing else writes it meanwhile.
CREATE TABLE client_setting_dirty (
  device_id uuid PRIMARY KEY
);

CREATE FUNCTION client_setting_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT enabled FROM collection_evaluation) THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT o.device_id FROM old_rows o
      WHERE EXISTS (SELECT 1 FROM client_setting_deployments d WHERE d.collection = o.collection)
      ON CONFLICT DO NOTHING;
  ELSE
    INSERT INTO client_setting_dirty (device_id) SELECT DISTINCT n.device_id FROM new_rows n
      WHERE EXISTS (SELECT 1 FROM client_setting_deployments d WHERE d.collection = n.collection)
      ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER client_setting_members_insert AFTER INSERT ON collection_members
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_members_changed();
CREATE TRIGGER client_setting_members_delete AFTER DELETE ON collection_members
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_members_changed();

-- A deployment changed (here or replicated in): wake the evaluator, which
-- then resolves every device's assignments again.
CREATE TRIGGER client_setting_deployments_changed AFTER INSERT OR UPDATE OR DELETE
  ON client_setting_deployments FOR EACH STATEMENT EXECUTE FUNCTION collection_definition_changed();

-- Local, at primaries and secondaries: devices whose assignments changed here (resolved here,
-- or replicated in), for the site server to tell its management points
-- (it looks whenever the site's data changes, as for the bundle).
CREATE TABLE client_setting_changed (
  device_id uuid PRIMARY KEY
);
CREATE FUNCTION client_setting_assignment_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The CAS has no management points (it only keeps the copy).
  IF (SELECT type FROM sites WHERE code = repl_site_code()) = 'cas' THEN RETURN NULL; END IF;
  -- Upserted, not skipped when already queued: the row lock makes a drain
  -- under way (FOR UPDATE SKIP LOCKED) leave the device for after this
  -- transaction, instead of reading it without this change and dropping it.
  IF TG_OP = 'DELETE' THEN
    INSERT INTO client_setting_changed SELECT DISTINCT device_id FROM old_rows
      ON CONFLICT (device_id) DO UPDATE SET device_id = EXCLUDED.device_id;
  ELSE
    INSERT INTO client_setting_changed SELECT DISTINCT device_id FROM new_rows
      ON CONFLICT (device_id) DO UPDATE SET device_id = EXCLUDED.device_id;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER client_setting_assignment_insert AFTER INSERT ON client_setting_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER client_setting_assignment_update AFTER UPDATE ON client_setting_assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();
CREATE TRIGGER client_setting_assignment_delete AFTER DELETE ON client_setting_assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION client_setting_assignment_changed();

-- The built-in default, identical at every site (see 0003). It replaces
-- global_settings' hierarchy-wide client.* rows: their values are carried
-- over (global data, so every site computes the same row), and they are no
-- longer read. Per-site overrides ("P01/client.*") have no equivalent: a
-- custom setting deployed to a collection of that site's devices does it.
SELECT set_config('strata.applying', 'on', true);
INSERT INTO client_settings (name, description, priority, policy_poll_seconds, inventory_seconds,
                             heartbeat_seconds, splay_seconds, approval_mode, builtin, _hlc, _origin)
VALUES ('Default Client Settings', 'Applies to every client; custom settings override it', 10000,
        3600, 604800, 604800, 300, 'token', true, 1, '000');
CREATE FUNCTION pg_temp.old_seconds(setting text, low bigint, high bigint) RETURNS bigint
LANGUAGE sql AS $$
  SELECT value::bigint FROM global_settings WHERE name = setting AND value ~ '^[0-9]{1,7}$'
     AND value::bigint BETWEEN low AND high
$$;
UPDATE client_settings SET
  policy_poll_seconds = coalesce(pg_temp.old_seconds('client.policy_poll_seconds', 1, 2678400),
                                 policy_poll_seconds),
  inventory_seconds = coalesce(pg_temp.old_seconds('client.inventory_seconds', 1, 2678400),
                               inventory_seconds),
  heartbeat_seconds = coalesce(pg_temp.old_seconds('client.heartbeat_seconds', 1, 2678400),
                               heartbeat_seconds),
  splay_seconds = coalesce(pg_temp.old_seconds('client.splay_seconds', 0, 86400), splay_seconds),
  approval_mode = coalesce((SELECT value FROM global_settings WHERE name = 'client.approval' AND
                            value IN ('token', 'manual', 'auto')), approval_mode)
WHERE name = 'Default Client Settings';
SELECT set_config('strata.applying', '', true);

