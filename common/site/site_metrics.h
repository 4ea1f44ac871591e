#pragma once

// What a site server's metrics endpoint shows (common/metrics/metrics.h):
// its links (from the same status as `strata-<site> status`) and, from its
// database, devices, site systems, content in transfer and runbook queues.

#include <string>

#include "absl/status/status.h"
#include "common/metrics/metrics.h"
#include "common/store/database.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

// strata_link_* per peer, strata_wal_position_bytes.
void AddLinkMetrics(const v1::SiteStatus& status, metrics::Sample& sample);

// strata_devices, strata_site_systems, strata_content_versions,
// strata_content_bytes_pending, strata_runbook_jobs (this site's
// dispatches), strata_runbook_intake.
absl::Status AddDatabaseMetrics(store::Transaction& tx, const std::string& site_code,
                                metrics::Sample& sample);

}  // namespace strata::site
