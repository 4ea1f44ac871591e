-- Enrollment tokens managed by administrators, and approval decisions.

-- Tokens get a name (to revoke them by), their maker, an optional limit of
-- uses and a revocation time. Rows made before this keep NULLs: every site
-- holds them alike (a column default of now() would differ by site). The
-- name is not UNIQUE: two sites may make tokens of one name at once, and a
-- constraint beside the key would make the applier refuse the other's row,
-- stopping replication between them; a name held twice is revoked by hash.
ALTER TABLE enrollment_tokens
  ADD COLUMN name text CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
  ADD COLUMN created_at timestamptz,
  ADD COLUMN created_by text NOT NULL DEFAULT '',
  ADD COLUMN max_uses integer NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
  ADD COLUMN revoked_at timestamptz;
ALTER TABLE enrollment_tokens ALTER COLUMN created_at SET DEFAULT now();
CREATE INDEX enrollment_tokens_name ON enrollment_tokens (name);

-- Each registration with a token (site data: counted where it happened, and
-- above). A token's limit of uses is enforced by each site against the uses
-- it knows of: its own and those of the sites below it.
CREATE TABLE enrollment_token_uses (
  token_sha256 text NOT NULL,
  device_id uuid NOT NULL,
  site_code text NOT NULL,      -- where the client registered
  used_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (token_sha256, device_id)
);
SELECT repl_enable('enrollment_token_uses', 'site');

-- An administrator's decision about a client: approved (manual approval
-- mode) or blocked. Global data down to every site, secondaries included,
-- so that the site where the client registers knows it wherever the
-- decision was made. A decision overrides what the device record says.
CREATE TABLE client_decisions (
  device_id uuid PRIMARY KEY,
  decision text NOT NULL CHECK (decision IN ('approved', 'blocked')),
  decided_by text NOT NULL,
  decided_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('client_decisions', 'global_proxy');

-- A client's state: the decision about it if any, else its record.
CREATE FUNCTION strata_client_state(device uuid, approved boolean, revoked boolean)
RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT decision FROM client_decisions WHERE device_id = device),
                  CASE WHEN revoked THEN 'blocked' WHEN approved THEN 'approved'
                       ELSE 'pending' END)
$$;

-- Local: clients whose decision changed here or arrived, for the site
-- server to tell its management points (which then look them up again: a
-- blocked client is refused within seconds, not at the next recheck).
CREATE TABLE client_access_changed (
  device_id uuid PRIMARY KEY
);
CREATE FUNCTION client_decision_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT type FROM sites WHERE code = repl_site_code()) = 'cas' THEN RETURN NULL; END IF;
  -- Upserted (see client_setting_assignment_changed).
  IF TG_OP = 'DELETE' THEN
    INSERT INTO client_access_changed SELECT DISTINCT device_id FROM old_rows
      ON CONFLICT (device_id) DO UPDATE SET device_id = EXCLUDED.device_id;
  ELSE
    INSERT INTO client_access_changed SELECT DISTINCT device_id FROM new_rows
      ON CONFLICT (device_id) DO UPDATE SET device_id = EXCLUDED.device_id;
  END IF;
  -- Wake the site server (a secondary logs nothing it applies, so nothing
  -- else would).
  PERFORM pg_notify('strata_repl', '');
  RETURN NULL;
END $$;
CREATE TRIGGER client_decision_insert AFTER INSERT ON client_decisions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION client_decision_changed();
CREATE TRIGGER client_decision_update AFTER UPDATE ON client_decisions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION client_decision_changed();
CREATE TRIGGER client_decision_delete AFTER DELETE ON client_decisions
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION client_decision_changed();

-- Built-in roles grant the new permissions (same rows, same version at
-- every site: not captured).
SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{token.read}'
  WHERE name = 'Read-only Analyst' AND builtin;
UPDATE security_roles SET permissions = permissions || '{token.read,token.create,token.revoke,device.approve}'
  WHERE name IN ('Operations Administrator', 'Infrastructure Administrator') AND builtin;
SELECT set_config('strata.applying', '', true);
