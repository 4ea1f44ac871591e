-- Clients and their inventory.
--
-- A device row is the client record (Configuration Manager's System
-- resource): registration, assignment, the last report applied, activity.
-- It and every inventory table are site data: written at the site whose MP
-- received the data (a primary, or a secondary for its branch), replicated up.
ALTER TABLE devices
  ADD COLUMN hardware_id text,
  ADD COLUMN registered_via text,                    -- site whose MP registered it
  ADD COLUMN approved boolean NOT NULL DEFAULT true,
  ADD COLUMN revoked boolean NOT NULL DEFAULT false,
  ADD COLUMN cert_serial text,
  ADD COLUMN last_report_seq bigint NOT NULL DEFAULT 0,  -- reports up to here are applied
  ADD COLUMN inventory_seq bigint NOT NULL DEFAULT 0,    -- the inventory the site holds
  ADD COLUMN needs_full_inventory boolean NOT NULL DEFAULT false,
  ADD COLUMN last_inventory_at timestamptz,
  ADD COLUMN last_heartbeat_at timestamptz,
  ADD COLUMN ip_addresses text[] NOT NULL DEFAULT '{}';
CREATE INDEX devices_hardware_id ON devices (hardware_id);

CREATE TABLE device_os (
  device_id uuid PRIMARY KEY,
  name text NOT NULL,
  version text NOT NULL,
  pretty_name text NOT NULL,
  kernel text NOT NULL,
  architecture text NOT NULL,
  hostname text NOT NULL
);
SELECT repl_enable('device_os', 'site');

CREATE TABLE device_system (
  device_id uuid PRIMARY KEY,
  vendor text NOT NULL,
  product text NOT NULL,
  serial text NOT NULL,
  bios_vendor text NOT NULL,
  bios_version text NOT NULL,
  bios_date text NOT NULL,
  virtualization text NOT NULL,
  uptime_s bigint NOT NULL,
  boot_time timestamptz
);
SELECT repl_enable('device_system', 'site');

CREATE TABLE device_memory (
  device_id uuid PRIMARY KEY,
  total_kb bigint NOT NULL CHECK (total_kb >= 0),
  swap_kb bigint NOT NULL CHECK (swap_kb >= 0)
);
SELECT repl_enable('device_memory', 'site');

CREATE TABLE device_processor (
  device_id uuid NOT NULL,
  idx integer NOT NULL,
  model text NOT NULL,
  sockets integer NOT NULL,
  cores integer NOT NULL,
  threads integer NOT NULL,
  PRIMARY KEY (device_id, idx)
);
SELECT repl_enable('device_processor', 'site');

CREATE TABLE device_disk (
  device_id uuid NOT NULL,
  name text NOT NULL,          -- block device, or mount point for a filesystem
  is_filesystem boolean NOT NULL,
  model text NOT NULL,
  fs_type text NOT NULL,
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  free_bytes bigint NOT NULL CHECK (free_bytes >= 0),
  PRIMARY KEY (device_id, name)
);
SELECT repl_enable('device_disk', 'site');

CREATE TABLE device_network (
  device_id uuid NOT NULL,
  name text NOT NULL,
  mac text NOT NULL,
  ipv4 text[] NOT NULL,
  ipv6 text[] NOT NULL,
  speed_mbps bigint NOT NULL,
  PRIMARY KEY (device_id, name)
);
SELECT repl_enable('device_network', 'site');

CREATE TABLE device_software (
  device_id uuid NOT NULL,
  name text NOT NULL,
  architecture text NOT NULL,
  version text NOT NULL,
  source text NOT NULL,
  installed_at timestamptz,
  PRIMARY KEY (device_id, name, architecture)
);
CREATE INDEX device_software_name ON device_software (name, version);
SELECT repl_enable('device_software', 'site');

CREATE TABLE status_messages (
  device_id uuid NOT NULL,
  seq bigint NOT NULL,          -- the client's report sequence
  topic text NOT NULL,
  severity integer NOT NULL,
  text text NOT NULL,
  created_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, seq)
);
SELECT repl_enable('status_messages', 'site');

-- Management points and (later) distribution points, as their site server
-- saw them connect: site data, so a primary knows its secondaries' systems.
CREATE TABLE site_systems (
  site_code text NOT NULL,
  role text NOT NULL CHECK (role IN ('mp', 'dp')),
  name text NOT NULL,
  address text NOT NULL,
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (site_code, role, name)
);
SELECT repl_enable('site_systems', 'site');

-- Service location (global data, down to secondaries too).
CREATE TABLE boundary_groups (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  assigned_site text NOT NULL CHECK (assigned_site ~ '^[A-Z0-9]{3}$')
);
SELECT repl_enable('boundary_groups', 'global_proxy');

CREATE TABLE boundaries (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
  value text NOT NULL,   -- CIDR "10.1.0.0/16" or range "10.1.0.10-10.1.0.200"
  group_name text NOT NULL
);
SELECT repl_enable('boundaries', 'global_proxy');

-- Enrollment tokens (only their SHA-256 is stored), global data.
CREATE TABLE enrollment_tokens (
  token_sha256 text PRIMARY KEY CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
  description text NOT NULL DEFAULT '',
  expires_at timestamptz
);
SELECT repl_enable('enrollment_tokens', 'global_proxy');
