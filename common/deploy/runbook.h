#pragma once

// Runbooks (strata/v1/runbook.proto, admin/runbooks.proto): the checks a
// definition passes before it is stored, the bounds of a worker's exchange
// and the names of job states. No database, no I/O: the provider, the site
// and the agent share them.

#include <string>

#include "absl/status/status.h"
#include "strata/v1/admin/runbooks.pb.h"
#include "strata/v1/runbook.pb.h"

namespace strata::deploy {

inline constexpr int64_t kDefaultRunbookTimeoutSeconds = 3600;
inline constexpr int64_t kMaxRunbookTimeoutSeconds = 7 * 86400;
inline constexpr int kDefaultRunbookAttempts = 3;
inline constexpr int kMaxRunbookAttempts = 10;
inline constexpr int kMaxRunbookTags = 16;
inline constexpr int kMaxRunbookAssets = 16;

// Bounds of one RunbookWork exchange (a worker's request).
inline constexpr int kMaxWorkerJobs = 1000;  // jobs held or finished in one request
inline constexpr size_t kMaxOutputChunkBytes = 16 * 1024;
inline constexpr size_t kMaxWorkRequestOutputBytes = 1 << 20;  // output + checkpoints in one
// Kept of each stream of a job attempt (the rest is dropped and the job's
// detail says so).
inline constexpr int64_t kMaxStreamBytes = 1 << 20;
// The detail a worker gives a job it killed because the site said to stop
// it (what else it has to say follows after "; ").
inline constexpr char kStoppedAsAsked[] = "stopped as the site asked";
// A resumable job's checkpoint ($STRATA_CHECKPOINT_FILE), at most.
inline constexpr size_t kMaxCheckpointBytes = 64 * 1024;
// A job's attempts in all (failovers, and a new attempt at each resume).
inline constexpr int kMaxJobAttempts = 100000;

// Fills the defaults (interpreter bash, timeout 3600 s, on_worker_lost
// retry, max_attempts 3, parameter type string) and checks everything but
// the version and output fields: InvalidArgument naming the field.
absl::Status CheckRunbookDefinition(v1::RunbookDefinition& def);

// The description and tags of a runbook (its definition aside).
absl::Status CheckRunbookLabels(const v1::Runbook& runbook);

// A worker's request as the site takes it: InvalidArgument naming what is
// out of bounds (too many jobs, a chunk or checkpoint too large, a stream
// unknown, an id that is not a UUID, text that is not UTF-8).
absl::Status CheckWorkRequest(const v1::RunbookWorkRequest& req);

// "running", "completed", "failed", "stopped".
std::string RunbookJobStateName(v1::RunbookJobStateKind kind);
bool IsFinal(v1::RunbookJobStateKind kind);

}  // namespace strata::deploy
