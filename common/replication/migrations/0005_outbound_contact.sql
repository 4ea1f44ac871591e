-- repl_outbound records, per peer, when it was last in contact (a session
-- starting or ending, or an acknowledgement) and the newest position it
-- acknowledged, NULL until it acknowledged one. The prune loop drops the
-- slot of a peer out of contact past the retention window
-- (DropLapsedSlots), including one that linked once and never
-- acknowledged anything.
ALTER TABLE repl_outbound ALTER COLUMN xid DROP NOT NULL, ALTER COLUMN log_id DROP NOT NULL;
