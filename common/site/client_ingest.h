#pragma once

// Applies client data (reports from management points) to a site's
// normalized inventory tables, in one transaction per batch:
//   - exactly once per (client, report seq): a report at or below the
//     device's last_report_seq is a duplicate and skipped;
//   - a delta applies only on top of the inventory the site holds
//     (base_seq == inventory_seq); otherwise the device is marked
//     needs_full_inventory and its id returned in `full_requests`;
//   - rows are written with multi-row statements (unnest of arrays), and only
//     rows that changed are touched, so replication carries only changes.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::site {

// Rows of one live query's answers a site keeps.
inline constexpr int64_t kMaxLiveQueryRows = 100000;

struct IngestResult {
  int applied = 0;
  int duplicates = 0;
  int unknown_clients = 0;
  int64_t software_rows = 0;               // software rows in applied reports
  std::vector<std::string> full_requests;  // clients to ask for a full inventory
};

// `reports` must be valid (inventory::CheckReport) and in arrival order.
absl::StatusOr<IngestResult> IngestReports(store::Transaction& tx,
                                           const std::vector<const v1::ClientReport*>& reports);

}  // namespace strata::site
