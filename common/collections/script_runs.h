#pragma once

// Script runs in the site database (migration 0015), as management points
// serve them: each with its approved body and argument values.

#include "absl/status/status.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::collections {

// Runs that expired at most an hour ago (a device that comes back within
// the hour learns of them and reports them expired; later ones count as
// expired at the site without it), into bundle->script_runs(), in byte
// order of their ids.
absl::Status LoadScriptRuns(store::Transaction& tx, v1::SiteBundle* bundle);

}  // namespace strata::collections
