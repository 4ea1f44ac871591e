-- The os-release ID ("debian", "ubuntu", "rhel") as a column of its own, so
-- that collections and requirements can say os.id = "debian" instead of
-- matching a pretty name. (VERSION_ID was already stored: device_os.version.)
-- Rows collected before this have '' until their client's next inventory.
ALTER TABLE device_os ADD COLUMN os_id text NOT NULL DEFAULT '';
