-- Built-in global rows must be the same at every site, whole rows: 0003 and
-- 0004 inserted them with updated_at = now(), so each site showed its own
-- time under one version (1, '000') forever (the applier replaces only
-- newer versions). They get one fixed time here.
SELECT set_config('strata.applying', 'on', true);
UPDATE collections SET updated_at = '2026-01-01 00:00:00+00' WHERE _origin = '000';
UPDATE client_settings SET updated_at = '2026-01-01 00:00:00+00' WHERE _origin = '000';
SELECT set_config('strata.applying', '', true);

-- 0004 also filled the Default Client Settings from each site's own
-- global_settings, under that same version: sites that differed then keep
-- different settings forever. Where the carried-over values are not the
-- built-in ones, the row becomes this site's version at clock 2 (above the
-- built-in 1, below any administrator's edit, whose clock is the time) and
-- is logged for the site's peers by hand (capture steps aside while
-- applying): sites that carried different values converge on one by the
-- usual rule (the same clock: the highest site code), and an edit made
-- anywhere still wins. A fresh site holds the built-in values and writes
-- nothing.
SELECT set_config('strata.applying', 'on', true);
WITH carried AS (
  UPDATE client_settings SET _hlc = 2, _origin = repl_site_code()
   WHERE name = 'Default Client Settings' AND _origin = '000'
     AND EXISTS (SELECT 1 FROM repl_identity)
     AND (policy_poll_seconds, inventory_seconds, heartbeat_seconds, splay_seconds, approval_mode)
         IS DISTINCT FROM (3600::bigint, 604800::bigint, 604800::bigint, 300::bigint, 'token')
  RETURNING *)
INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin)
SELECT 'client_settings', 'global_proxy', 'U', jsonb_build_array(c.name)::text, to_json(c.*),
       c._hlc, c._origin
  FROM carried c;
SELECT set_config('strata.applying', '', true);
