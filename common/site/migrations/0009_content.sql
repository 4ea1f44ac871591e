-- Content: packages and their versions (global data, down to every site:
-- secondaries hold content for their distribution points too), and each
-- site's state of each version in its content library (site data, up to
-- the CAS). The bytes are not here: they are blobs in each site's content
-- library (common/content), named by their SHA-256.
CREATE TABLE packages (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  description text NOT NULL DEFAULT '',
  source_site text NOT NULL CHECK (source_site ~ '^[A-Z0-9]{3}$'),
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz
);
ALTER TABLE packages ALTER COLUMN created_at SET DEFAULT now();
SELECT repl_enable('packages', 'global_proxy');

-- One row per version; its files below. A site acts on a version only once
-- it has all `files` rows (a batch of the link may end inside the
-- transaction that wrote them).
CREATE TABLE package_versions (
  package text NOT NULL,
  version bigint NOT NULL CHECK (version > 0),
  files integer NOT NULL CHECK (files BETWEEN 1 AND 100000),
  total_bytes bigint NOT NULL CHECK (total_bytes >= 0),
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz,
  PRIMARY KEY (package, version)
);
ALTER TABLE package_versions ALTER COLUMN created_at SET DEFAULT now();
SELECT repl_enable('package_versions', 'global_proxy');

CREATE TABLE package_files (
  package text NOT NULL,
  version bigint NOT NULL,
  path text NOT NULL,
  size bigint NOT NULL CHECK (size >= 0),
  mode integer NOT NULL CHECK (mode BETWEEN 0 AND 511),
  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  PRIMARY KEY (package, version, path)
);
SELECT repl_enable('package_files', 'global_proxy');

-- Where each content library stands with each version it should hold (the
-- newest of each package): `location` is 'site' for the site server's own
-- library, else a distribution point's name. queued, transferring (bytes
-- done of total), installed, failed (with why).
CREATE TABLE content_status (
  site_code text NOT NULL,
  location text NOT NULL,
  package text NOT NULL,
  version bigint NOT NULL,
  state text NOT NULL CHECK (state IN ('queued', 'transferring', 'installed', 'failed')),
  bytes_done bigint NOT NULL DEFAULT 0,
  bytes_total bigint NOT NULL DEFAULT 0,
  error text NOT NULL DEFAULT '',
  updated_at timestamptz,
  PRIMARY KEY (site_code, location, package, version)
);
ALTER TABLE content_status ALTER COLUMN updated_at SET DEFAULT now();
SELECT repl_enable('content_status', 'site');

-- A new version, or a package deleted: wake the site's content manager.
CREATE FUNCTION content_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('strata_content', '');
  RETURN NULL;
END $$;
CREATE TRIGGER package_versions_changed AFTER INSERT OR UPDATE OR DELETE ON package_versions
  FOR EACH STATEMENT EXECUTE FUNCTION content_changed();
CREATE TRIGGER package_files_changed AFTER INSERT OR DELETE ON package_files
  FOR EACH STATEMENT EXECUTE FUNCTION content_changed();

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{package.read}'
  WHERE name = 'Read-only Analyst' AND builtin;
UPDATE security_roles SET permissions = permissions || '{package.read,package.create,package.delete}'
  WHERE name IN ('Operations Administrator', 'Infrastructure Administrator') AND builtin;
SELECT set_config('strata.applying', '', true);

-- Blobs that failed validation (re-hashed to other bytes, or gone), where
-- (`location`: 'site' for the site server's own library, else the
-- distribution point's name), with the files that use them; repaired_at is
-- set once the good bytes are back. Site data.
CREATE TABLE content_validation_failures (
  site_code text NOT NULL,
  location text NOT NULL,
  sha256 text NOT NULL,
  found text NOT NULL,
  files text NOT NULL,
  detected_at timestamptz NOT NULL,
  repaired_at timestamptz,
  PRIMARY KEY (site_code, location, sha256)
);
SELECT repl_enable('content_validation_failures', 'site');
