#pragma once

// Phased rollouts (migration 0014): at the site where a rollout was made
// (the top of the hierarchy, where every device's state is counted), each
// running rollout's current phase is judged from deployment_state_counts:
// more than its failure limit failed -> halted, with the reason; its success
// rate reached -> the next phase's deployment is made (or the rollout is
// completed). A job of every site server (only the top one makes rollouts;
// every one keeps its states and results tidy).

#include "absl/status/statusor.h"
#include "common/site/site_profile.h"
#include "common/store/database.h"

namespace strata::site {

// One pass over this site's running rollouts; how many changed.
absl::StatusOr<int> AdvanceRollouts(store::Transaction& tx);

// Deletes the states of deployments that no longer exist (their counts
// follow by trigger); how many.
absl::StatusOr<int64_t> ForgetDeletedDeployments(store::Transaction& tx);

// Live queries a day past their expiry and script runs 30 days past theirs
// (those this site made), runbook jobs past their retention
// (PruneRunbookJobs), and the answers and results of those gone (at every
// site); how many rows.
absl::StatusOr<int64_t> ForgetOldWork(store::Transaction& tx);
// Runs AdvanceRollouts every 2 s, ForgetDeletedDeployments and
// ForgetOldWork every minute.
SiteJob RolloutJob();

}  // namespace strata::site
