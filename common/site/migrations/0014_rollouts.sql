-- Phased rollouts: an application deployed to one collection after
-- another. Each phase is an ordinary deployment ("<rollout> (phase N)",
-- app_deployments.rollout); the next is made only when the one before
-- reached its success rate, and a failure rate above the limit halts the
-- rollout with the reason. Made at the top of the hierarchy and advanced
-- there (common/site/rollouts.cc), from the counts it keeps of every
-- device's state.
CREATE TABLE deployment_rollouts (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
  application text NOT NULL,
  collections text[] NOT NULL CHECK (cardinality(collections) BETWEEN 2 AND 10),
  success_percent integer NOT NULL CHECK (success_percent BETWEEN 1 AND 100),
  failure_percent integer NOT NULL CHECK (failure_percent BETWEEN 0 AND 100),
  -- What each phase's deployment is made with.
  max_retries integer NOT NULL CHECK (max_retries BETWEEN 0 AND 100),
  retry_seconds integer NOT NULL CHECK (retry_seconds BETWEEN 10 AND 86400),
  ignore_maintenance_windows boolean NOT NULL DEFAULT false,
  phase integer NOT NULL DEFAULT 1,  -- the phase under way (the last one, once done)
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'halted')),
  reason text NOT NULL DEFAULT '',
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT repl_enable('deployment_rollouts', 'global');

ALTER TABLE app_deployments ADD COLUMN rollout text;
CREATE INDEX app_deployments_rollout ON app_deployments (rollout);
