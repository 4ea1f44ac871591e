-- The hierarchy itself: global data every site keeps (secondaries too).
CREATE TABLE sites (
  code text PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{3}$'),
  type text NOT NULL CHECK (type IN ('cas', 'primary', 'secondary')),
  parent text CHECK (parent IS NULL OR parent ~ '^[A-Z0-9]{3}$'),
  version text NOT NULL,
  state text NOT NULL DEFAULT 'active',
  attached_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('sites', 'global_proxy');

-- Hierarchy-wide settings (name -> value): global data every site keeps.
CREATE TABLE global_settings (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  value text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('global_settings', 'global_proxy');

-- Devices: discovery records, site data owned by the primary that discovered
-- them; they replicate up to the CAS. The management point issue fills them.
CREATE TABLE devices (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  site_code text NOT NULL CHECK (site_code ~ '^[A-Z0-9]{3}$'),
  discovered_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz,
  active boolean NOT NULL DEFAULT true
);
CREATE INDEX devices_site ON devices (site_code);
SELECT repl_enable('devices', 'site');
