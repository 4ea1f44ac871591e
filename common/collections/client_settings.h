#pragma once

// Client settings in the site database (migration 0004): reading the
// definitions for management points and the provider, and resolving at a
// primary which custom settings reach which of its devices, from collection
// membership and deployments, into client_setting_assignments (and, by the
// same mechanism, which application deployments reach them, into
// app_deployment_assignments).

#include <array>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/policy/client_settings.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::collections {

inline constexpr char kDefaultClientSettings[] = "Default Client Settings";

// Default Client Settings into bundle->settings(), every custom setting
// into bundle->custom_settings() (by name).
absl::Status LoadClientSettings(store::Transaction& tx, v1::SiteBundle* bundle);

// The registration approval mode of the default: token, manual or auto.
absl::StatusOr<std::string> ApprovalMode(store::Transaction& tx);

using policy::Assigned;

// The assignments of each of `device_ids`; devices without any are absent.
absl::StatusOr<std::map<std::string, Assigned>> LoadAssignments(
    store::Transaction& tx, const std::vector<std::string>& device_ids);

// The kinds of deployment resolved per device from its collections: custom
// client settings, applications, maintenance windows, script runs, live
// queries, runbook worker groups (in this order); one flag per kind.
inline constexpr size_t kDeploymentKinds = 6;
using DeploymentKinds = std::array<bool, kDeploymentKinds>;

// One value per kind (same order), changing whenever a deployment of that
// kind changes, here or by replication.
absl::StatusOr<std::vector<std::string>> DeploymentVersions(store::Connection& conn);

struct AssignStats {
  int64_t added = 0;
  int64_t removed = 0;
  int64_t devices = 0;  // resolved from the queue (0 for a whole pass)
};

// Brings the assignments of site `site`'s devices up to date: for every
// device (`all`: deployments changed, or the full schedule) or for those
// queued in client_setting_dirty (their membership of a collection with
// deployments changed), draining the queue. Writes only differences, in
// transactions of at most 5,000 queued devices.
absl::StatusOr<AssignStats> AssignClientSettings(store::Connection& conn, const std::string& site,
                                                 bool all);
// The same, resolving every device only for the kinds in `whole` (those
// whose deployments changed: a new script run or live query does not make
// a site resolve its applications and settings again); the queue for all.
absl::StatusOr<AssignStats> AssignClientSettings(store::Connection& conn, const std::string& site,
                                                 const DeploymentKinds& whole);

}  // namespace strata::collections
