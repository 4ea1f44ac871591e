#pragma once

// A client's effective settings: the site's Default Client Settings merged
// with the custom settings deployed to the client's collections. Management
// points answer policy with it; the provider shows it per device. No
// database, no I/O.

#include <string>
#include <vector>

#include "strata/v1/client.pb.h"

namespace strata::policy {

// `bundle.settings()` overridden, field by field, by the custom settings
// named in `assigned` that the bundle holds: for each field the one of the
// highest priority (smallest number; on a tie the name first in byte order)
// that sets it. Unknown names are ignored (a setting deleted meanwhile).
v1::ClientSettings EffectiveSettings(const v1::SiteBundle& bundle,
                                     const std::vector<std::string>& assigned);

// Names the same settings with the same version, in every process and build.
std::string PolicyVersion(const v1::ClientSettings& settings);

// What reaches one client through its collections (sorted names).
struct Assigned {
  std::vector<std::string> settings;               // custom client settings
  std::vector<std::string> deployments;            // application deployments
  std::vector<std::string> windows;                // maintenance windows
  std::vector<std::string> script_runs;            // script runs (ids)
  std::vector<std::string> live_queries;           // live queries (ids)
  std::vector<std::string> runbook_worker_groups;  // groups it is a runbook worker of
  bool empty() const {
    return settings.empty() && deployments.empty() && windows.empty() && script_runs.empty() &&
           live_queries.empty() && runbook_worker_groups.empty();
  }
  bool operator==(const Assigned& o) const {
    return settings == o.settings && deployments == o.deployments && windows == o.windows &&
           script_runs == o.script_runs && live_queries == o.live_queries &&
           runbook_worker_groups == o.runbook_worker_groups;
  }
};

// An assignment as it travels from the site to its MPs, and back.
void ToProto(Assigned assigned, v1::ClientAssignment* out);
Assigned FromProto(const v1::ClientAssignment& a);

// A client's whole policy: its effective settings, and the deployments,
// maintenance windows, script runs and live queries assigned to it that the bundle holds
// and the runbook worker groups it is a worker of (its lists are sorted by name), versioned by all
// of them. Without deployments the version is PolicyVersion(settings).
v1::PolicyResponse ClientPolicy(const v1::SiteBundle& bundle, const Assigned& assigned);
// ClientPolicy(...).version(), without copying the deployments.
std::string ClientPolicyVersion(const v1::SiteBundle& bundle, const Assigned& assigned);

// A stable 64-bit FNV-1a digest of `bytes`, as 16 hex digits.
std::string ContentVersion(const std::string& bytes);

}  // namespace strata::policy
