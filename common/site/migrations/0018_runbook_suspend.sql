-- Suspending and resuming runbook jobs (System Center Service Management
-- Automation's Suspend / Resume; its workflows resume from their last
-- checkpoint).
--
-- A runbook version says whether it can be resumed (resumable); its jobs
-- copy the flag. A job of a resumable runbook may write its state to
-- $STRATA_CHECKPOINT_FILE (at most 64 KiB); the worker sends the file up
-- whenever it changes and the dispatching site keeps the latest
-- (runbook_job_checkpoints, local: no other site needs the bytes). Suspend
-- and resume are one desired state on the job (suspend_requested, global
-- data like the stop request): the dispatching site makes the run follow it
-- (a queued job is suspended where it is; a running one is killed by its
-- worker and recorded suspended; a suspended one resumed is queued again
-- and its next attempt receives the checkpoint as that file). A job whose
-- worker is lost fails over with the checkpoint too.
ALTER TABLE runbook_versions ADD COLUMN resumable boolean NOT NULL DEFAULT false;

ALTER TABLE runbook_jobs
  ADD COLUMN resumable boolean NOT NULL DEFAULT false,
  ADD COLUMN suspend_requested boolean NOT NULL DEFAULT false,
  ADD COLUMN suspend_changed_by text NOT NULL DEFAULT '',  -- who suspended or resumed it last
  ADD COLUMN suspend_changed_at timestamptz;

ALTER TABLE runbook_job_runs DROP CONSTRAINT runbook_job_runs_state_check;
ALTER TABLE runbook_job_runs ADD CONSTRAINT runbook_job_runs_state_check
  CHECK (state IN ('queued', 'dispatched', 'running', 'completed', 'failed', 'stopped',
                   'suspended'));
ALTER TABLE runbook_job_runs
  -- Attempts before the last resume: on_worker_lost's max_attempts counts
  -- the attempts since.
  ADD COLUMN resumed_after integer NOT NULL DEFAULT 0,
  ADD COLUMN checkpoint_bytes integer NOT NULL DEFAULT 0,  -- of the latest checkpoint
  ADD COLUMN checkpoint_at timestamptz;

CREATE TABLE runbook_job_checkpoints (
  job_id uuid PRIMARY KEY,
  attempt integer NOT NULL,  -- the attempt that wrote it
  data bytea NOT NULL CHECK (octet_length(data) <= 65536),
  at timestamptz NOT NULL
);
