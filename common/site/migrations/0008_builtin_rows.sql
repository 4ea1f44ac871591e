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
-- built-in ones, the row is written again as this site's own change
-- (stamped and captured), so it replicates and every site converges on one
-- version by the usual rule (last writer by clock, then site code). A fresh
-- site holds the built-in values and writes nothing.
UPDATE client_settings SET updated_at = now()
 WHERE name = 'Default Client Settings' AND _origin = '000'
   AND EXISTS (SELECT 1 FROM repl_identity)
   AND (policy_poll_seconds, inventory_seconds, heartbeat_seconds, splay_seconds, approval_mode)
       IS DISTINCT FROM (3600::bigint, 604800::bigint, 604800::bigint, 300::bigint, 'token');
