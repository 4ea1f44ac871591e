-- A fourth scope, 'site_proxy': site data (it goes up to the CAS) that a
-- primary's secondaries also take (they serve the primary's clients).
ALTER TABLE repl_scope DROP CONSTRAINT repl_scope_scope_check;
ALTER TABLE repl_scope ADD CONSTRAINT repl_scope_scope_check
  CHECK (scope IN ('global', 'global_proxy', 'site', 'site_proxy'));
