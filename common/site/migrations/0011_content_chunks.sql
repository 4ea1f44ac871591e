-- Chunk lists of large files (ContentFile.chunk_bytes / chunk_sha256): the
-- SHA-256 of each chunk_bytes piece, 64 hex digits each, concatenated, so
-- every receiver verifies and keeps content chunk by chunk. Computed by the
-- top site's content library when a version is committed. Versions made
-- before this have none: their files are verified whole.
ALTER TABLE package_files
  ADD COLUMN chunk_bytes bigint NOT NULL DEFAULT 0 CHECK (chunk_bytes >= 0),
  ADD COLUMN chunk_sha256 text NOT NULL DEFAULT ''
    CHECK (chunk_sha256 ~ '^([0-9a-f]{64})*$' AND length(chunk_sha256) <= 64 * 65536);
