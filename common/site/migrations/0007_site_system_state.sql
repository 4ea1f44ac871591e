-- What the site server knows of its site systems: the version each runs,
-- whether it is connected, and how many clients hold a connection to it
-- (reported by the system every status interval; last_seen_at is then).
ALTER TABLE site_systems
  ADD COLUMN version text NOT NULL DEFAULT '',
  ADD COLUMN state text NOT NULL DEFAULT 'online' CHECK (state IN ('online', 'offline')),
  ADD COLUMN clients_connected bigint NOT NULL DEFAULT 0;
