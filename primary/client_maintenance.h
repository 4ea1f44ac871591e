#pragma once

// A primary's client maintenance (a job of its site profile), every
// client_maintenance_seconds (default 300): its devices silent past
// client.inactive_after_seconds become inactive, past
// client.delete_after_seconds they are deleted with their inventory.
// Both are global_settings, "<SITE>/<name>" overriding for one site.

#include <cstdint>

#include "absl/status/status.h"
#include "common/site/site_profile.h"
#include "common/store/database.h"

namespace strata::primary {

inline constexpr int64_t kDefaultInactiveAfterSeconds = 14 * 86400;
inline constexpr int64_t kDefaultDeleteAfterSeconds = 90 * 86400;

site::SiteJob ClientMaintenance();

// One pass, for site `site`, in the caller's transaction.
absl::Status RunClientMaintenance(store::Transaction& tx, const std::string& site);

}  // namespace strata::primary
