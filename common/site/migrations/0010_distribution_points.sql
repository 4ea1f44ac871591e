-- Distribution points. A DP is known as a site system (site_systems, role
-- 'dp') once it has attached to its site server. What the admin decides is
-- global data, down to every site (a secondary's DPs take their content
-- from it): DP groups, which packages go to which DPs and groups, the DPs
-- of each boundary group, and requests to validate a library now.
CREATE TABLE dp_groups (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT ''
);
SELECT repl_enable('dp_groups', 'global_proxy');

CREATE TABLE dp_group_members (
  group_name text NOT NULL,
  dp text NOT NULL,
  PRIMARY KEY (group_name, dp)
);
SELECT repl_enable('dp_group_members', 'global_proxy');

CREATE TABLE package_distributions (
  package text NOT NULL,
  target_type text NOT NULL CHECK (target_type IN ('dp', 'group')),
  target text NOT NULL,
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz,
  PRIMARY KEY (package, target_type, target)
);
ALTER TABLE package_distributions ALTER COLUMN created_at SET DEFAULT now();
SELECT repl_enable('package_distributions', 'global_proxy');

-- Service location: a boundary group's DPs, in the order clients try them.
CREATE TABLE boundary_group_dps (
  group_name text NOT NULL,
  dp text NOT NULL,
  position integer NOT NULL DEFAULT 0,
  PRIMARY KEY (group_name, dp)
);
SELECT repl_enable('boundary_group_dps', 'global_proxy');

-- Validate a library now ('site' or a DP's name at site_code): the library
-- validates when requested_at is newer than its last validation.
CREATE TABLE content_validation_requests (
  site_code text NOT NULL,
  location text NOT NULL,
  requested_at timestamptz NOT NULL,
  requested_by text NOT NULL DEFAULT '',
  PRIMARY KEY (site_code, location)
);
SELECT repl_enable('content_validation_requests', 'global_proxy');

CREATE TRIGGER dp_group_members_changed AFTER INSERT OR UPDATE OR DELETE ON dp_group_members
  FOR EACH STATEMENT EXECUTE FUNCTION content_changed();
CREATE TRIGGER package_distributions_changed AFTER INSERT OR UPDATE OR DELETE
  ON package_distributions FOR EACH STATEMENT EXECUTE FUNCTION content_changed();
CREATE TRIGGER content_validation_requested AFTER INSERT OR UPDATE ON content_validation_requests
  FOR EACH STATEMENT EXECUTE FUNCTION content_changed();

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{dp.read}'
  WHERE name = 'Read-only Analyst' AND builtin;
UPDATE security_roles SET permissions = permissions || '{dp.read,dp.update,package.distribute}'
  WHERE name IN ('Operations Administrator', 'Infrastructure Administrator') AND builtin;
SELECT set_config('strata.applying', '', true);
