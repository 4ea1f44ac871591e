-- Content links (proto/strata/v1/admin/content_links.proto): the byte rate
-- and hours of content moving into a site's library (target: its code) or a
-- DP's (target: its name), set at the top and held by every site (global
-- data). A site's content manager and its DPs take their own row over their
-- configuration file's settings.
CREATE TABLE content_links (
  target text PRIMARY KEY CHECK (length(target) BETWEEN 1 AND 256),
  max_bytes_per_second bigint NOT NULL DEFAULT 0 CHECK (max_bytes_per_second >= 0),
  hours text NOT NULL DEFAULT '' CHECK (length(hours) <= 200),
  updated_by text NOT NULL DEFAULT '',
  updated_at timestamptz
);
ALTER TABLE content_links ALTER COLUMN updated_at SET DEFAULT now();
SELECT repl_enable('content_links', 'global_proxy');

CREATE TRIGGER content_links_changed AFTER INSERT OR UPDATE OR DELETE ON content_links
  FOR EACH STATEMENT EXECUTE FUNCTION content_changed();

SELECT set_config('strata.applying', 'on', true);
UPDATE security_roles SET permissions = permissions || '{transfer.read}'
  WHERE name = 'Read-only Analyst' AND builtin;
UPDATE security_roles SET permissions = permissions || '{transfer.read,transfer.update}'
  WHERE name IN ('Operations Administrator', 'Infrastructure Administrator') AND builtin;
SELECT set_config('strata.applying', '', true);
