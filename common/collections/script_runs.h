#pragma once

// Script runs and live queries in the site database (migrations 0015,
// 0016), as management points serve them: each run with its approved body
// and argument values, each query with its select and bounds.

#include "absl/status/status.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::collections {

// What a client may send of one live query's answer.
inline constexpr int kMaxLiveAnswerBytes = 64 * 1024;

// Runs that expired at most an hour ago (a device that comes back within
// the hour learns of them and reports them expired; later ones count as
// expired at the site without it), into bundle->script_runs(), in byte
// order of their ids.
absl::Status LoadScriptRuns(store::Transaction& tx, v1::SiteBundle* bundle);

// Live queries not expired, into bundle->live_queries(), in byte order of
// their ids, with the client's bounds (rows, bytes, time).
absl::Status LoadLiveQueries(store::Transaction& tx, v1::SiteBundle* bundle);

}  // namespace strata::collections
